// vitest globalSetup: find (or install) moto_server once before any test file runs, so a machine
// without moto fails fast with one clear message instead of every integration test timing out; then
// start one moto per worker, and one PostgreSQL cluster. A worker's test files take turns on its moto (each Scenario wipes it
// first), so moto's start and its first-request imports are paid once per worker, not once per file.
import { resolveMotoServer, SHARED_MOTO_ENV, startMoto, type MotoServer } from './moto.js';
import { findPgBin, HOW_TO_GET_POSTGRES, PG_MISSING_ENV, PG_URL_ENV, startPostgres, type PostgresServer } from './postgres.js';
import { MAX_WORKERS } from './workers.js';

export default async function setup(): Promise<() => Promise<void>> {
  await resolveMotoServer();
  // One PostgreSQL cluster for the whole run (each test takes a database of its own). Without the server
  // binaries, the PostgreSQL tests are skipped with a message that says how to get them.
  const pgBin = findPgBin();
  const [servers, postgres] = await Promise.all([
    Promise.all(Array.from({ length: MAX_WORKERS }, () => startMoto())) as Promise<MotoServer[]>,
    pgBin ? startPostgres(pgBin) : Promise.resolve(null as PostgresServer | null),
  ]);
  // Forks are spawned after the global setup and inherit its environment.
  process.env[SHARED_MOTO_ENV] = servers.map((m) => m.url).join(' ');
  if (postgres) process.env[PG_URL_ENV] = postgres.url;
  else {
    process.env[PG_MISSING_ENV] = HOW_TO_GET_POSTGRES;
    process.stderr.write(`\n*** ${HOW_TO_GET_POSTGRES}\n\n`);
  }
  return async () => {
    delete process.env[SHARED_MOTO_ENV];
    delete process.env[PG_URL_ENV];
    await Promise.all([...servers.map((m) => m.stop()), postgres?.stop()]);
  };
}
