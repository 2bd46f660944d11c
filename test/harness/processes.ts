/** Real child processes for tests: the worker and the CLI, run as users run them. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Proc {
  child: ChildProcess;
  output(): string;
  waitForOutput(re: RegExp, ms?: number): Promise<void>;
  exited(): Promise<number | null>;
}

export function startProcess(script: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b) => (out += b.toString()));
  child.stderr.on('data', (b) => (out += b.toString()));
  const exit = new Promise<number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))),
  );
  return {
    child,
    output: () => out,
    exited: () => exit,
    async waitForOutput(re, ms = 120_000) {
      const end = Date.now() + ms;
      while (!re.test(out)) {
        if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before ${re}:\n${out}`);
        if (Date.now() > end) throw new Error(`timed out waiting for ${re}:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

export async function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string }> {
  const p = startProcess('cli/index.ts', args, env);
  const code = await p.exited();
  return { code, out: p.output() };
}
