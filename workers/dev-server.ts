/** Starts a Temporal dev server as a child process and waits until it answers. */
import { Connection } from '@temporalio/client';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { findOrBuildTemporalCli } from './temporal-cli.js';

export const SEARCH_ATTRIBUTES = ['StrataPipeline', 'StrataTenant', 'StrataTrigger'] as const;

export interface DevServer {
  address: string;
  uiUrl?: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startDevServer(
  opts: {
    port?: number;
    uiPort?: number;
    dbFilename?: string;
    headless?: boolean;
    uiCodecEndpoint?: string;
    log?: (m: string) => void;
  } = {},
): Promise<DevServer> {
  const cli = await findOrBuildTemporalCli(opts.log);
  const port = opts.port ?? (await freePort());
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--log-level',
    'error',
    '--namespace',
    'default',
  ];
  if (opts.headless) args.push('--headless');
  else args.push('--ui-port', String(opts.uiPort ?? (await freePort())));
  if (opts.dbFilename) args.push('--db-filename', opts.dbFilename);
  // The Web UI decodes encrypted payloads through this codec server (the API's /codec).
  if (opts.uiCodecEndpoint && !opts.headless) args.push('--ui-codec-endpoint', opts.uiCodecEndpoint);
  for (const sa of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${sa}=Keyword`);
  args.push('--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true');
  // Update-with-start (the atomic cluster quota) is a multi-operation.
  args.push('--dynamic-config-value', 'frontend.enableExecuteMultiOperation=true');
  args.push('--dynamic-config-value', 'system.enableEagerWorkflowStart=true');
  args.push('--dynamic-config-value', 'system.enableActivityEagerExecution=true');
  args.push(
    '--dynamic-config-value',
    'matching.numTaskqueueReadPartitions=1',
    '--dynamic-config-value',
    'matching.numTaskqueueWritePartitions=1',
  );
  const child = spawn(cli, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  const address = `127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`temporal dev server exited (${child.exitCode}): ${stderr}`);
    try {
      const c = await Connection.connect({ address, connectTimeout: 2000 });
      await c.workflowService.getSystemInfo({});
      await c.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`temporal dev server did not answer on ${address} within 90 s: ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const uiPort = args[args.indexOf('--ui-port') + 1];
  return {
    address,
    uiUrl: opts.headless ? undefined : `http://127.0.0.1:${uiPort}`,
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}
