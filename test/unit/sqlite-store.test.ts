import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError } from '../../src/state/ports.js';
import { SqliteStateStore } from '../../src/state/sqlite/store.js';
import { SCHEMA_VERSION } from '../../src/state/sqlite/schema.js';
import { fixturePath } from '../support/fixtures.js';
import { sessionActivity } from '../support/state.js';

let dir: string;
let file: string;
const opened: SqliteStateStore[] = [];

function open(at = file): SqliteStateStore {
  const s = SqliteStateStore.open(at);
  opened.push(s);
  return s;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pristine-store-'));
  file = path.join(dir, 'state', 'pristine.db');
});

afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  await rm(dir, { recursive: true, force: true });
});

const T0 = Date.parse('2026-11-18T10:00:00Z');
const ACCOUNT = '111122223333';
const US = { accountId: ACCOUNT, region: 'us-east-1' };
const MIN = 60_000;

const activity = sessionActivity;

describe('SqliteStateStore: the file', () => {
  it('creates the directory and the database, in WAL mode', async () => {
    // Act
    open();

    // Assess
    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      raw.close();
    }
  });

  it('fails its health check when the file was removed under it', async () => {
    // Prepare
    const s = open();
    await s.check();

    // Act
    rmSync(path.dirname(file), { recursive: true, force: true });

    // Assess
    await expect(s.check()).rejects.toThrow(/was removed or replaced since it was opened/);
    await s.close();
  });

  it('refuses a file that is not a SQLite database, naming the file', async () => {
    // Prepare
    const bogus = path.join(dir, 'notes.db');
    await writeFile(bogus, 'this is not a database, just some text that is long enough to have a header\n'.repeat(20));

    // Act
    const act = () => open(bogus);

    // Assess
    expect(act).toThrow(StoreError);
    expect(act).toThrow(bogus);
  });

  it('refuses a store written by a newer pristine', async () => {
    // Prepare
    const s = open();
    await s.setMeta('schema_version', String(SCHEMA_VERSION + 1));
    await s.close();

    // Act
    const act = () => open();

    // Assess
    expect(act).toThrow(StoreError);
    expect(act).toThrow(new RegExp(`newer pristine \\(schema ${SCHEMA_VERSION + 1}\\).*use that version, or a new --state file`));
  });

  it('opens a store of its own schema version again', async () => {
    // Prepare
    await open().close();

    // Act
    const s = open();

    // Assess
    expect(await s.meta('schema_version')).toBe(String(SCHEMA_VERSION));
  });
});

describe('SqliteStateStore: a file written by pristine 0.1 (schema 1)', () => {
  const V1 = fixturePath('state/pristine-v1.db');

  it('is migrated in place on first open, and keeps every alert, finding, outbox row, replacement and cycle', async () => {
    // Prepare
    const copy = path.join(dir, 'old.db');
    await mkdir(dir, { recursive: true });
    await copyFile(V1, copy);

    // Act
    const s = open(copy);

    // Assess
    const raw = new Database(copy, { readonly: true });
    try {
      expect(raw.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get()).toEqual({ value: String(SCHEMA_VERSION) });
    } finally {
      raw.close();
    }
    expect(await s.instance('i-0a1b2c3d4e5f60718')).toMatchObject({ verdict: 'tainted', accountId: null, alertOutboxId: 1 });
    expect(await s.sentTs(1)).toBe('1700000000.000100');
    expect(await s.inFlight()).toEqual([expect.objectContaining({ oldInstanceId: 'i-0a1b2c3d4e5f60718', accountId: null, step: 'prepare' })]);
    // Owned by a UUID from now on; the fresh instance it may have launched carries its row id, which it still finds.
    expect((await s.inFlight())[0]).toMatchObject({ uuid: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/), data: expect.objectContaining({ legacyTag: '1' }), leaseOwner: null });
    expect(await s.journalOf((await s.inFlight())[0]!.id)).toEqual([expect.objectContaining({ step: 'prepare', phase: 'begin' })]);
    expect(await s.recentCycles()).toEqual([expect.objectContaining({ outcome: 'tainted', exitCode: 1 })]);
    // One SSM session is one finding now: the key is the session id, not the event id.
    expect((await s.openFindings())[0]?.findings.map((f) => f.key)).toEqual(['interactive-session:alice-0a1b2c3d4e5f60718']);
  });

  it("adopts the rows that have no account into pristine's own, coverage and the evidence log included", async () => {
    // Prepare
    const copy = path.join(dir, 'old.db');
    await mkdir(dir, { recursive: true });
    await copyFile(V1, copy);
    const s = open(copy);
    const scope = { accountId: '123456789012', region: 'us-east-1' };
    expect(await s.hasLegacyRows()).toBe(true);

    // Act
    await s.adoptLegacyRows(scope.accountId);

    // Assess
    expect(await s.hasLegacyRows()).toBe(false);
    expect((await s.activities(scope, 0)).map((a) => [a.id, a.accountId])).toEqual([
      ['11111111-1111-4111-8111-111111111111', scope.accountId],
      ['22222222-2222-4222-8222-222222222222', scope.accountId],
    ]);
    expect(await s.coverage(scope, 'lookup-events')).toEqual([{ from: Date.parse('2026-11-20T12:00:00Z'), to: Date.parse('2026-11-21T12:00:00Z') }]);
    expect(await s.coverage(scope, 'ssm-sessions')).toEqual(await s.coverage(scope, 'lookup-events'));
    expect((await s.inFlight())[0]?.accountId).toBe(scope.accountId);
    expect((await s.instance('i-0b2c3d4e5f6071829'))?.accountId).toBe(scope.accountId);
  });
});

