/**
 * A real SMTP server for the e-mail notification tests: mailpit, built from its Go module
 * into the same cache as MinIO and the Temporal CLI (no binary can be downloaded here).
 * Order: $STRATA_MAILPIT, `mailpit` on PATH, the cache, then `go install`. Its HTTP API
 * (`/api/v1/messages`, `/api/v1/message/{id}`) lets a test read what was delivered.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './dev-server.js';
import { findOrBuildGoTool } from './go-tool.js';

export const MAILPIT_MODULE = 'github.com/axllent/mailpit@v1.27.11';

export function findOrBuildMailpit(log?: (msg: string) => void): Promise<string> {
  return findOrBuildGoTool(
    {
      name: 'mailpit',
      label: 'mailpit (the SMTP server for the e-mail tests)',
      module: MAILPIT_MODULE,
      envVar: 'STRATA_MAILPIT',
      buildTime: '2–6 minutes on 2 cores',
    },
    log,
  );
}

export interface SmtpServer {
  smtpPort: number;
  /** mailpit's HTTP API and UI, e.g. http://127.0.0.1:PORT */
  httpUrl: string;
  stop(): Promise<void>;
}

/**
 * Starts mailpit on free loopback ports, messages in memory. With `auth`, SMTP requires
 * that user and password (mailpit accepts AUTH over plain SMTP only with
 * `--smtp-auth-allow-insecure`, as a local test server may).
 */
export async function startMailpit(
  opts: { auth?: { user: string; pass: string }; log?: (m: string) => void } = {},
): Promise<SmtpServer> {
  const exe = await findOrBuildMailpit(opts.log);
  const [smtpPort, httpPort] = [await freePort(), await freePort()];
  const args = ['--smtp', `127.0.0.1:${smtpPort}`, '--listen', `127.0.0.1:${httpPort}`, '--disable-version-check'];
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (opts.auth) {
    args.push('--smtp-auth-allow-insecure');
    env.MP_SMTP_AUTH = `${opts.auth.user}:${opts.auth.pass}`;
  } else args.push('--smtp-auth-accept-any');
  const child: ChildProcess = spawn(exe, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-4000)));
  child.stderr!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-4000)));
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mailpit exited (${child.exitCode}) before it was ready:\n${out}`);
    const ok = await fetch(`${httpUrl}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`mailpit did not become ready in 60 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    smtpPort,
    httpUrl,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
