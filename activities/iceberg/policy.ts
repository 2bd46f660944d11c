/**
 * A table's maintenance policy, as Iceberg table properties (so Spark's `ALTER TABLE … SET
 * TBLPROPERTIES`, the REST catalog's `set-properties` and `strata tables policy` all set the
 * same thing). The defaults are Iceberg's own (and what the best managed catalogs use):
 * snapshots expire after 120 h keeping at least one, compaction aims at 512 MiB files and
 * starts at 5 small files, orphan files are removed once 3 days old, and audit branches of
 * write-audit-publish are removed once 120 h old (like snapshots).
 */
export interface MaintenancePolicy {
  /** `strata.maintenance.enabled`: false leaves the table out of the scheduled maintenance (tasks still run). */
  enabled: boolean;
  /** `history.expire.max-snapshot-age-ms`: a snapshot is kept this long after it stopped being current. */
  maxSnapshotAgeMs: number;
  /** `history.expire.min-snapshots-to-keep`: snapshots of each branch's history always kept. */
  minSnapshotsToKeep: number;
  /** `write.target-file-size-bytes`: compaction writes files of about this size; smaller than 75% is small. */
  targetFileSizeBytes: number;
  /** `strata.compaction.min-input-files`: a partition is compacted once it has this many small files. */
  minInputFiles: number;
  /** `strata.maintenance.orphan-older-than-ms`: unreferenced files younger than this are left alone (in-flight writes). */
  orphanOlderThanMs: number;
  /**
   * `strata.audit.max-ref-age-ms`: an audit branch of write-audit-publish (`audit-…`) is removed
   * once its head snapshot is this old (an audit still in progress never is), so that what it
   * alone kept can expire.
   */
  maxAuditRefAgeMs: number;
}

const HOUR = 3_600_000;
export const DEFAULT_POLICY: MaintenancePolicy = {
  enabled: true,
  maxSnapshotAgeMs: 120 * HOUR,
  minSnapshotsToKeep: 1,
  targetFileSizeBytes: 512 * 1024 * 1024,
  minInputFiles: 5,
  orphanOlderThanMs: 72 * HOUR,
  maxAuditRefAgeMs: 120 * HOUR,
};

/** Policy field → the table property that holds it. */
export const POLICY_PROPERTIES = {
  enabled: 'strata.maintenance.enabled',
  maxSnapshotAgeMs: 'history.expire.max-snapshot-age-ms',
  minSnapshotsToKeep: 'history.expire.min-snapshots-to-keep',
  targetFileSizeBytes: 'write.target-file-size-bytes',
  minInputFiles: 'strata.compaction.min-input-files',
  orphanOlderThanMs: 'strata.maintenance.orphan-older-than-ms',
  maxAuditRefAgeMs: 'strata.audit.max-ref-age-ms',
} as const satisfies Record<keyof MaintenancePolicy, string>;

/** The policy's fields, in the order they are read. */
const POLICY_FIELDS = [
  'enabled',
  'maxSnapshotAgeMs',
  'minSnapshotsToKeep',
  'targetFileSizeBytes',
  'minInputFiles',
  'orphanOlderThanMs',
  'maxAuditRefAgeMs',
] as const satisfies (keyof MaintenancePolicy)[];

/** What each property takes, for messages. */
const RULES: Record<keyof MaintenancePolicy, { min: number; what: string }> = {
  enabled: { min: 0, what: 'true or false' },
  maxSnapshotAgeMs: { min: 0, what: 'a whole number of milliseconds ≥ 0' },
  minSnapshotsToKeep: { min: 1, what: 'a whole number ≥ 1' },
  targetFileSizeBytes: { min: 1024 * 1024, what: 'a whole number of bytes ≥ 1048576 (1 MiB)' },
  minInputFiles: { min: 2, what: 'a whole number ≥ 2' },
  orphanOlderThanMs: { min: 0, what: 'a whole number of milliseconds ≥ 0' },
  maxAuditRefAgeMs: { min: 0, what: 'a whole number of milliseconds ≥ 0' },
};

