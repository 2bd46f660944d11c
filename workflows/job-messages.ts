/** Messages between a run and its external jobs' workflows. */
import { defineSignal } from '@temporalio/workflow';
import type { JobFinished } from '../schemas/external.js';

export type { JobFinished };
/** An externalJob started with `reportTo` tells its run how it ended (to whichever execution of the run is current). */
export const jobFinishedSignal = defineSignal<[JobFinished]>('jobFinished');
