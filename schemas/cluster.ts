import { z } from 'zod';
import { Duration } from './duration.js';
import { TENANT_RE } from './tenant.js';

/** A request to create (or ensure) a managed cluster. */
export const ClusterRequest = z
  .object({
    tenant: z.string().regex(TENANT_RE, 'a tenant name is lower-case letters, digits and "-"'),
    name: z
      .string()
      .regex(
        /^[a-z][a-z0-9-]{0,39}$/,
        'a cluster name is lower-case letters, digits and "-" (at most 40), starting with a letter',
      ),
    engine: z.enum(['spark-connect', 'emr']).default('spark-connect'),
    instances: z.number().int().min(1, 'a cluster needs at least 1 instance').default(2),
    cores: z.number().int().min(1).default(2),
    memoryGi: z.number().int().min(1).default(4),
    idleTimeout: Duration.default('30m'),
    maxLifetime: Duration.default('12h'),
    pollInterval: Duration.default('10s'),
    /** EMR: the release label (emr-7.5.0); spark-connect: the image, which must be allowed for the tenant's tier. */
    release: z.string().min(1).optional(),
    /** Continue as new after this many history events (tests use small numbers). */
    continueAsNewAfterEvents: z.number().int().min(20).optional(),
  })
  .strict();
/** An EMR release label (a cluster request's `release` on engine emr). */
export const EMR_RELEASE_RE = /^emr-\d+\.\d+\.\d+$/;
export type ClusterRequest = z.input<typeof ClusterRequest>;

export type ClusterEngine = 'spark-connect' | 'emr';
export type ClusterPhase = 'provisioning' | 'ready' | 'terminating' | 'terminated' | 'failed';

export interface ClusterSize {
  /** spark-connect: executors; emr: core instances. */
  instances: number;
  cores: number;
  /** Gibibytes per instance. */
  memoryGi: number;
}

export interface ClusterSpec {
  tenant: string;
  name: string;
  engine: ClusterEngine;
  size: ClusterSize;
  /** Terminate after this long without a touch (ms). */
  idleTimeoutMs: number;
  /** Terminate this long after creation regardless of use (ms). */
  maxLifetimeMs: number;
  /** How often to poll the provider while provisioning (ms). */
  pollMs?: number;
  /** Continue as new after this many events (tests pass small numbers). */
  continueAsNewAfterEvents?: number;
  /** EMR release / Spark image. */
  release?: string;
}

export interface ClusterState {
  tenant: string;
  name: string;
  engine: ClusterEngine;
  phase: ClusterPhase;
  size: ClusterSize;
  /** spark-connect: namespace/name of the SparkConnect; emr: the cluster id j-… */
  providerId?: string;
  /** spark-connect: sc:// endpoint. */
  endpoint?: string;
  createdAt: string;
  lastTouchedAt: string;
  terminatedAt?: string;
  terminationReason?: string;
  error?: string;
  touches: number;
  continuations: number;
}

export interface ClusterInput {
  spec: ClusterSpec;
  /** Carried across continue-as-new. */
  carried?: ClusterState;
  /** A terminate request the previous execution received but had not acted on: never lost across continue-as-new. */
  pendingTerminate?: string;
}

export const clusterWorkflowId = (tenant: string, name: string) => `cluster/${tenant}/${name}`;
