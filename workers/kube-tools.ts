/**
 * The Kubernetes parts of the test cluster, built from their Go modules into the same cache
 * as the Temporal CLI and MinIO (nothing can be downloaded prebuilt here):
 *
 * - kube-apiserver and kube-controller-manager from `k8s.io/kubernetes`. Its go.mod replaces
 *   the `k8s.io/*` staging modules with `./staging/…` folders the published module does not
 *   contain, so `go install` refuses it: we copy the module to a writable folder beside the
 *   cache, drop the replace lines, require each staging module at its published `v0.X.Y`,
 *   and build both commands in one `go build` (their shared packages compile once).
 * - kine (an etcd API over SQLite) and kwok (fake nodes that run pods' lifecycle): plain
 *   `go install`.
 *
 * Each can be pointed at an existing binary with its environment variable.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cacheDir, findOrBuildGoTool, runWithProgress } from './go-tool.js';

export const KUBERNETES_VERSION = 'v1.37.2';
/** The staging modules (k8s.io/api, client-go, …) are published as v0.{minor}.{patch}. */
export const KUBERNETES_STAGING_VERSION = 'v0.37.2';
export const KINE_MODULE = 'github.com/k3s-io/kine@v0.17.5';
export const KWOK_MODULE = 'sigs.k8s.io/kwok/cmd/kwok@v0.8.0';

export interface KubeBinaries {
  apiserver: string;
  controllerManager: string;
  kine: string;
  kwok: string;
}

/** Finds or builds all four, one build at a time (a shared machine: never two Go builds at once). */
export async function findOrBuildKubeBinaries(log?: (msg: string) => void): Promise<KubeBinaries> {
  /** Both come from one build of Kubernetes. */
  const kubernetes = {
    module: `k8s.io/kubernetes@${KUBERNETES_VERSION}`,
    buildTime: 'about 40 minutes on 2 busy cores',
    build: buildKubernetes,
  };
  const apiserver = await findOrBuildGoTool(
    {
      name: 'kube-apiserver',
      label: `kube-apiserver and kube-controller-manager (Kubernetes ${KUBERNETES_VERSION}, for the Spark tests)`,
      envVar: 'STRATA_KUBE_APISERVER',
      ...kubernetes,
    },
    log,
  );
  const controllerManager = await findOrBuildGoTool(
    {
      name: 'kube-controller-manager',
      label: `kube-controller-manager (Kubernetes ${KUBERNETES_VERSION})`,
      envVar: 'STRATA_KUBE_CONTROLLER_MANAGER',
      ...kubernetes,
    },
    log,
  );
  const kine = await findOrBuildGoTool(
    {
      name: 'kine',
      label: 'kine (etcd API over SQLite, storage for the test API server)',
      module: KINE_MODULE,
      envVar: 'STRATA_KINE',
      buildTime: 'about 10 minutes (cgo SQLite)',
      nice: true,
    },
    log,
  );
  const kwok = await findOrBuildGoTool(
    {
      name: 'kwok',
      label: 'kwok (simulated Kubernetes nodes and pods)',
      module: KWOK_MODULE,
      envVar: 'STRATA_KWOK',
      buildTime: 'about 10 minutes',
      nice: true,
    },
    log,
  );
  return { apiserver, controllerManager, kine, kwok };
}

/** The go.mod of a writable copy of k8s.io/kubernetes, without its `./staging` replaces. */
export function unstagedGoMod(goMod: string, stagingVersion = KUBERNETES_STAGING_VERSION): string {
  const replaced = new Set<string>();
  const withoutReplaces = goMod.replace(/^replace \(\n([\s\S]*?)^\)\n?/gm, (block, body: string) => {
    const kept = body
      .split('\n')
      .filter((line) => {
        const m = /^\s*(\S+)\s+=>\s+\.\/staging\//.exec(line);
        if (m) replaced.add(m[1]);
        return !m;
      })
      .filter((l) => l.trim());
    return kept.length ? `replace (\n${kept.join('\n')}\n)\n` : '';
  });
  return withoutReplaces.replace(/^(\s+)(k8s\.io\/[^\s]+) v0\.0\.0(\s|$)/gm, (line, ws, mod: string, end) =>
    replaced.has(mod) ? `${ws}${mod} ${stagingVersion}${end}` : line,
  );
}

