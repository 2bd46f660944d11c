import { z } from 'zod';

export const CsvOptions = z
  .object({
    delimiter: z.string().min(1).max(4).default(','),
    quote: z.string().max(1).default('"'),
    escape: z.string().max(1).default('"'),
    header: z.boolean().default(true),
    encoding: z.enum(['utf8', 'utf-8', 'latin1', 'utf16le', 'ascii']).default('utf8'),
  })
  .strict();
export type CsvOptions = z.infer<typeof CsvOptions>;

export const DatasetRef = z
  .object({
    /** A path, or a file:// URI (relative paths resolve under the lake root). */
    uri: z.string().min(1),
    format: z.enum(['csv', 'parquet']).optional(),
    csv: CsvOptions.optional(),
  })
  .strict();
export type DatasetRef = z.infer<typeof DatasetRef>;

export const ReconcileOptions = z
  .object({
    /** Key columns; none = compare whole rows as multisets. */
    key: z.array(z.string().min(1)).default([]),
    /** Compare only these columns (default: every column both sides have). */
    columns: z.array(z.string()).optional(),
    ignore: z.array(z.string()).default([]),
    /** Numbers within this absolute difference are equal. */
    tolerance: z.number().nonnegative().default(0),
    trim: z.boolean().default(false),
    caseInsensitive: z.boolean().default(false),
    /** Values that count as null on both sides (a missing value always does). */
    nullValues: z.array(z.string()).default(['']),
    sampleLimit: z.number().int().min(0).max(1000).default(10),
    /** Inputs larger than this (both sides together) take the partitioned path. */
    memoryLimitBytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024),
    /** Partitions for the partitioned path (default: sized from the inputs). */
    partitions: z.number().int().min(1).max(4096).optional(),
    /**
     * Which engine compares large inputs: auto (DuckDB when the inputs and options allow it,
     * else Strata's streaming partitioner), or stream (always the streaming partitioner).
     */
    engine: z.enum(['auto', 'stream']).default('auto'),
    /** Partitions compared at once. */
    parallelism: z.number().int().min(1).max(32).default(2),
  })
  .strict();
export type ReconcileOptions = z.infer<typeof ReconcileOptions>;

export interface RowSample {
  key: Record<string, string | null>;
  row?: Record<string, string | null>;
}
export interface ChangedSample {
  key: Record<string, string | null>;
  diffs: Record<string, { left: string | null; right: string | null }>;
}

export interface ReconcileResult {
  method: 'memory' | 'partitioned' | 'duckdb';
  reason: string;
  exact: true;
  counts: { left: number; right: number; matched: number; changed: number; onlyLeft: number; onlyRight: number };
  columnMismatches: Record<string, number>;
  columns: { compared: string[]; onlyLeft: string[]; onlyRight: string[] };
  duplicates: {
    left: { keys: number; rows: number; samples: Record<string, string | null>[] };
    right: { keys: number; rows: number; samples: Record<string, string | null>[] };
  };
  samples: { onlyLeft: RowSample[]; onlyRight: RowSample[]; changed: ChangedSample[] };
  partitions?: number;
}

export interface ReconcileProgress {
  phase: 'reading' | 'partition-left' | 'partition-right' | 'compare' | 'done';
  rows: number;
  bytes: number;
  partitionsDone?: number;
  partitions?: number;
}
