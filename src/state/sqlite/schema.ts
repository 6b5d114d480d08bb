import type Database from 'better-sqlite3';
import { StoreError } from '../ports.js';

/** The schema this pristine writes. Older files are migrated in place when opened (see MIGRATIONS). */
export const SCHEMA_VERSION = 3;

/** Version 1, as the first pristine wrote it: a new file is created at 1 and migrated like an old one. */
const SCHEMA_V1 = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS coverage (
  region TEXT NOT NULL, source TEXT NOT NULL, from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL,
  PRIMARY KEY (region, source));
CREATE TABLE IF NOT EXISTS activities (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS activities_region_at ON activities (region, at);
CREATE TABLE IF NOT EXISTS instances (
  instance_id TEXT PRIMARY KEY, region TEXT NOT NULL, policy TEXT NOT NULL, verdict TEXT NOT NULL,
  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, tainted_since INTEGER,
  alert_outbox_id INTEGER, name TEXT);
CREATE TABLE IF NOT EXISTS findings (
  instance_id TEXT NOT NULL, key TEXT NOT NULL, detector TEXT NOT NULL, severity TEXT NOT NULL,
  summary TEXT NOT NULL, at INTEGER, actor TEXT, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  PRIMARY KEY (instance_id, key));
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, parent_id INTEGER REFERENCES outbox (id),
  notice TEXT NOT NULL, created_at INTEGER NOT NULL, sent_at INTEGER, ts TEXT, attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT, dropped_at INTEGER);
