/**
 * Finds a tool binary, or builds it from its Go module into a cache outside the checkout
 * (nothing can be downloaded prebuilt here). Order: the tool's environment variable, the
 * name on PATH, the cache, then `go install`, with progress while it builds.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function cacheDir(): string {
  return path.join(
    process.env.STRATA_CACHE_DIR ??
      path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'strata'),
    'bin',
  );
}

export function onPath(name: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() || undefined : undefined;
}

export interface GoTool {
  /** Binary name (on PATH and in the cache). */
  name: string;
  /** What to call it in messages. */
  label: string;
  /** `module/path/cmd@version`. */
  module: string;
  /** Environment variable that points at an existing binary. */
  envVar: string;
  /** How long a first build takes, for the message. */
  buildTime: string;
  /** Builds the binary into `bin` itself, for modules that `go install` refuses (replace directives). */
  build?: (bin: string, log: (msg: string) => void) => Promise<void>;
  /** Build at low priority (`nice -n 10`): long builds on a shared machine. */
  nice?: boolean;
}

export async function findOrBuildGoTool(
  t: GoTool,
  log: (msg: string) => void = (m) => console.error(m),
): Promise<string> {
  const given = process.env[t.envVar];
  if (given) {
    if (!existsSync(given))
      throw new Error(`${t.envVar}=${given} does not exist: point it at a ${t.name} binary or unset it`);
    return given;
  }
  const found = onPath(t.name);
  if (found) return found;
  const bin = cacheDir();
  const cached = path.join(bin, t.name);
  if (existsSync(cached)) return cached;
  if (!onPath('go'))
    throw new Error(
      `no ${t.label} found and no Go toolchain to build one: install Go, or set ${t.envVar} to a ${t.name} binary`,
    );
  // One Go build at a time in a process (the MinIO and Kubernetes builds start together in tests).
  const turn = buildQueue.then(() => build(t, bin, cached, log));
  buildQueue = turn.catch(() => undefined);
  return turn;
}

let buildQueue: Promise<unknown> = Promise.resolve();

/**
 * Build flags for every tool: no file-system paths in the binary, and no symbol table or DWARF
 * (tests never debug these binaries; dropping them cuts the link of the large ones by about a third).
 */
export const LEAN_BUILD = ['-trimpath', '-ldflags=-s -w'];

async function build(t: GoTool, bin: string, cached: string, log: (msg: string) => void): Promise<string> {
  if (existsSync(cached)) return cached; // built by the build before this one (kube-apiserver's makes two)
  mkdirSync(bin, { recursive: true });
  log(`Building ${t.label} from ${t.module} into ${bin} (first time only; takes ${t.buildTime})…`);
  const started = Date.now();
  if (t.build) await t.build(bin, log);
  else
    await runWithProgress('go', ['install', ...LEAN_BUILD, t.module], {
      env: { ...process.env, GOBIN: bin, GOFLAGS: '-mod=mod' },
      doing: `building ${t.label}`,
      log,
      nice: t.nice,
    });
  log(`${t.label} built in ${Math.round((Date.now() - started) / 1000)} s.`);
  return cached;
}

/**
 * Runs a command that takes a while (a build, an install), logging "…still {doing} (N s): last
 * output line" every 15 s; rejects with the exit code and the last line when it fails.
 */
export function runWithProgress(
  cmd: string,
  args: string[],
  o: { env?: NodeJS.ProcessEnv; doing: string; log: (msg: string) => void; nice?: boolean; cwd?: string },
): Promise<void> {
  const started = Date.now();
  if (o.nice && onPath('nice')) [cmd, args] = ['nice', ['-n', '10', cmd, ...args]];
  return new Promise<void>((resolve, reject) => {
    const p = spawn(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let lastLine = '';
    const tick = setInterval(
      () =>
        o.log(`  …still ${o.doing} (${Math.round((Date.now() - started) / 1000)} s)${lastLine ? `: ${lastLine}` : ''}`),
      15_000,
    );
    const onData = (b: Buffer) => {
      const lines = b.toString().trim().split('\n');
      lastLine = lines[lines.length - 1].slice(0, 120);
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    p.on('error', (e) => {
      clearInterval(tick);
      reject(e);
    });
    p.on('exit', (code) => {
      clearInterval(tick);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code}): ${lastLine}`));
    });
  });
}

/**
 * Builds a Go program kept as source in the repository (its folder holds go.mod and go.sum)
 * into the same cache as the tools above, named by a hash of its sources, so a change to
 * them builds again and an unchanged program is built once per machine.
 */
export async function findOrBuildGoProgram(
  p: { name: string; label: string; dir: string; buildTime: string },
  log: (msg: string) => void = (m) => console.error(m),
): Promise<string> {
  const { createHash } = await import('node:crypto');
  const { readdirSync, readFileSync, renameSync } = await import('node:fs');
  const h = createHash('sha256');
  for (const f of readdirSync(p.dir).sort())
    if (/\.(go|mod|sum)$/.test(f))
      h.update(f)
        .update('\0')
        .update(readFileSync(path.join(p.dir, f)));
  const bin = cacheDir();
  const out = path.join(bin, `${p.name}-${h.digest('hex').slice(0, 12)}`);
  if (existsSync(out)) return out;
  if (!onPath('go'))
    throw new Error(`no ${p.label} built yet and no Go toolchain to build it: install Go (it builds ${p.dir} once)`);
  mkdirSync(bin, { recursive: true });
  log(`Building ${p.label} from ${p.dir} into ${bin} (first time only; takes ${p.buildTime})…`);
  const started = Date.now();
  const tmp = `${out}.${process.pid}.tmp`;
  await runWithProgress('go', ['build', ...LEAN_BUILD, '-o', tmp, '.'], {
    env: { ...process.env, GOFLAGS: '-mod=mod' },
    doing: `building ${p.label}`,
    log,
    cwd: p.dir,
  });
  renameSync(tmp, out);
  log(`${p.label} built in ${Math.round((Date.now() - started) / 1000)} s.`);
  return out;
}
