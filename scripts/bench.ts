/**
 * `npm run bench`: see bench-cycle.ts. As the CLI does (src/cli.ts), V8's flags are set before the
 * rest is loaded, so the bench measures what pristine runs.
 */
import '../src/runtime-tuning.js';

await import('./bench-cycle.js');