CREATE TABLE IF NOT EXISTS replacements (
  id INTEGER PRIMARY KEY AUTOINCREMENT, old_instance_id TEXT NOT NULL, region TEXT NOT NULL, policy TEXT NOT NULL,
  image_id TEXT NOT NULL, status TEXT NOT NULL, step TEXT NOT NULL, new_instance_id TEXT, data TEXT NOT NULL,
  alert_outbox_id INTEGER, started_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, finished_at INTEGER, error TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS replacements_one_per_instance
  ON replacements (old_instance_id) WHERE status <> 'rolled-back';
CREATE TABLE IF NOT EXISTS journal (
  id INTEGER PRIMARY KEY AUTOINCREMENT, replacement_id INTEGER NOT NULL REFERENCES replacements (id),
  step TEXT NOT NULL, phase TEXT NOT NULL, at INTEGER NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS cycles (
  id INTEGER PRIMARY KEY AUTOINCREMENT, started_at INTEGER NOT NULL, finished_at INTEGER, outcome TEXT,
  exit_code INTEGER, summary TEXT);
`;

/**
 * Each migration takes the file from version N to N+1, in one transaction with the version bump.
 * Rows written before pristine knew accounts have a NULL account: the first cycle adopts them into
 * pristine's own account (adoptLegacyRows), which is the only account such a file can be about.
 */
const MIGRATIONS: ReadonlyArray<{ to: number; what: string; sql: string }> = [
  {
    to: 2,
    what: 'accounts on every scoped row; coverage as spans per kind of source; the evidence log; trail files and digests; stable finding keys',
    sql: `
ALTER TABLE activities ADD COLUMN account_id TEXT;
ALTER TABLE activities ADD COLUMN received_at INTEGER;
CREATE INDEX activities_scope_at ON activities (account_id, region, at);
ALTER TABLE instances ADD COLUMN account_id TEXT;
ALTER TABLE replacements ADD COLUMN account_id TEXT;
-- What has been proven read in full, per scope and kind of source: disjoint spans, merged on write.
CREATE TABLE coverage_spans (
  account_id TEXT, region TEXT NOT NULL, kind TEXT NOT NULL, from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL);
CREATE INDEX coverage_spans_scope ON coverage_spans (account_id, region, kind);
INSERT INTO coverage_spans (account_id, region, kind, from_ms, to_ms)
  SELECT NULL, region, 'lookup-events', from_ms, to_ms FROM coverage WHERE source = 'activity';
INSERT INTO coverage_spans (account_id, region, kind, from_ms, to_ms)
  SELECT NULL, region, 'ssm-sessions', from_ms, to_ms FROM coverage WHERE source = 'activity';
DROP TABLE coverage;
CREATE TABLE trail_files (
  bucket TEXT NOT NULL, key TEXT NOT NULL, account_id TEXT NOT NULL, region TEXT NOT NULL, sha256 TEXT NOT NULL,
  records INTEGER NOT NULL, read_at INTEGER NOT NULL, PRIMARY KEY (bucket, key));
CREATE TABLE digests (
  bucket TEXT NOT NULL, key TEXT NOT NULL, account_id TEXT NOT NULL, region TEXT NOT NULL, from_ms INTEGER NOT NULL,
  to_ms INTEGER NOT NULL, status TEXT NOT NULL, checked_at INTEGER NOT NULL, PRIMARY KEY (bucket, key));
-- Finding keys become stable identities: one SSM session is one finding whichever record told of it;
-- a condition (drift, stale inventory, unrecorded image) is its detector and kind, not its summary text.
UPDATE OR IGNORE findings SET key = 'interactive-session:' || (
    SELECT json_extract(a.body, '$.sessionId') FROM activities a WHERE findings.key = 'interactive-session:' || a.id)
  WHERE detector = 'interactive-session' AND EXISTS (
    SELECT 1 FROM activities a WHERE findings.key = 'interactive-session:' || a.id AND json_extract(a.body, '$.sessionId') IS NOT NULL);
DELETE FROM findings WHERE detector = 'interactive-session' AND EXISTS (
    SELECT 1 FROM activities a WHERE findings.key = 'interactive-session:' || a.id AND json_extract(a.body, '$.sessionId') IS NOT NULL);
UPDATE OR IGNORE findings SET key = 'package-drift:drift' WHERE detector = 'package-drift' AND summary GLOB '[0-9]* differ*';
UPDATE OR IGNORE findings SET key = 'package-drift:no-inventory' WHERE detector = 'package-drift' AND summary LIKE 'no SSM Inventory%';
UPDATE OR IGNORE findings SET key = 'package-drift:stale-inventory' WHERE detector = 'package-drift' AND summary LIKE 'SSM Inventory %';
UPDATE OR IGNORE findings SET key = 'unrecorded-image:no-manifest' WHERE detector = 'unrecorded-image';
DELETE FROM findings WHERE detector IN ('package-drift', 'unrecorded-image')
  AND key NOT IN ('package-drift:drift', 'package-drift:no-inventory', 'package-drift:stale-inventory', 'unrecorded-image:no-manifest');
-- Replacements are owned and driven in the background: a UUID (its tags and ClientToken carry it), the
-- time of its next poll, what it waits for, and a lease (owner, expiry, fencing token).
ALTER TABLE replacements ADD COLUMN uuid TEXT;
ALTER TABLE replacements ADD COLUMN next_poll_at INTEGER;
ALTER TABLE replacements ADD COLUMN waiting_for TEXT;
ALTER TABLE replacements ADD COLUMN lease_owner TEXT;
ALTER TABLE replacements ADD COLUMN lease_expires_at INTEGER;
ALTER TABLE replacements ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
-- A replacement started before this version tagged its fresh instance with its row id: it keeps finding it so.
UPDATE replacements SET
  uuid = lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-a' || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
  data = json_set(data, '$.legacyTag', CAST(id AS TEXT))
  WHERE uuid IS NULL;
CREATE UNIQUE INDEX replacements_uuid ON replacements (uuid);
`,
  },
  {
    to: 3,
    what: 'named leases (scope audits, the outbox) and the time each scope was last audited, for several replicas',
    sql: `
-- A lease row stays when let go (owner NULL), so its fencing token only ever rises.
CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT, token INTEGER NOT NULL, expires_at INTEGER);
-- When each scope was last audited in full, by whichever replica: its instances seen then are current.
CREATE TABLE scope_audits (account_id TEXT NOT NULL, region TEXT NOT NULL, audited_at INTEGER NOT NULL, PRIMARY KEY (account_id, region));
`,
  },
];

/** Brings a file to SCHEMA_VERSION: creates it at version 1 if new, then applies each migration in turn. */
export function migrate(db: Database.Database, file: string): void {
  const hasMeta = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).get() !== undefined;
  let version = hasMeta ? Number((db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: string } | undefined)?.value ?? 1) : 0;
  if (version > SCHEMA_VERSION) {
    throw new StoreError(`${file}: written by a newer pristine (schema ${version}); this one knows ${SCHEMA_VERSION}: use that version, or a new --state file`);
  }
  if (version === 0) {
    db.transaction(() => {
      db.exec(SCHEMA_V1);
      db.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', '1')`).run();
    })();
    version = 1;
  }
  for (const m of MIGRATIONS) {
    if (m.to <= version) continue;
    try {
      db.transaction(() => {
        db.exec(m.sql);
        db.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(String(m.to));
      })();
    } catch (err) {
      throw new StoreError(
        `${file}: could not be migrated from schema ${version} to ${m.to} (${m.what}): ${err instanceof Error ? err.message : String(err)}. The file is unchanged; keep it, and run the pristine that wrote it, or start with a new --state file`,
        { cause: err },
      );
    }
    version = m.to;
  }
}

