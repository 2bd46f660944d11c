/**
 * A server Strata runs as a child process for tests or the local stack (MinIO, mailpit):
 * spawned, its output kept (the last 4 KB, for the error that says why it did not start),
 * ready once an HTTP health URL answers 2xx, and stopped with SIGTERM (SIGKILL after 5 s).
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface LocalServer {
  stop(): Promise<void>;
}

export async function startLocalServer(o: {
  name: string;
  exe: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  readyUrl: string;
  timeoutMs?: number;
}): Promise<LocalServer> {
  const child: ChildProcess = spawn(o.exe, o.args, { env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-4000)));
  child.stderr!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-4000)));
  const timeoutMs = o.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${o.name} exited (${child.exitCode}) before it was ready:\n${out}`);
    const ok = await fetch(o.readyUrl).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${o.name} did not become ready in ${timeoutMs / 1000} s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
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