describe('SqliteStateStore: the evidence log in memory', () => {
  it('keeps the log in memory through a failed transaction that did not write to it', async () => {
    const s = open();
    await s.ingest([activity('ev-a', T0 + MIN)], T0);
    const before = await s.activities(US, T0);
    await expect(
      s.transaction(async () => {
        throw new Error('a lease passed to another driver');
      }),
    ).rejects.toThrow();
    expect((await s.activities(US, T0))[0]).toBe(before[0]);
  });
});

describe('SqliteStateStore: a file written by the previous version (schema 2)', () => {
  const V2 = fixturePath('state/pristine-v2.db');

  it('is migrated in place: every row kept, and named leases work', async () => {
    // Prepare
    const copy = path.join(dir, 'v2.db');
    await mkdir(dir, { recursive: true });
    await copyFile(V2, copy);

    // Act
    const s = open(copy);

    // Assess
    expect(await s.meta('schema_version')).toBe(String(SCHEMA_VERSION));
    expect(SCHEMA_VERSION).toBe(3);
    const scope = { accountId: '123456789012', region: 'us-east-1' };
    expect(await s.instance('i-0c3d4e5f607182930')).toMatchObject({ verdict: 'tainted', accountId: scope.accountId, alertOutboxId: 1 });
    expect(await s.sentTs(1)).toBe('1700000000.000200');
    expect(await s.inFlight()).toEqual([expect.objectContaining({ oldInstanceId: 'i-0c3d4e5f607182930', step: 'prepare', leaseOwner: 'old-host:4242:abcd', leaseToken: 1 })]);
    expect((await s.activities(scope, 0)).map((a) => a.id)).toEqual(['33333333-3333-4333-8333-333333333333']);
    expect(await s.coverage(scope, 'lookup-events')).toHaveLength(1);
    expect(await s.recentCycles()).toEqual([expect.objectContaining({ outcome: 'tainted', exitCode: 1 })]);
    expect(await s.leases.claim('outbox', 'host:1:a', 60_000)).toEqual({ owner: 'host:1:a', token: 1 });
    // Its driver's lease expired long ago: another takes it over, with a new fencing token.
    expect(await s.claimReplacement((await s.inFlight())[0]!.id, 'host:1:a', 60_000)).toEqual({ owner: 'host:1:a', token: 2 });
  });
});

describe('SqliteStateStore: another process writing the same file', () => {
  it('waits for its write, then writes on top of it: an update that reads first does not fail for it', async () => {
    // Prepare: the daemon's store, and another process (the CLI beside it) that takes the write lock,
    // writes, and holds the lock a moment before it commits.
    const s = open();
    await s.addCoverage(US, 'lookup-events', { from: 0, to: 10 });
    const script = `
      const db = new (require('better-sqlite3'))(process.argv[1]);
      db.exec('BEGIN IMMEDIATE');
      db.prepare("INSERT INTO meta (key, value) VALUES ('cli', 'wrote')").run();
      process.stdout.write('locked\\n');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 700);
      db.exec('COMMIT');
      db.close();`;
    const child = spawn(process.execPath, ['-e', script, file], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = once(child, 'exit');
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve()));

    // Act: an update that reads what is there, then writes (coverage is merged with what was stored).
    await s.addCoverage(US, 'lookup-events', { from: 11, to: 20 });

    // Assess: both writes are there.
    expect(await exited).toEqual([0, null]);
    expect(await s.coverage(US, 'lookup-events')).toEqual([{ from: 0, to: 20 }]);
    expect(await s.meta('cli')).toBe('wrote');
  });
});
