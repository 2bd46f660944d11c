/**
 * The pure parts of table maintenance: which snapshots expiry removes (branches, tags, their
 * retention, pins, staged write-audit-publish snapshots, age counted from replacement) and
 * the policy read from table properties or a person's words.
 */
import { describe, expect, it } from 'vitest';
import { newTableMetadata, setRef, type Snapshot, type TableMetadata } from '../../activities/iceberg/metadata.js';
import { planExpiry, planRefExpiry, withoutRefs } from '../../activities/iceberg/maintenance.js';
import { DEFAULT_POLICY, policyOf, policyUpdates } from '../../activities/iceberg/policy.js';

const H = 3_600_000;
const snap = (id: number, ts: number, parent?: number, summary: Record<string, string> = {}): Snapshot => ({
  'snapshot-id': id,
  ...(parent !== undefined ? { 'parent-snapshot-id': parent } : {}),
  'sequence-number': id,
  'timestamp-ms': ts,
  'manifest-list': `s3://l/t/metadata/snap-${id}.avro`,
  summary: { operation: 'overwrite', ...summary },
});

/** A table whose main went 1 → 2 → … → n, one snapshot an hour, version i current from hour i. */
function table(n: number): TableMetadata {
  let m = newTableMetadata({
    uuid: 'u',
    location: 's3://l/t',
    schema: { type: 'struct', fields: [] },
    lastColumnId: 0,
    now: 0,
  });
  for (let i = 1; i <= n; i++) {
    m = { ...m, snapshots: [...m.snapshots, snap(i, i * H, i > 1 ? i - 1 : undefined)] };
    m = setRef(m, 'main', { 'snapshot-id': i, type: 'branch' }, i * H);
  }
  return m;
}
const ids = (p: ReturnType<typeof planExpiry>) => p.expire.map((s) => s['snapshot-id']);

describe('planExpiry', () => {
  it('counts age from when a snapshot stopped being current, not from when it was made', () => {
    const m = table(5);
    const policy = { ...DEFAULT_POLICY, maxSnapshotAgeMs: 2 * H };
    // At hour 6: 1 was replaced at hour 2 (4 h ago), 2 at 3 (3 h), 3 at 4 (2 h: kept), 4 at 5, 5 is current.
    expect(ids(planExpiry(m, policy, 6 * H))).toEqual([1, 2]);
    // A snapshot made long ago but current until a moment ago is kept.
    const old = setRef(
      { ...table(1), snapshots: [snap(1, 0), snap(2, 100 * H, 1)] },
      'main',
      { 'snapshot-id': 2, type: 'branch' },
      100 * H,
    );
    expect(ids(planExpiry(old, policy, 100 * H + 1000))).toEqual([]);
    expect(ids(planExpiry(old, policy, 103 * H))).toEqual([1]);
  });

  it('keeps branch and tag heads, each branch min-snapshots-to-keep, its own retention first', () => {
    let m = table(6);
    m = setRef(m, 'keep', { 'snapshot-id': 2, type: 'tag' }, 7 * H);
    m = setRef(m, 'audit', { 'snapshot-id': 4, type: 'branch' }, 7 * H);
    const policy = { ...DEFAULT_POLICY, maxSnapshotAgeMs: 0 };
    const p = planExpiry(m, policy, 100 * H);
    expect(ids(p)).toEqual([1, 3, 5]);
    expect(p.kept.get('2')).toBe('tag keep');
    expect(p.kept.get('4')).toBe('branch audit');
    expect(p.kept.get('6')).toBe('current');
    // min-snapshots-to-keep 3: main keeps 4, 5, 6 and the audit branch 2, 3, 4; a branch's own setting wins for it.
    expect(ids(planExpiry(m, { ...policy, minSnapshotsToKeep: 3 }, 100 * H))).toEqual([1]);
    const own = {
      ...m,
      refs: { ...m.refs, audit: { 'snapshot-id': 4, type: 'branch' as const, 'min-snapshots-to-keep': 2 } },
    };
    expect(ids(planExpiry(own, policy, 100 * H))).toEqual([1, 5]);
  });

  it('keeps pinned versions and snapshots staged for an audit not yet published', () => {
    let m = table(4);
    m = {
      ...m,
      snapshots: [
        ...m.snapshots,
        snap(7, 1 * H, 1, { 'wap.id': 'w1' }),
        snap(8, 1 * H, 1, { 'wap.id': 'w2' }),
        snap(9, 2 * H, 1, { 'published-wap-id': 'w2' }),
      ],
    };
    const p = planExpiry(
      m,
      { ...DEFAULT_POLICY, maxSnapshotAgeMs: 0 },
      100 * H,
      new Map([['2', 'pipeline p v1 task t']]),
    );
    expect(ids(p)).toEqual([1, 3, 8, 9]);
    expect(p.kept.get('2')).toBe('pinned by pipeline p v1 task t');
    expect(p.kept.get('7')).toMatch(/staged for audit/);
  });
});

