// vitest globalSetup: find (or install) moto_server once before any test file runs, so a machine
// without moto fails fast with one clear message instead of every integration test timing out; then
// start one moto per worker. A worker's test files take turns on its moto (each Scenario wipes it
// first), so moto's start and its first-request imports are paid once per worker, not once per file.
import { resolveMotoServer, SHARED_MOTO_ENV, startMoto, type MotoServer } from './moto.js';
import { MAX_WORKERS } from './workers.js';

export default async function setup(): Promise<() => Promise<void>> {
  await resolveMotoServer();
  const servers: MotoServer[] = await Promise.all(Array.from({ length: MAX_WORKERS }, () => startMoto()));
  // Forks are spawned after the global setup and inherit its environment.
  process.env[SHARED_MOTO_ENV] = servers.map((m) => m.url).join(' ');
  return async () => {
    delete process.env[SHARED_MOTO_ENV];
    await Promise.all(servers.map((m) => m.stop()));
  };
}
