/**
 * The layer table of the design doc (docs/layout.md), enforced: `npm run lint` fails
 * with the rule's name when an import crosses a layer the wrong way.
 */
const ADAPTERS = '^activities/(.+/activities|index|core/(task|job|sensor)|metastore/specs)\\.ts$';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'schemas-are-leaves',
      comment: 'schemas/ holds zod schemas, types and pure shared definitions: it imports no other layer.',
      severity: 'error',
      from: { path: '^schemas/' },
      to: { path: '^(workflows|activities|workers|api|store|cli|client|bench|test|examples)/' },
    },
    {
      name: 'workflows-are-deterministic',
      comment:
        'workflows/ may import only schemas/ and itself (no I/O, no store, no clients); activities/ only as types (typed proxies), never their code.',
      severity: 'error',
      from: { path: '^workflows/' },
      to: {
        path: '^(activities|workers|api|store|cli|client|bench|test|examples)/',
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'workflows-import-only-the-workflow-sdk',
      comment: 'Workflow code runs in the sandbox: @temporalio/workflow and @temporalio/common only.',
      severity: 'error',
      from: { path: '^workflows/' },
      to: {
        path: '@temporalio/(client|worker|activity|testing)|^node:|(^|/)node_modules/(pg|mysql2|@duckdb|@aws-sdk|@kubernetes)/',
      },
    },
    {
      name: 'store-over-schemas-only',
      comment: 'store/ is the metastore: SQL and typed queries over schemas/ types.',
      severity: 'error',
      from: { path: '^store/' },
      to: { path: '^(workflows|activities|workers|api|cli|client|bench|test|examples)/' },
    },
    {
      name: 'activities-not-workflows-or-surfaces',
      comment: 'activities/ are side effects; they never import workflow code, the HTTP API, the CLI or workers.',
      severity: 'error',
      from: { path: '^activities/' },
      to: { path: '^(workflows|workers|api|cli|bench|test)/' },
    },
    {
      name: 'only-adapters-use-the-activity-sdk',
      comment:
        'Protocol clients and engines in activities/ are Temporal-free (the API uses them too); only the adapters (activities.ts, core/task|job|sensor) import @temporalio/activity.',
      severity: 'error',
      from: { path: '^activities/', pathNot: ADAPTERS },
      to: { path: '@temporalio/activity' },
    },
    {
      name: 'client-below-surfaces',
      comment: 'client/ is what the API, CLI, benches and tests share to drive Strata; it never imports them.',
      severity: 'error',
      from: { path: '^client/' },
      to: { path: '^(workers|api|cli|bench|test)/' },
    },
    {
      name: 'client-uses-no-activity-adapters',
      comment: 'client/ may use Temporal-free engine and protocol modules of activities/, never an activity adapter.',
      severity: 'error',
      from: { path: '^client/' },
      to: { path: ADAPTERS },
    },
    {
      name: 'api-through-client',
      comment:
        'api/ reaches Temporal through client/ and data through store/ and Temporal-free activities/ modules: never workflows, workers, the CLI or an activity adapter.',
      severity: 'error',
      from: { path: '^api/' },
      to: { path: ['^(workflows|workers|cli|bench|test)/', ADAPTERS] },
    },
    {
      name: 'cli-through-client',
      comment:
        'cli/ drives Strata through client/ (and store/ plus Temporal-free activities/ modules for admin commands): never the HTTP API code, workflows or an activity adapter.',
      severity: 'error',
      from: { path: '^cli/' },
      to: { path: ['^(api|workflows|workers|bench|test)/', ADAPTERS] },
    },
    {
      name: 'no-circular',
      comment: 'Import cycles hide which module owns what.',
      severity: 'error',
      from: { path: '^(schemas|workflows|activities|store|client|api|cli)/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/|\\.d\\.ts$' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
