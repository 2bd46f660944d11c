/**
 * bench:medallion's per-task fixed costs come from a run's history (taskGaps). Tasks run in the
 * order they become ready, not the spec's: each activity's body must be paired with its own
 * completion, or "outside the body" is the difference of two tasks' bodies.
 */
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { taskGaps } from '../../bench/history-stats.js';

const T = proto.temporal.api.enums.v1.EventType;
/** An event's fields as proto's fromObject takes them (plain numbers for its 64-bit ids). */
type Event = Record<string, unknown>;

/** A history of events at the given milliseconds, numbered in order, as the SDK's proto type. */
function history(events: [number, Event][]): proto.temporal.api.history.v1.IHistory {
  return proto.temporal.api.history.v1.History.fromObject({
    events: events.map(([ms, e], i) => ({
      ...e,
      eventId: i + 1,
      eventTime: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
    })),
  });
}
const wft = (ms: number): [number, Event] => [ms, { eventType: T.EVENT_TYPE_WORKFLOW_TASK_STARTED }];
const scheduled = (ms: number, name: string): [number, Event] => [
  ms,
  { eventType: T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, activityTaskScheduledEventAttributes: { activityType: { name } } },
];
const started = (ms: number, scheduledEventId: number): [number, Event] => [
  ms,
  { eventType: T.EVENT_TYPE_ACTIVITY_TASK_STARTED, activityTaskStartedEventAttributes: { scheduledEventId } },
];
const completed = (ms: number, scheduledEventId: number): [number, Event] => [
  ms,
  { eventType: T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, activityTaskCompletedEventAttributes: { scheduledEventId } },
];

describe('taskGaps', () => {
  it("pairs each activity's body with its own completion, in the order the tasks ran, and names each cost's task", () => {
    // The spec lists a, b, c; they ran c (body 100 ms), a (500 ms), b (50 ms); a state-recording
    // activity in between is not a SQL task.
    const h = history([
      wft(1000), // 1
      scheduled(1010, 'runSql'), // 2: c
      started(1010, 2),
      completed(1117, 2), // c: 7 ms outside its body
      wft(1119), // 5
      scheduled(1125, 'recordRunState'), // 6
      scheduled(1130, 'runSql'), // 7: a
      started(1131, 7),
      completed(1640, 7), // a: 9 ms
      wft(1643), // 10
      scheduled(1655, 'runSql'), // 11: b
      started(1655, 11),
      completed(1713, 11), // b: 8 ms
      wft(1716),
    ]);
    const g = taskGaps(h, [
      { id: 'c', body: 100 },
      { id: 'a', body: 500 },
      { id: 'b', body: 50 },
    ]);
    expect(g.decide).toEqual([
      { task: 'c', ms: 10 },
      { task: 'a', ms: 11 },
      { task: 'b', ms: 12 },
    ]);
    expect(g.dispatch).toEqual([
      { task: 'c', ms: 0 },
      { task: 'a', ms: 1 },
      { task: 'b', ms: 0 },
    ]);
    expect(g.wrap).toEqual([
      { task: 'c', ms: 7 },
      { task: 'a', ms: 9 },
      { task: 'b', ms: 8 },
    ]);
    expect(g.report).toEqual([
      { task: 'c', ms: 2 },
      { task: 'a', ms: 3 },
      { task: 'b', ms: 3 },
    ]);
  });
});
