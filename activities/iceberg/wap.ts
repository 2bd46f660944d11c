/**
 * Write-audit-publish on Iceberg metadata, as pure functions (no I/O).
 *
 * A job that holds a run's catalog credential writes the way every engine does: it loads
 * the table, adds a snapshot and moves `main` with `assert-ref-snapshot-id main`. The
 * catalog turns that into a commit to the run's audit branch: the job sees the branch as
 * `main` (so its second commit builds on its first), and `main` itself never moves. After
 * the job, Strata audits the branch's snapshot and publishes it: a guarded move of `main`
 * from the snapshot the branch was forked from, which fails if `main` moved meanwhile.
 */
import { recordOf } from '../../schemas/guards.js';
import {
  MetadataError,
  setRef,
  type Snapshot,
  type TableMetadata,
  type TableRequirement,
  type TableUpdate,
} from './metadata.js';

/** A change a run's credential may not make (403). */
export class WapRefusal extends Error {}

/** Snapshot ids compare as text: they may be numbers or (beyond 2^53) BigInts. */
export const sameId = (a: number | bigint | null | undefined, b: number | bigint | null | undefined) =>
  a !== undefined && a !== null && b !== undefined && b !== null && String(a) === String(b);

/** The snapshot a ref points at, as text, or null. */
export function refHead(m: TableMetadata, ref: string): string | null {
  const r = m.refs?.[ref];
  return r ? String(r['snapshot-id']) : null;
}

/** The table as a run's job sees it: its audit branch is `main` once the branch exists. */
export function asSeenOnBranch(m: TableMetadata, branch: string): TableMetadata {
  const b = m.refs?.[branch];
  if (!b) return m;
  return { ...m, 'current-snapshot-id': b['snapshot-id'], refs: { ...m.refs, main: { ...b, type: 'branch' } } };
}

/** Updates a job's write needs; anything else (moving refs, dropping snapshots, moving the table) is the owner's. */
const ALLOWED = new Set([
  'add-snapshot',
  'set-snapshot-ref',
  'add-schema',
  'set-current-schema',
  'set-statistics',
  'remove-statistics',
  'set-partition-statistics',
  'remove-partition-statistics',
]);

/**
 * Rewrites a job's commit onto its audit branch: requirements on `main` hold against the
 * branch once it exists (before, against `main`, where the branch forks); `set-snapshot-ref
 * main` moves the branch; added snapshots are marked staged for the run and task.
 */
export function redirectToBranch(
  m: TableMetadata,
  requirements: TableRequirement[],
  updates: TableUpdate[],
  o: { branch: string; runId: string; taskId: string },
): { requirements: TableRequirement[]; updates: TableUpdate[] } {
  const exists = !!m.refs?.[o.branch];
  const reqs = requirements.map((r) => {
    if (r.type === 'assert-ref-snapshot-id' && r.ref === 'main' && exists) return { ...r, ref: o.branch };
    if (r.type === 'assert-ref-snapshot-id' && r.ref !== 'main')
      throw new WapRefusal(
        `a run's credential commits to main (which Strata stages on ${o.branch}); it may not assert on ref ${String(r.ref)}`,
      );
    return r;
  });
  const ups = updates.map((u) => {
    if (!ALLOWED.has(u.action))
      throw new WapRefusal(
        `a run's credential writes data (add-snapshot, set-snapshot-ref main, schema changes); "${u.action}" is for the table's owner: make it through Strata or with an API key`,
      );
    if (u.action === 'set-snapshot-ref') {
      if (u['ref-name'] !== 'main')
        throw new WapRefusal(
          `a run's credential moves only main (staged on ${o.branch} until Strata publishes it), not ${String(u['ref-name'])}`,
        );
      return { ...u, 'ref-name': o.branch, type: 'branch' };
    }
    if (u.action === 'add-snapshot') {
      const s = recordOf(u.snapshot);
      return {
        ...u,
        snapshot: {
          ...s,
          summary: {
            ...recordOf(s.summary),
            'strata.run-id': o.runId,
            'strata.task-id': o.taskId,
            'strata.status': 'staged',
            'strata.branch': o.branch,
          },
        },
      };
    }
    return u;
  });
  return { requirements: reqs, updates: ups };
}

/**
 * The publish: `main` moves to the branch's head only if it is still at `base` (where the
 * branch forked). Anything else is a conflict that names both snapshots. The snapshot's
 * summary records the verdict and the dataset version it became.
 */
export function publishBranch(
  m: TableMetadata,
  o: { branch: string; base: string | null; snapshotId: string; version?: number; now: number },
): TableMetadata {
  const main = refHead(m, 'main');
  if (main !== o.base)
    throw new MetadataError(
      `main moved during the audit of ${o.branch}: it was at ${o.base ?? 'nothing'} when the job began and is at ${main ?? 'nothing'} now; the staged snapshot ${o.snapshotId} stays on ${o.branch}: run the task again to write on the new main`,
      'conflict',
    );
  const snap = m.snapshots.find((s) => String(s['snapshot-id']) === o.snapshotId);
  if (!snap) throw new MetadataError(`no snapshot ${o.snapshotId} on ${o.branch}`, 'bad');
  const marked = markSnapshot(m, o.snapshotId, {
    'strata.status': 'published',
    ...(o.version !== undefined ? { 'strata.version': String(o.version) } : {}),
  });
  return setRef(marked, 'main', { 'snapshot-id': snap['snapshot-id'], type: 'branch' }, o.now);
}

/** Marks a staged snapshot rejected (it stays on its branch, never on main). */
export function rejectBranch(m: TableMetadata, snapshotId: string, version?: number): TableMetadata {
  return markSnapshot(m, snapshotId, {
    'strata.status': 'rejected',
    ...(version !== undefined ? { 'strata.version': String(version) } : {}),
  });
}

function markSnapshot(m: TableMetadata, id: string, summary: Record<string, string>): TableMetadata {
  return {
    ...m,
    snapshots: m.snapshots.map((s) =>
      String(s['snapshot-id']) === id ? { ...s, summary: { ...s.summary, ...summary } } : s,
    ),
  };
}

/** The snapshots a branch added since it forked from `base` (newest first): what the job wrote. */
export function branchSnapshots(m: TableMetadata, branch: string, base: string | null): Snapshot[] {
  const out: Snapshot[] = [];
  let id: number | bigint | undefined = m.refs?.[branch]?.['snapshot-id'];
  while (id !== undefined && id !== null && String(id) !== base) {
    const want: string = String(id);
    const s: Snapshot | undefined = m.snapshots.find((x: Snapshot): boolean => String(x['snapshot-id']) === want);
    if (!s) break;
    out.push(s);
    id = s['parent-snapshot-id'];
  }
  return out;
}
