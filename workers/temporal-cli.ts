/** The Temporal CLI (dev server and Web UI), found or built from its Go module. */
import { findOrBuildGoTool } from './go-tool.js';

export { cacheDir } from './go-tool.js';

export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

export function findOrBuildTemporalCli(log?: (msg: string) => void): Promise<string> {
  return findOrBuildGoTool(
    {
      name: 'temporal',
      label: 'the Temporal CLI',
      module: TEMPORAL_CLI_MODULE,
      envVar: 'TEMPORAL_CLI',
      buildTime: 'a few minutes',
    },
    log,
  );
}
