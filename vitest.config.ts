import { defineConfig } from 'vitest/config';
import LongestFirst from './test/support/sequencer.js';
import { MAX_WORKERS } from './test/support/workers.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // The integration files mostly wait (on CloudTrail's 2 calls/s, on drains, on moto): run them side
    // by side rather than one per core. Each worker has its own moto (started by the global setup, wiped
    // by each Scenario) and each file its own fakes, so files running at the same time share nothing.
    pool: 'forks',
    maxWorkers: MAX_WORKERS,
    // The longest files first, so that the suite ends when its longest file does.
    sequence: { sequencer: LongestFirst },
    testTimeout: 120_000,
    hookTimeout: 180_000,
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