/** Builds kube-apiserver and kube-controller-manager into `bin` in one `go build`. */
async function buildKubernetes(bin: string, log: (msg: string) => void): Promise<void> {
  const env = { ...process.env, GOWORK: 'off', GOFLAGS: '-mod=mod' };
  const module = `k8s.io/kubernetes@${KUBERNETES_VERSION}`;
  log(`  downloading ${module} from the Go module proxy…`);
  const dl = spawnSync('go', ['mod', 'download', '-json', module], { env, encoding: 'utf8' });
  if (dl.status !== 0) throw new Error(`go mod download ${module} failed: ${dl.stderr || dl.stdout}`);
  const moduleDir = (JSON.parse(dl.stdout) as { Dir: string }).Dir;
  const src = path.join(path.dirname(bin), 'src', `kubernetes@${KUBERNETES_VERSION}`);
  const marker = (dir: string) => path.join(dir, '.strata-unstaged');
  if (!existsSync(marker(src))) {
    // Prepared in a folder of this process's own and renamed into place whole (with its
    // marker), so two processes building at once (the setup and a test run) never work in,
    // or delete, each other's half-copied tree.
    const tmp = `${src}.${process.pid}.tmp`;
    log(`  copying the module to ${src} and dropping its ./staging replace lines…`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(path.dirname(src), { recursive: true });
    cpSync(moduleDir, tmp, { recursive: true });
    spawnSync('chmod', ['-R', 'u+w', tmp]);
    const goModPath = path.join(tmp, 'go.mod');
    chmodSync(goModPath, 0o644);
    writeFileSync(goModPath, unstagedGoMod(readFileSync(goModPath, 'utf8')));
    rmSync(path.join(tmp, 'go.work'), { force: true });
    writeFileSync(marker(tmp), '');
    // A tree left without its marker (an older, interrupted copy) goes; a finished one stays.
    if (existsSync(src) && !existsSync(marker(src))) rmSync(src, { recursive: true, force: true });
    try {
      renameSync(tmp, src);
    } catch (e) {
      if (!existsSync(marker(src))) throw e;
    }
    rmSync(tmp, { recursive: true, force: true });
  }
  const out = path.join(path.dirname(bin), `kube-build-${process.pid}`);
  mkdirSync(out, { recursive: true });
  const v = 'k8s.io/component-base/version';
  const [, major, minor] = /^v(\d+)\.(\d+)/.exec(KUBERNETES_VERSION)!;
  const ldflags = [
    `-X ${v}.gitVersion=${KUBERNETES_VERSION}`,
    `-X ${v}.gitMajor=${major}`,
    `-X ${v}.gitMinor=${minor}`,
    `-X ${v}.gitTreeState=clean`,
    '-s -w', // as LEAN_BUILD: no symbol table or DWARF
  ].join(' ');
  log(`  go build ./cmd/kube-apiserver ./cmd/kube-controller-manager (nice -n 10)…`);
  await runWithProgress(
    'go',
    [
      'build',
      '-trimpath',
      '-ldflags',
      ldflags,
      '-o',
      out + '/',
      './cmd/kube-apiserver',
      './cmd/kube-controller-manager',
    ],
    { env, cwd: src, doing: 'building kube-apiserver and kube-controller-manager', log, nice: true },
  );
  for (const name of ['kube-apiserver', 'kube-controller-manager'])
    renameSync(path.join(out, name), path.join(bin, name));
  rmSync(out, { recursive: true, force: true });
}

export { cacheDir };
