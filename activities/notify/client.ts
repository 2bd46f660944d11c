/**
 * Sends one notification on one channel: a signed JSON webhook, a Slack-compatible
 * incoming webhook, or an e-mail over SMTP (nodemailer). Nothing Temporal here. Errors
 * carry the channel's name and what went wrong, never its URL, key or credentials.
 */
import { createHmac } from 'node:crypto';
import nodemailer from 'nodemailer';
import { reconcileSummary, type DeliveryInput } from '../../schemas/notify.js';
import { errorField, errorMessage, errorNumber, errorString } from '../../schemas/errors.js';
import type { ChannelConfig } from './channels.js';

export interface Links {
  run: string;
  temporal: string;
}

export interface SendResult {
  ok: boolean;
  /** False for answers a retry cannot change (a 4xx other than 408/429, a rejected recipient). */
  retryable: boolean;
  responseStatus?: number;
  error?: string;
}

/** The JSON body of a webhook delivery. */
export function webhookBody(d: DeliveryInput, links: Links) {
  return {
    event: d.event,
    rule: d.rule,
    tenant: d.run.tenant,
    pipeline: d.run.pipelineId,
    run: {
      id: d.run.runId,
      status: d.facts.status,
      trigger: d.run.trigger,
      logicalDate: d.run.logicalDate,
      ...(d.facts.startedAt ? { startedAt: d.facts.startedAt } : {}),
    },
    failedTasks: d.facts.failedTasks,
    error: d.facts.error ?? null,
    ...(d.facts.exhausted ? { retryExhausted: d.facts.exhausted } : {}),
    ...(d.facts.warned ? { qualityWarnings: d.facts.warned } : {}),
    ...(d.facts.slaMs !== undefined ? { slaMs: d.facts.slaMs } : {}),
    ...(d.facts.schedule ? { schedule: d.facts.schedule } : {}),
    ...(d.facts.reconciliation ? { reconciliation: d.facts.reconciliation } : {}),
    links,
  };
}

/**
 * `strata-signature: v1=<hex>` over `{timestamp}.{body}` with the channel's key, and the
 * timestamp in `strata-timestamp` (Unix seconds): a receiver recomputes it, compares in
 * constant time and refuses old timestamps, so a captured delivery cannot be replayed later.
 */
export function signature(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

const TITLES: Record<DeliveryInput['event'], string> = {
  failure: 'failed',
  success: 'succeeded',
  retry_exhausted: 'has a task that exhausted its retries',
  quality_warning: 'has quality warnings',
  sla_missed: 'is past its SLA',
  cancelled: 'was cancelled',
  schedule_missed: 'missed a scheduled run',
};

/** A mapping rule's events, about its comparison. */
const MAPPING_TITLES: Partial<Record<DeliveryInput['event'], string>> = {
  success: 'found no differences',
  quality_warning: 'found differences',
  failure: 'failed',
};

export function headline(d: DeliveryInput): string {
  const r = d.facts.reconciliation;
  if (r)
    return `Strata: reconciliation ${r.mapping ?? r.task} of ${d.run.pipelineId} (${d.run.tenant}) ${MAPPING_TITLES[d.event] ?? TITLES[d.event]}`;
  return d.event === 'schedule_missed'
    ? `Strata: schedule ${d.facts.schedule?.id ?? ''} of ${d.run.pipelineId} (${d.run.tenant}) ${TITLES[d.event]}`
    : `Strata: ${d.run.pipelineId} (${d.run.tenant}) ${TITLES[d.event]}`;
}

/** Plain-text lines shared by Slack and e-mail. */
function details(d: DeliveryInput, links: Links): string[] {
  const f = d.facts;
  const lines = [`Run: ${d.run.runId} (${f.status})`, `Logical date: ${d.run.logicalDate}`];
  if (f.error) lines.push(`Error: ${f.error}`);
  for (const t of f.failedTasks.slice(0, 10)) lines.push(`Failed task ${t.id}: ${t.error}`);
  for (const t of f.exhausted ?? []) lines.push(`Retries exhausted: ${t.task} after ${t.attempts} attempts`);
  for (const t of f.warned ?? []) lines.push(`Quality warnings on ${t.task}: ${t.checks.join(', ')}`);
  const r = f.reconciliation;
  if (r) {
    const what = r.differences === undefined ? '' : r.differences ? `: ${reconcileSummary(r)}` : ': no differences';
    lines.push(`Reconciliation ${r.mapping ?? r.task} (task ${r.task}, policy ${r.policy})${what}`);
    if (r.counts) lines.push(`Matched: ${r.counts.matched}`);
    if (r.differencesDataset)
      lines.push(
        `Differences: ${r.differencesDataset.dataset}@${r.differencesDataset.version} (${r.differencesDataset.rows} rows)`,
      );
    if (r.error) lines.push(`Reconciliation error: ${r.error}`);
  }
  if (f.slaMs !== undefined) lines.push(`SLA: ${Math.round(f.slaMs / 1000)} s from ${f.startedAt ?? 'start'}`);
  if (f.schedule) lines.push(`Schedule ${f.schedule.id}: ${f.schedule.detail}`);
  lines.push(`Run page: ${links.run}`, `Temporal UI: ${links.temporal}`);
  return lines;
}

/** Slack's incoming-webhook shape: `text` (the fallback) and Block Kit `blocks`. */
export function slackBody(d: DeliveryInput, links: Links) {
  const text = headline(d);
  const lines = details(d, links).slice(0, -2);
  return {
    text,
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: text.slice(0, 150) } },
      { type: 'section', text: { type: 'mrkdwn', text: lines.map(escapeSlack).join('\n').slice(0, 2900) } },
      {
        type: 'actions',
        elements: [
          { type: 'button', text: { type: 'plain_text', text: 'Run page' }, url: links.run },
          { type: 'button', text: { type: 'plain_text', text: 'Temporal UI' }, url: links.temporal },
        ],
      },
    ],
  };
}

