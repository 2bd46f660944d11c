/**
 * A real SMTP server for the e-mail notification tests: mailpit, built from its Go module
 * into the same cache as MinIO and the Temporal CLI (no binary can be downloaded here).
 * Order: $STRATA_MAILPIT, `mailpit` on PATH, the cache, then `go install`. Its HTTP API
 * (`/api/v1/messages`, `/api/v1/message/{id}`) lets a test read what was delivered.
 */
import { freePort } from './dev-server.js';
import { findOrBuildGoTool } from './go-tool.js';
import { startLocalServer } from './local-server.js';

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
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const server = await startLocalServer({ name: 'mailpit', exe, args, env, readyUrl: `${httpUrl}/readyz` });
  return {
    smtpPort,
    httpUrl,
    stop: () => server.stop(),
  };
}
