/**
 * The layer table of the design doc (docs/layout.md), enforced: `npm run lint` fails
 * with the rule's name when an import crosses a layer the wrong way.
 */
const ADAPTERS = '^activities/(.+/activities|index|core/(task|job|sensor)|metastore/specs)\\.ts$';

/** A rule of the table: modules matching `from` may not import what matches `to`; an import that does fails lint. */
const forbid = (name, comment, from, to) => ({ name, comment, severity: 'error', from, to });
/** The modules under any of `layers`. */
const under = (...layers) => `^(${layers.join('|')})/`;

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    forbid(
      'schemas-are-leaves',
      'schemas/ holds zod schemas, types and pure shared definitions: it imports no other layer.',
      { path: '^schemas/' },
      {
        path: under('workflows', 'activities', 'workers', 'api', 'store', 'cli', 'client', 'bench', 'test', 'examples'),
      },
    ),
    forbid(
      'workflows-are-deterministic',
      'workflows/ may import only schemas/ and itself (no I/O, no store, no clients); activities/ only as types (typed proxies), never their code.',
      { path: '^workflows/' },
      {
        path: under('activities', 'workers', 'api', 'store', 'cli', 'client', 'bench', 'test', 'examples'),
        dependencyTypesNot: ['type-only'],
      },
    ),
    forbid(
      'workflows-import-only-the-workflow-sdk',
      'Workflow code runs in the sandbox: @temporalio/workflow and @temporalio/common only.',
      { path: '^workflows/' },
      {
        path: '@temporalio/(client|worker|activity|testing)|^node:|(^|/)node_modules/(pg|mysql2|@duckdb|@aws-sdk|@kubernetes)/',
      },
    ),
    forbid(
      'store-over-schemas-only',
      'store/ is the metastore: SQL and typed queries over schemas/ types.',
      { path: '^store/' },
      { path: under('workflows', 'activities', 'workers', 'api', 'cli', 'client', 'bench', 'test', 'examples') },
    ),
    forbid(
      'activities-not-workflows-or-surfaces',
      'activities/ are side effects; they never import workflow code, the HTTP API, the CLI or workers.',
      { path: '^activities/' },
      { path: under('workflows', 'workers', 'api', 'cli', 'bench', 'test') },
    ),
    forbid(
      'only-adapters-use-the-activity-sdk',
      'Protocol clients and engines in activities/ are Temporal-free (the API uses them too); only the adapters (activities.ts, core/task|job|sensor) import @temporalio/activity.',
      { path: '^activities/', pathNot: ADAPTERS },
      { path: '@temporalio/activity' },
    ),
    forbid(
      'client-below-surfaces',
      'client/ is what the API, CLI, benches and tests share to drive Strata; it never imports them.',
      { path: '^client/' },
      { path: under('workers', 'api', 'cli', 'bench', 'test') },
    ),
    forbid(
      'client-uses-no-activity-adapters',
      'client/ may use Temporal-free engine and protocol modules of activities/, never an activity adapter.',
      { path: '^client/' },
      { path: ADAPTERS },
    ),
    forbid(
      'api-through-client',
      'api/ reaches Temporal through client/ and data through store/ and Temporal-free activities/ modules: never workflows, workers, the CLI or an activity adapter.',
      { path: '^api/' },
      { path: [under('workflows', 'workers', 'cli', 'bench', 'test'), ADAPTERS] },
    ),
    forbid(
      'cli-through-client',
      'cli/ drives Strata through client/ (and store/ plus Temporal-free activities/ modules for admin commands): never the HTTP API code, workflows or an activity adapter.',
      { path: '^cli/' },
      { path: [under('api', 'workflows', 'workers', 'bench', 'test'), ADAPTERS] },
    ),
    forbid(
      'no-circular',
      'Import cycles hide which module owns what.',
      { path: under('schemas', 'workflows', 'activities', 'store', 'client', 'api', 'cli') },
      { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    ),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/|\\.d\\.ts$' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
