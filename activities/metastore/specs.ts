/**
 * Specs by reference on the worker side: a run's workflow gets its spec's skeleton in
 * bounded pages, and each task activity loads and renders its own task. Specs are read
 * once per worker (single-flight, a small LRU by content hash), so a 50,000-task run reads
 * its spec from the metastore once, not once per task.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { errorMessage } from '../../schemas/errors.js';
import type { PipelineSpec, TaskSpec } from '../../schemas/pipeline.js';
import type { SpecRef, TaskActivityInput, TaskRefInput } from '../../schemas/run.js';
import { renderSpecTask, skeletonPage, type SkeletonPage } from '../../schemas/skeleton.js';
import type { Db } from '../../store/db.js';
import { successfulTasks } from '../../store/runs.js';
import { loadSpec } from '../../store/specs.js';

interface Loaded {
  spec: PipelineSpec;
  byId: Map<string, TaskSpec>;
  index: Map<string, number>;
}

const CACHE_SIZE = 4;

export function createSpecLoader(db?: Db) {
  const cache = new Map<string, Promise<Loaded>>();

  async function load(ref: SpecRef): Promise<Loaded> {
    if (!db)
      throw ApplicationFailure.create({
        type: 'ConfigError',
        nonRetryable: true,
        message: 'this worker has no metastore (DATABASE_URL), so it cannot load a pipeline spec by reference',
      });
    const key = `${ref.tenant}/${ref.hash}/${ref.version ?? ''}`;
    let p = cache.get(key);
    if (!p) {
      p = (async () => {
        const spec = await loadSpec(db, ref);
        if (!spec)
          throw ApplicationFailure.create({
            type: 'SpecNotFound',
            nonRetryable: true,
            message: `pipeline ${ref.pipelineId} (${ref.version ? `version ${ref.version}, ` : ''}content ${ref.hash.slice(0, 12)}) is not in the metastore: it was deleted; register it again and start a new run`,
          });
        return {
          spec,
          byId: new Map(spec.tasks.map((t) => [t.id, t])),
          index: new Map(spec.tasks.map((t, i) => [t.id, i])),
        };
      })();
      cache.set(key, p);
      p.catch(() => cache.delete(key));
      for (const oldest of cache.keys()) {
        if (cache.size <= CACHE_SIZE) break;
        cache.delete(oldest); // least recently used first
      }
    } else {
      cache.delete(key); // most recently used last
      cache.set(key, p);
    }
    return p;
  }

  /** The rendered task a by-reference input names; a template error fails the task without retrying. */
  async function resolve(input: TaskRefInput): Promise<TaskActivityInput['task']> {
    // A run renders only its own tenant's specs, whatever a start made around the API names.
    if (input.ref.tenant !== input.run.tenant)
      throw ApplicationFailure.create({
        type: 'SpecNotFound',
        nonRetryable: true,
        message: `pipeline ${input.ref.pipelineId} is not one of tenant ${input.run.tenant}'s`,
      });
    const { spec, byId } = await load(input.ref);
    const task = byId.get(input.taskId);
    if (!task)
      throw ApplicationFailure.create({
        type: 'SpecNotFound',
        nonRetryable: true,
        message: `pipeline ${input.ref.pipelineId} has no task ${input.taskId}`,
      });
    try {
      return renderSpecTask(spec, task, input.run, input.params ?? {});
    } catch (e) {
      let attempt = 1;
      try {
        attempt = Context.current().info.attempt;
      } catch {
        /* outside an activity */
      }
      throw ApplicationFailure.create({
        type: 'TemplateError',
        nonRetryable: true,
        message: `${task.id}: ${errorMessage(e)}`,
        details: [{ attempt }],
      });
    }
  }

  return {
    load,
    resolve,
    activities: {
      /** One bounded page of a spec's skeleton; with `repairOf`, which of its tasks that run already did. */
      async loadSpecPage(a: {
        ref: SpecRef;
        from: number;
        repairOf?: string;
      }): Promise<SkeletonPage & { reused?: string[] }> {
        const { spec } = await load(a.ref);
        const page = skeletonPage(spec, a.from);
        if (!a.repairOf || !db) return page;
        const done = new Set(await successfulTasks(db, a.repairOf));
        return { ...page, reused: page.nodes.map((n) => n[0]).filter((id) => done.has(id)) };
      },
      /** A task rendered for the workflow (timers, sensors and external jobs, which the workflow runs itself). */
      async renderTask(input: TaskRefInput): Promise<TaskActivityInput['task']> {
        return resolve(input);
      },
    },
  };
}
