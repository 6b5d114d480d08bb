import type { PoolClient } from 'pg';
import { StoreError } from '../ports.js';

/** The schema this pristine writes to PostgreSQL. Migrations take a database from N to N+1. */
export const PG_SCHEMA_VERSION = 1;

/**
 * A fixed key for pg_advisory_lock: replicas that start together migrate one at a time (the others
 * wait, then find the schema current).
 */
const MIGRATION_LOCK = 7_268_111_942_013;

/**
 * Times are epoch milliseconds (BIGINT), as in the SQLite file. JSON is stored as text, as written.
 * `pristine_now_ms()` is the database's clock: every lease expiry is decided by it.
 */
const MIGRATIONS: ReadonlyArray<{ to: number; what: string; sql: string }> = [
  {
    to: 1,
    what: 'the state of pristine 0.1: evidence log, coverage, verdicts, outbox, replacements and journal, cycles, leases',
    sql: `
CREATE FUNCTION pristine_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE
  AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;
CREATE TABLE activities (
  id TEXT PRIMARY KEY, account_id TEXT, region TEXT NOT NULL, at BIGINT NOT NULL, body TEXT NOT NULL,
  received_at BIGINT, seq BIGSERIAL NOT NULL);
CREATE INDEX activities_scope_at ON activities (account_id, region, at);
CREATE TABLE coverage_spans (
  account_id TEXT, region TEXT NOT NULL, kind TEXT NOT NULL, from_ms BIGINT NOT NULL, to_ms BIGINT NOT NULL);
CREATE INDEX coverage_spans_scope ON coverage_spans (account_id, region, kind);
CREATE TABLE trail_files (
  bucket TEXT NOT NULL, key TEXT NOT NULL, account_id TEXT NOT NULL, region TEXT NOT NULL, sha256 TEXT NOT NULL,
  records INTEGER NOT NULL, read_at BIGINT NOT NULL, PRIMARY KEY (bucket, key));
CREATE TABLE digests (
  bucket TEXT NOT NULL, key TEXT NOT NULL, account_id TEXT NOT NULL, region TEXT NOT NULL, from_ms BIGINT NOT NULL,
  to_ms BIGINT NOT NULL, status TEXT NOT NULL, checked_at BIGINT NOT NULL, PRIMARY KEY (bucket, key));
CREATE TABLE instances (
  instance_id TEXT PRIMARY KEY, account_id TEXT, region TEXT NOT NULL, policy TEXT NOT NULL, verdict TEXT NOT NULL,
  first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL, tainted_since BIGINT, alert_outbox_id BIGINT, name TEXT);
CREATE TABLE findings (
  instance_id TEXT NOT NULL, key TEXT NOT NULL, detector TEXT NOT NULL, severity TEXT NOT NULL,
  summary TEXT NOT NULL, at BIGINT, actor TEXT, first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL,
  PRIMARY KEY (instance_id, key));
CREATE TABLE outbox (
  id BIGSERIAL PRIMARY KEY, channel TEXT NOT NULL, parent_id BIGINT REFERENCES outbox (id),
  notice TEXT NOT NULL, created_at BIGINT NOT NULL, sent_at BIGINT, ts TEXT, attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT, dropped_at BIGINT);
CREATE INDEX outbox_waiting ON outbox (id) WHERE sent_at IS NULL AND dropped_at IS NULL;
CREATE TABLE replacements (
  id BIGSERIAL PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, old_instance_id TEXT NOT NULL, account_id TEXT, region TEXT NOT NULL,
  policy TEXT NOT NULL, image_id TEXT NOT NULL, status TEXT NOT NULL, step TEXT NOT NULL, new_instance_id TEXT,
  data TEXT NOT NULL, alert_outbox_id BIGINT, started_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
  finished_at BIGINT, error TEXT, next_poll_at BIGINT, waiting_for TEXT, lease_owner TEXT, lease_expires_at BIGINT,
  lease_token BIGINT NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX replacements_one_per_instance ON replacements (old_instance_id) WHERE status <> 'rolled-back';
CREATE TABLE journal (
  id BIGSERIAL PRIMARY KEY, replacement_id BIGINT NOT NULL REFERENCES replacements (id),
  step TEXT NOT NULL, phase TEXT NOT NULL, at BIGINT NOT NULL, detail TEXT);
CREATE INDEX journal_replacement ON journal (replacement_id, id);
CREATE TABLE cycles (
  id BIGSERIAL PRIMARY KEY, started_at BIGINT NOT NULL, finished_at BIGINT, outcome TEXT, exit_code INTEGER, summary TEXT);
-- A lease row stays when let go (owner NULL), so its fencing token only ever rises.
CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT, token BIGINT NOT NULL, expires_at BIGINT);
-- When each scope was last audited in full, by whichever replica: its instances seen then are current.
CREATE TABLE scope_audits (account_id TEXT NOT NULL, region TEXT NOT NULL, audited_at BIGINT NOT NULL, PRIMARY KEY (account_id, region));
`,
  },
];

/**
 * Brings the database to PG_SCHEMA_VERSION under an advisory lock: each migration in one transaction
 * with its version bump. A database a newer pristine wrote is refused, unchanged.
 */
export async function migrate(client: PoolClient, where: string): Promise<void> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    await client.query('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    const r = await client.query<{ value: string }>(`SELECT value FROM meta WHERE key = 'schema_version'`);
    let version = Number(r.rows[0]?.value ?? 0);
    if (version > PG_SCHEMA_VERSION) {
      throw new StoreError(`${where}: written by a newer pristine (schema ${version}); this one knows ${PG_SCHEMA_VERSION}: use that version`);
    }
    for (const m of MIGRATIONS) {
      if (m.to <= version) continue;
      try {
        await client.query('BEGIN');
        await client.query(m.sql);
        await client.query(`INSERT INTO meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [String(m.to)]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new StoreError(`${where}: could not be migrated from schema ${version} to ${m.to} (${m.what}): ${err instanceof Error ? err.message : String(err)}. The database is unchanged`, {
          cause: err,
        });
      }
      version = m.to;
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
  }
}
