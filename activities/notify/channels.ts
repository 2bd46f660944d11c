/**
 * Notification channels, configured by the platform operator per tenant in the same style
 * as connections: `STRATA_NOTIFY_<NAME>` is what the channel is, `STRATA_NOTIFY_<NAME>_TENANTS`
 * whose runs may use it (default: the bootstrap tenant's only), `STRATA_NOTIFY_<NAME>_SECRET`
 * the HMAC key of a webhook. Specs name a channel (`name` in lower case); an unknown and a
 * foreign name get the same answer, which lists the tenant's own. URLs, keys and SMTP
 * passwords are secrets: only the channel's name reaches specs, history, logs and errors.
 *
 *   STRATA_NOTIFY_ONCALL=https://hooks.example.com/strata      a webhook (HMAC-signed; _SECRET required)
 *   STRATA_NOTIFY_TEAM_SLACK=slack+https://hooks.slack.com/…    a Slack-compatible incoming webhook
 *   STRATA_NOTIFY_DATA_MAIL=smtp://user:pass@mail:587?from=strata@acme.io&to=data@acme.io,ops@acme.io
 *                                                              e-mail over SMTP (smtps:// for TLS from the start)
 */
import { tenantScopedEnv } from '../../schemas/tenant.js';

export type ChannelType = 'webhook' | 'slack' | 'email';

export interface ChannelConfig {
  name: string;
  type: ChannelType;
  /** The webhook's URL, or the SMTP URL (nodemailer's form) without `from`/`to`. */
  url: string;
  /** Webhooks: the HMAC-SHA256 key. */
  secret?: string;
  /** E-mail: sender and recipients. */
  from?: string;
  to?: string[];
  tenants: string[];
}

export type Channels = Record<string, ChannelConfig>;

const PREFIX = 'STRATA_NOTIFY_';
const NAME_RE = /^[a-z][a-z0-9_]{0,63}$/;
const EMAIL_RE = /^[^\s@<>,]+@[^\s@<>,]+$/;

export function channelsFromEnv(env: NodeJS.ProcessEnv = process.env): Channels {
  // fromEntries defines own fields, so no name reaches the prototype.
  return Object.fromEntries(
    tenantScopedEnv(env, PREFIX, ['_SECRET']).map(({ key: k, name, value: v, tenants }) => {
      if (!NAME_RE.test(name))
        throw new Error(`${k}: a channel name is letters, digits and "_", starting with a letter (at most 64)`);
      return [name, { name, tenants, ...parseChannel(k, v, env[`${k}_SECRET`]) }];
    }),
  );
}

function parseChannel(key: string, value: string, secret: string | undefined): Omit<ChannelConfig, 'name' | 'tenants'> {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new Error(`${key} must be an https:// (webhook), slack+https:// or smtp:// / smtps:// URL`);
  }
  if (u.protocol === 'https:' || u.protocol === 'http:') {
    if (!secret || secret.length < 16)
      throw new Error(`${key}_SECRET: a webhook needs an HMAC key of at least 16 characters to sign its deliveries`);
    return { type: 'webhook', url: u.toString(), secret };
  }
  if (u.protocol === 'slack+https:' || u.protocol === 'slack+http:')
    return { type: 'slack', url: value.slice('slack+'.length) };
  if (u.protocol === 'smtp:' || u.protocol === 'smtps:') {
    const from = u.searchParams.get('from') ?? '';
    const to = (u.searchParams.get('to') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (!EMAIL_RE.test(from)) throw new Error(`${key}: add ?from=ADDRESS (the sender) to the smtp:// URL`);
    if (!to.length || !to.every((a) => EMAIL_RE.test(a)))
      throw new Error(`${key}: add &to=ADDRESS[,ADDRESS…] (the recipients) to the smtp:// URL`);
    u.searchParams.delete('from');
    u.searchParams.delete('to');
    return { type: 'email', url: u.toString(), from, to };
  }
  throw new Error(`${key} must be an https:// (webhook), slack+https:// or smtp:// / smtps:// URL`);
}

/** The names of the channels a tenant may use. */
export function tenantChannels(ch: Channels, tenant: string): string[] {
  return Object.keys(ch)
    .filter((n) => ch[n].tenants.includes(tenant))
    .sort();
}

/** The channel if the tenant may use it. */
export function channelFor(ch: Channels, name: string, tenant: string): ChannelConfig | undefined {
  const c = Object.hasOwn(ch, name) ? ch[name] : undefined;
  return c && c.tenants.includes(tenant) ? c : undefined;
}

export function unknownChannelMessage(ch: Channels, name: string, tenant: string): string {
  const own = tenantChannels(ch, tenant);
  const env = `STRATA_NOTIFY_${name.toUpperCase()}`;
  return (
    `unknown notification channel "${name}" for tenant ${tenant}: ` +
    `${own.length ? `use one of ${own.join(', ')}` : 'this tenant has no channels'}, ` +
    `or ask the platform operator to add it (${env} and ${env}_TENANTS)`
  );
}

/** Problems with the channels a spec's rules name, for a 400 at registration. */
export function channelProblems(
  ch: Channels,
  tenant: string,
  rules: { channel: string }[] | undefined,
  at = 'notify',
): { path: string; message: string }[] {
  return (rules ?? []).flatMap((r, i) =>
    channelFor(ch, r.channel, tenant)
      ? []
      : [{ path: `${at}[${i}].channel`, message: unknownChannelMessage(ch, r.channel, tenant) }],
  );
}
