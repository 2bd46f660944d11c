/**
 * A run's skeleton: every task's id, needs, trigger rule and profile (how it runs), from the
 * inline spec or page by page (bounded pages) from the metastore when the spec travels by
 * reference. Profiles are shared: a pipeline of 50,000 alike SQL tasks holds a handful.
 */
import type { NotifyRuleRef } from '../../schemas/notify.js';
import type { PipelineRunInput, SpecRef } from '../../schemas/run.js';
import { skeletonPage, triggerAt, type SkeletonPage, type TaskProfile } from '../../schemas/skeleton.js';
import type { PlanNode } from '../dag.js';

export interface Skeleton {
  pipelineId: string;
  maxParallel: number;
  ids: string[];
  nodes: PlanNode[];
  profileOf: number[];
  profiles: TaskProfile[];
  reused: Set<string>;
  /** The spec's notify rules and SLA (specs without rules: absent). */
  notify?: { rules: NotifyRuleRef[]; slaMs?: number };
}

export type PageLoader = (a: {
  ref: SpecRef;
  from: number;
  repairOf?: string;
}) => Promise<SkeletonPage & { reused?: string[] }>;

export function emptySkeleton(pipelineId = '', maxParallel = 16): Skeleton {
  return { pipelineId, maxParallel, ids: [], nodes: [], profileOf: [], profiles: [], reused: new Set() };
}

/** The spec's skeleton: from the inline spec, or page by page from the metastore. */
export async function loadSkeleton(input: PipelineRunInput, load: PageLoader, repairOf?: string): Promise<Skeleton> {
  const sk = emptySkeleton();
  const profileIndex = new Map<string, number>();
  const add = (page: SkeletonPage & { reused?: string[] }) => {
    sk.pipelineId = page.pipelineId;
    sk.maxParallel = page.maxParallel;
    if (page.notify) sk.notify = page.notify;
    const local = page.profiles.map((p) => {
      const key = JSON.stringify(p);
      let i = profileIndex.get(key);
      if (i === undefined) {
        i = sk.profiles.length;
        sk.profiles.push(p);
        profileIndex.set(key, i);
      }
      return i;
    });
    for (const [id, needs, trigger, profile] of page.nodes) {
      sk.ids.push(id);
      sk.nodes.push({ id, needs, trigger: triggerAt(trigger) });
      sk.profileOf.push(local[profile]);
    }
    for (const id of page.reused ?? []) sk.reused.add(id);
  };
  if (input.spec) {
    add(skeletonPage(input.spec, 0, Infinity));
    return sk;
  }
  const ref = input.specRef;
  // The run fails (PipelineFailed, recorded) with this message: the start must carry one or the other.
  if (!ref) throw new Error('the run was started with neither its spec nor a reference to it: start it with one');
  for (let from: number | undefined = 0; from !== undefined;) {
    const page = await load({ ref, from, repairOf });
    add(page);
    from = page.next;
  }
  return sk;
}