/** One property value checked: the value, or a message saying what to write. */
export function checkPolicyValue(field: keyof MaintenancePolicy, raw: string): number | boolean | string {
  const r = RULES[field];
  if (field === 'enabled') {
    if (raw === 'true' || raw === 'false') return raw === 'true';
    return `${POLICY_PROPERTIES[field]} must be ${r.what} (got "${raw}")`;
  }
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < r.min)
    return `${POLICY_PROPERTIES[field]} must be ${r.what} (got "${raw}")`;
  return n;
}

/**
 * The table's policy: its properties over the defaults. A property holding a bad value
 * (another engine may set anything) is ignored and reported, never guessed at.
 */
export function policyOf(
  properties: Record<string, string> | undefined,
  overrides: Partial<MaintenancePolicy> = {},
): { policy: MaintenancePolicy; problems: string[] } {
  const policy = { ...DEFAULT_POLICY };
  const problems: string[] = [];
  for (const field of POLICY_FIELDS) {
    const raw = properties?.[POLICY_PROPERTIES[field]];
    if (raw === undefined) continue;
    const v = checkPolicyValue(field, String(raw));
    if (typeof v === 'string') problems.push(`${v}: the default is used`);
    else Object.assign(policy, { [field]: v });
  }
  return { policy: { ...policy, ...overrides }, problems };
}

const DURATION_RE = /^(\d+)(ms|s|m|h|d)$/;
const UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: HOUR, d: 24 * HOUR };
const SIZE_RE = /^(\d+)(B|KB|MB|GB|KiB|MiB|GiB)?$/i;
const SIZE_UNIT: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/**
 * Property updates from a person's words (`--max-snapshot-age 48h --target-file-size 256MiB`):
 * durations like 90m/48h/7d, sizes like 256MiB. Every bad value is reported at once.
 */
export function policyUpdates(o: {
  enabled?: string;
  maxSnapshotAge?: string;
  minSnapshots?: string;
  targetFileSize?: string;
  minInputFiles?: string;
  orphanOlderThan?: string;
  auditBranchAge?: string;
}): { updates: Record<string, string>; problems: string[] } {
  const updates: Record<string, string> = {};
  const problems: string[] = [];
  const ms = (flag: string, v: string) => {
    const m = DURATION_RE.exec(v.trim());
    if (!m) problems.push(`${flag} takes a duration like 90m, 48h or 7d (got "${v}")`);
    return m ? String(Number(m[1]) * UNIT[m[2]]) : undefined;
  };
  const put = (field: keyof MaintenancePolicy, raw: string | undefined) => {
    if (raw === undefined) return;
    const v = checkPolicyValue(field, raw);
    if (typeof v === 'string') problems.push(v);
    else updates[POLICY_PROPERTIES[field]] = String(raw);
  };
  put('enabled', o.enabled);
  put('maxSnapshotAgeMs', o.maxSnapshotAge === undefined ? undefined : ms('--max-snapshot-age', o.maxSnapshotAge));
  put('minSnapshotsToKeep', o.minSnapshots);
  if (o.targetFileSize !== undefined) {
    const m = SIZE_RE.exec(o.targetFileSize.trim());
    if (!m) problems.push(`--target-file-size takes a size like 512MiB or 134217728 (got "${o.targetFileSize}")`);
    else put('targetFileSizeBytes', String(Number(m[1]) * SIZE_UNIT[(m[2] ?? 'b').toLowerCase()]));
  }
  put('minInputFiles', o.minInputFiles);
  put('orphanOlderThanMs', o.orphanOlderThan === undefined ? undefined : ms('--orphan-older-than', o.orphanOlderThan));
  put('maxAuditRefAgeMs', o.auditBranchAge === undefined ? undefined : ms('--audit-branch-age', o.auditBranchAge));
  return { updates, problems };
}