const escapeSlack = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function scrub(message: string, c: ChannelConfig): string {
  let m = message;
  const secrets = [c.url, c.secret];
  try {
    const u = new URL(c.url);
    secrets.push(
      u.password ? decodeURIComponent(u.password) : undefined,
      u.pathname.length > 1 ? u.pathname : undefined,
    );
  } catch {
    /* not a URL */
  }
  for (const s of secrets) if (s && s.length >= 4) m = m.split(s).join('***');
  return m.replace(/([a-z+]+:\/\/)[^\s]+/gi, '$1***').slice(0, 500);
}

async function post(c: ChannelConfig, body: string, headers: Record<string, string>, timeoutMs: number) {
  try {
    const r = await fetch(c.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'strata-notify', ...headers },
      body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'manual',
    });
    await r.arrayBuffer().catch(() => undefined);
    if (r.ok) return { ok: true, retryable: false, responseStatus: r.status };
    const retryable = r.status >= 500 || r.status === 408 || r.status === 429;
    return { ok: false, retryable, responseStatus: r.status, error: `channel ${c.name} answered HTTP ${r.status}` };
  } catch (e) {
    const why =
      errorString(e, 'name') === 'TimeoutError'
        ? `no answer in ${timeoutMs} ms`
        : (errorString(errorField(e, 'cause'), 'code') ?? errorMessage(e));
    return { ok: false, retryable: true, error: `channel ${c.name} could not be reached: ${scrub(String(why), c)}` };
  }
}

export async function send(
  c: ChannelConfig,
  d: DeliveryInput,
  links: Links,
  opts: { timeoutMs?: number; now?: () => number } = {},
): Promise<SendResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  if (c.type === 'webhook') {
    if (!c.secret)
      return {
        ok: false,
        retryable: false,
        error: `channel ${c.name}: a webhook signs its deliveries: set STRATA_NOTIFY_${c.name.toUpperCase()}_SECRET on the worker`,
      };
    const body = JSON.stringify(webhookBody(d, links));
    const ts = Math.floor((opts.now ?? Date.now)() / 1000);
    return post(
      c,
      body,
      {
        'strata-timestamp': String(ts),
        'strata-signature': signature(c.secret, ts, body),
        'strata-event': d.event,
        // Stable per (run, rule, event): a receiver can drop a delivery it already has.
        'strata-delivery': `${d.run.runId}|${d.rule}|${d.event}`,
      },
      timeoutMs,
    );
  }
  if (c.type === 'slack') return post(c, JSON.stringify(slackBody(d, links)), {}, timeoutMs);
  const u = new URL(c.url);
  const secure = u.protocol === 'smtps:';
  const transport = nodemailer.createTransport({
    host: u.hostname,
    port: u.port ? Number(u.port) : secure ? 465 : 587,
    secure,
    ...(u.username ? { auth: { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } } : {}),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  });
  try {
    await transport.sendMail({
      from: c.from,
      to: c.to,
      subject: headline(d),
      text: details(d, links).join('\n'),
      headers: { 'X-Strata-Event': d.event, 'X-Strata-Run': d.run.runId },
    });
    return { ok: true, retryable: false };
  } catch (e) {
    const responseCode = errorNumber(e, 'responseCode');
    const code = errorString(e, 'code');
    const permanent = responseCode !== undefined && responseCode >= 500 && responseCode < 600;
    return {
      ok: false,
      retryable: !permanent || code === 'EAUTH',
      ...(responseCode ? { responseStatus: responseCode } : {}),
      error: `channel ${c.name}: ${scrub(code ? `${code}: ${errorMessage(e)}` : errorMessage(e), c)}`,
    };
  } finally {
    transport.close();
  }
}