describe('planRefExpiry', () => {
  /** main 1 → 6 (snapshot i made at hour i); a rejected audit on 2, an old and a young audit, a tag, a user branch. */
  const refs = () => {
    let m = table(6);
    m = setRef(m, 'audit-run_a-load', { 'snapshot-id': 2, type: 'branch' }, 7 * H);
    m = setRef(m, 'audit-run_b-load', { 'snapshot-id': 3, type: 'branch' }, 7 * H);
    m = setRef(m, 'audit-run_c-load', { 'snapshot-id': 6, type: 'branch' }, 7 * H);
    m = setRef(m, 'keep', { 'snapshot-id': 1, type: 'tag' }, 7 * H);
    m = setRef(m, 'dev', { 'snapshot-id': 4, type: 'branch' }, 7 * H);
    m = setRef(m, 'short', { 'snapshot-id': 5, type: 'tag', 'max-ref-age-ms': 1 * H }, 7 * H);
    return m;
  };
  const policy = { ...DEFAULT_POLICY, maxAuditRefAgeMs: 3 * H, maxSnapshotAgeMs: 0 };

  it('removes audit branches older than strata.audit.max-ref-age-ms and refs past their own max-ref-age-ms; main, other refs and young audits stay', () => {
    const p = planRefExpiry(refs(), policy, 8 * H);
    // audit a's head is 6 h old, b's 5 h (> 3 h); c's 2 h; the tag 'short' 3 h (> its own 1 h).
    expect(p.remove.sort()).toEqual(['audit-run_a-load', 'audit-run_b-load', 'short']);
    expect(p.kept.get('audit-run_c-load')).toBe('younger than its max ref age');
    expect(p.kept.get('keep')).toBe('tag without max-ref-age-ms');
    expect(p.kept.get('dev')).toBe('branch without max-ref-age-ms');
    expect(p.kept.has('main')).toBe(false);
    expect(p.remove).not.toContain('main');
    // A ref's own max-ref-age-ms wins over the policy for an audit branch too.
    const own = setRef(
      refs(),
      'audit-run_a-load',
      { 'snapshot-id': 2, type: 'branch', 'max-ref-age-ms': 100 * H },
      8 * H,
    );
    expect(planRefExpiry(own, policy, 8 * H).remove).not.toContain('audit-run_a-load');
  });

  it('never removes an audit in progress, nor main however old', () => {
    const p = planRefExpiry(refs(), { ...policy, maxAuditRefAgeMs: 0 }, 1000 * H, new Set(['audit-run_a-load']));
    expect(p.kept.get('audit-run_a-load')).toBe('audit in progress');
    expect(p.remove.sort()).toEqual(['audit-run_b-load', 'audit-run_c-load', 'short']);
    expect(withoutRefs(refs(), p.remove).refs.main).toEqual({ 'snapshot-id': 6, type: 'branch' });
  });

  it('lets the snapshots only a removed ref kept expire in the same run', () => {
    const m = refs();
    const before = planExpiry(m, policy, 8 * H);
    expect(before.kept.get('2')).toBe('branch audit-run_a-load');
    const p = planRefExpiry(m, policy, 8 * H);
    const after = planExpiry(withoutRefs(m, p.remove), policy, 8 * H);
    expect(after.expire.map((s) => s['snapshot-id'])).toEqual([2, 3, 5]);
  });
});

describe('the maintenance policy', () => {
  it('defaults to 120 h, one snapshot, 512 MiB, five files, three days, audit branches 120 h, on', () => {
    expect(policyOf(undefined).policy).toEqual({
      enabled: true,
      maxSnapshotAgeMs: 120 * H,
      minSnapshotsToKeep: 1,
      targetFileSizeBytes: 512 * 1024 * 1024,
      minInputFiles: 5,
      orphanOlderThanMs: 72 * H,
      maxAuditRefAgeMs: 120 * H,
    });
    expect(policyOf({ 'strata.audit.max-ref-age-ms': '60000' }).policy.maxAuditRefAgeMs).toBe(60_000);
    expect(policyOf({ 'strata.audit.max-ref-age-ms': '-1' }).problems).toEqual([
      'strata.audit.max-ref-age-ms must be a whole number of milliseconds ≥ 0 (got "-1"): the default is used',
    ]);
  });

  it('reads table properties, ignores bad ones with a reason, and lets overrides win', () => {
    const r = policyOf(
      {
        'history.expire.max-snapshot-age-ms': '1000',
        'history.expire.min-snapshots-to-keep': '0',
        'write.target-file-size-bytes': 'big',
        'strata.maintenance.enabled': 'false',
      },
      { minInputFiles: 9 },
    );
    expect(r.policy).toMatchObject({ maxSnapshotAgeMs: 1000, minSnapshotsToKeep: 1, enabled: false, minInputFiles: 9 });
    expect(r.problems).toEqual([
      'history.expire.min-snapshots-to-keep must be a whole number ≥ 1 (got "0"): the default is used',
      'write.target-file-size-bytes must be a whole number of bytes ≥ 1048576 (1 MiB) (got "big"): the default is used',
    ]);
  });

  it("turns a person's words into properties, every bad value reported at once", () => {
    expect(
      policyUpdates({
        maxSnapshotAge: '48h',
        targetFileSize: '256MiB',
        orphanOlderThan: '7d',
        minSnapshots: '3',
        auditBranchAge: '2d',
      }),
    ).toEqual({
      updates: {
        'history.expire.max-snapshot-age-ms': String(48 * H),
        'history.expire.min-snapshots-to-keep': '3',
        'write.target-file-size-bytes': String(256 * 1024 * 1024),
        'strata.maintenance.orphan-older-than-ms': String(7 * 24 * H),
        'strata.audit.max-ref-age-ms': String(48 * H),
      },
      problems: [],
    });
    expect(
      policyUpdates({ maxSnapshotAge: 'soon', targetFileSize: '1KB', enabled: 'yes', auditBranchAge: '5 days' })
        .problems,
    ).toEqual([
      'strata.maintenance.enabled must be true or false (got "yes")',
      '--max-snapshot-age takes a duration like 90m, 48h or 7d (got "soon")',
      'write.target-file-size-bytes must be a whole number of bytes ≥ 1048576 (1 MiB) (got "1000")',
      '--audit-branch-age takes a duration like 90m, 48h or 7d (got "5 days")',
    ]);
  });
});
