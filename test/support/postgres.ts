// A throwaway PostgreSQL cluster for the tests: initdb into a temp dir, started on a free port, removed
// at the end. Debian's server binaries live under /usr/lib/postgresql/<major>/bin; initdb and postgres
// refuse to run as root, so as root they run as the `postgres` user the package created.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

const run = promisify(execFile);

/** The environment variables the global setup passes to the test files. */
export const PG_URL_ENV = 'PRISTINE_TEST_PG_URL';
export const PG_MISSING_ENV = 'PRISTINE_TEST_PG_MISSING';

export const HOW_TO_GET_POSTGRES =
  "PostgreSQL's server binaries (initdb, pg_ctl) were not found, so the PostgreSQL tests are skipped: " +
  'install them (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15) or set PG_BIN to their directory';

/** The directory of initdb and pg_ctl: $PG_BIN, else the newest /usr/lib/postgresql/<major>/bin. */
export function findPgBin(): string | null {
  const fromEnv = process.env['PG_BIN'];
  if (fromEnv) return existsSync(join(fromEnv, 'initdb')) ? fromEnv : null;
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const majors = readdirSync(base)
    .filter((d) => /^\d+$/.test(d))
    .sort((a, b) => Number(b) - Number(a));
  for (const m of majors) {
    const bin = join(base, m, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) return bin;
  }
  return null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface PostgresServer {
  /** superuser URL of the `postgres` database */
  url: string;
  stop(): Promise<void>;
}

export async function startPostgres(bin: string): Promise<PostgresServer> {
  const dir = await mkdtemp(join(tmpdir(), 'pristine-pg-'));
  const asRoot = process.getuid?.() === 0;
  const as = (cmd: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]) : run(join(bin, cmd), args));
  if (asRoot) {
    const { uid, gid } = await userIds('postgres');
    await chown(dir, uid, gid);
  }
  await chmod(dir, 0o700);
  const data = join(dir, 'data');
  await as('initdb', ['-D', data, '-A', 'trust', '-U', 'pristine', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  // Durability is not what these tests are about: fsync off makes each CREATE DATABASE cheap.
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300`;
  await as('pg_ctl', ['-D', data, '-o', opts, '-l', join(dir, 'postgres.log'), '-w', '-t', '60', 'start']);
  let stopped = false;
  return {
    url: `postgres://pristine@127.0.0.1:${port}/postgres`,
    async stop() {
      if (stopped) return;
      stopped = true;
      await as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function userIds(name: string): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run('id', ['-u', name]);
  const { stdout: g } = await run('id', ['-g', name]);
  return { uid: Number(stdout.trim()), gid: Number(g.trim()) };
}

/** The cluster the global setup started, or why there is none (the message says how to get one). */
export function testPostgres(): { url: string } | { missing: string } {
  const url = process.env[PG_URL_ENV];
  if (url) return { url };
  return { missing: process.env[PG_MISSING_ENV] ?? HOW_TO_GET_POSTGRES };
}

/** A new, empty database on the test cluster: its URL. */
export async function freshDatabase(serverUrl: string): Promise<string> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

export type StoreBackend = 'sqlite' | 'postgres';

/**
 * The state store backends a test runs on: SQLite, and PostgreSQL with why it cannot run here (its
 * server binaries missing: then its tests are skipped with that message, never passed silently).
 */
export const STORE_BACKENDS: ReadonlyArray<{ backend: StoreBackend; missing?: string }> = (() => {
  const server = testPostgres();
  return [{ backend: 'sqlite' }, { backend: 'postgres', ...('missing' in server ? { missing: server.missing } : {}) }];
})();

/** Where a new, empty store is: the SQLite location given (a file, or `:memory:`), or a fresh PostgreSQL database. */
export async function freshStore(backend: StoreBackend, sqlite: string): Promise<string> {
  if (backend === 'sqlite') return sqlite;
  const server = testPostgres();
  if ('missing' in server) throw new Error(server.missing);
  return freshDatabase(server.url);
}
