import { randomUUID } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { InstanceResult } from '../core/evaluate.js';
import { scopeKey, type Activity, type Scope } from '../core/facts.js';
import { clampSpans, mergeSpans, type Span } from '../evidence/coverage.js';
import type { CoverageKind } from '../evidence/sources/types.js';
import type { DigestRecord, EvidenceStore, TrailFileRecord } from '../evidence/store-port.js';
import type { Notice } from '../notify/types.js';

/** Who drives a replacement, and the token that proves it still does. */
export interface Fence {
  owner: string;
  token: number;
}

/** Another driver took the replacement's lease: this one must stop writing its journal. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
}

/** The store could not be opened or used: the daemon reports itself unhealthy. */
export class StoreError extends Error {
  override name = 'StoreError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The schema this pristine writes. Older files are migrated in place when opened (see MIGRATIONS). */
export const SCHEMA_VERSION = 2;

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
];

export type ReplacementStatus = 'in-progress' | 'done' | 'rolled-back' | 'failed';

export interface ReplacementRow<D = Record<string, unknown>> {
  id: number;
  /** the replacement's identity on AWS: its fresh instance's `pristine:replacement` tag and ClientToken */
  uuid: string;
  /** when the worker takes its next step or poll (epoch ms) */
  nextPollAt: number | null;
  /** what it waits for, for `pristine status` */
  waitingFor: string | null;
  /** the process driving it, until `leaseExpiresAt` */
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  /** raised each time another owner takes the lease: every journal write checks it */
  leaseToken: number;
  oldInstanceId: string;
  /** null only for a replacement an older pristine started, until the first cycle adopts it */
  accountId: string | null;
  region: string;
  policy: string;
  imageId: string;
  status: ReplacementStatus;
  step: string;
  newInstanceId: string | null;
  data: D;
  alertOutboxId: number | null;
  startedAt: number;
  updatedAt: number;
  finishedAt: number | null;
  error: string | null;
}

export interface OutboxRow {
  id: number;
  channel: string;
  parentId: number | null;
  /** null when the stored notice cannot be read (then `unreadable` says why) */
  notice: Notice | null;
  unreadable?: string;
  createdAt: number;
  attempts: number;
  lastError: string | null;
}

export interface JournalRow {
  id: number;
  replacementId: number;
  step: string;
  phase: 'begin' | 'end' | 'fail';
  at: number;
  detail: Record<string, unknown> | null;
}

export interface FindingInput {
  key: string;
  detector: string;
  severity: string;
  summary: string;
  at: number | null;
  actor: string | null;
}

export interface VerdictInput {
  instanceId: string;
  accountId: string;
  region: string;
  policy: string;
  name: string | null;
  verdict: string;
  findings: FindingInput[];
}

/** What the store keeps of a verdict: the instance, its policy, and its findings' keys and summaries. */
export function verdictInputOf(result: InstanceResult): VerdictInput {
  return {
    instanceId: result.instance.instanceId,
    accountId: result.instance.accountId,
    region: result.instance.region,
    policy: result.policy,
    name: result.instance.name,
    verdict: result.verdict,
    findings: result.findings.map((f) => ({ key: f.key, detector: f.detector, severity: f.severity, summary: f.summary, at: f.at, actor: f.actor })),
  };
}

export interface InstanceRow {
  instanceId: string;
  /** null only for a row an older pristine wrote, until the first cycle adopts it */
  accountId: string | null;
  region: string;
  policy: string;
  name: string | null;
  verdict: string;
  firstSeen: number;
  lastSeen: number;
  taintedSince: number | null;
  alertOutboxId: number | null;
}

type Row = Record<string, unknown>;

function toReplacement(r: Row): ReplacementRow {
  return {
    id: r['id'] as number,
    uuid: r['uuid'] as string,
    nextPollAt: (r['next_poll_at'] as number | null) ?? null,
    waitingFor: (r['waiting_for'] as string | null) ?? null,
    leaseOwner: (r['lease_owner'] as string | null) ?? null,
    leaseExpiresAt: (r['lease_expires_at'] as number | null) ?? null,
    leaseToken: (r['lease_token'] as number | null) ?? 0,
    oldInstanceId: r['old_instance_id'] as string,
    accountId: (r['account_id'] as string | null) ?? null,
    region: r['region'] as string,
    policy: r['policy'] as string,
    imageId: r['image_id'] as string,
    status: r['status'] as ReplacementStatus,
    step: r['step'] as string,
    newInstanceId: (r['new_instance_id'] as string | null) ?? null,
    data: JSON.parse(r['data'] as string) as Record<string, unknown>,
    alertOutboxId: (r['alert_outbox_id'] as number | null) ?? null,
    startedAt: r['started_at'] as number,
    updatedAt: r['updated_at'] as number,
    finishedAt: (r['finished_at'] as number | null) ?? null,
    error: (r['error'] as string | null) ?? null,
  };
}

function toJournal(r: Row): JournalRow {
  return {
    id: r['id'] as number,
    replacementId: r['replacement_id'] as number,
    step: r['step'] as string,
    phase: r['phase'] as JournalRow['phase'],
    at: r['at'] as number,
    detail: r['detail'] ? (JSON.parse(r['detail'] as string) as Record<string, unknown>) : null,
  };
}

function toInstance(r: Row): InstanceRow {
  return {
    instanceId: r['instance_id'] as string,
    accountId: (r['account_id'] as string | null) ?? null,
    region: r['region'] as string,
    policy: r['policy'] as string,
    name: (r['name'] as string | null) ?? null,
    verdict: r['verdict'] as string,
    firstSeen: r['first_seen'] as number,
    lastSeen: r['last_seen'] as number,
    taintedSince: (r['tainted_since'] as number | null) ?? null,
    alertOutboxId: (r['alert_outbox_id'] as number | null) ?? null,
  };
}

function readNotice(text: string): { notice: Notice | null; unreadable?: string } {
  try {
    return { notice: JSON.parse(text) as Notice };
  } catch (err) {
    return { notice: null, unreadable: err instanceof Error ? err.message : String(err) };
  }
}

/** One event known by two paths: the first record stays; the paths add up; a later resolution of its instances is kept. */
export function mergeActivity(known: Activity, incoming: Activity): Activity {
  const via = [...new Set([...(known.via ?? []), ...(incoming.via ?? [])])];
  const instanceIds = known.instanceIds.length === 0 && incoming.instanceIds.length > 0 ? incoming.instanceIds : known.instanceIds;
  if (via.length === (known.via ?? []).length && instanceIds === known.instanceIds) return known;
  return { ...known, via, instanceIds };
}

/** Brings a file to SCHEMA_VERSION: creates it at version 1 if new, then applies each migration in turn. */
function migrate(db: Database.Database, file: string): void {
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

/**
 * pristine's memory between cycles, in one SQLite file (WAL): verdicts and findings, what was
 * alerted, the Slack outbox, the replacement journal, the sources' high-water marks and the
 * activities already read. Every write is a transaction, so a crash (`kill -9`) loses at most the
 * step that was running, which the journal shows as begun and not ended.
 */
export class StateStore implements EvidenceStore {
  /**
   * The evidence log of the scopes read so far, in memory: a cycle reads its scope's log without
   * parsing it again, and gets the same objects as the cycle before (so what it worked out from them
   * can be carried over). Kept in step with every write here; dropped when another connection wrote
   * the file (SQLite's data_version says so) or a transaction failed.
   */
  private readonly logCache = new Map<string, { from: number; byId: Map<string, Activity>; sorted: Activity[] | null }>();
  private logVersion: unknown = null;
  /** bumped by every write to the log in memory: a failed transaction that wrote to it drops it */
  private logWrites = 0;

  private constructor(
    private readonly db: Database.Database,
    /** the file and its identity when opened, to notice it was removed or replaced under us */
    private readonly file: { path: string; dev: number; ino: number } | null,
  ) {}

  static open(file: string): StateStore {
    let db: Database.Database | undefined;
    try {
      if (file !== ':memory:') mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      db.pragma('foreign_keys = ON');
      migrate(db, file);
      const resolved = file === ':memory:' ? null : path.resolve(file);
      const st = resolved ? statSync(resolved) : null;
      return new StateStore(db, resolved && st ? { path: resolved, dev: st.dev, ino: st.ino } : null);
    } catch (err) {
      if (db?.open) db.close();
      if (err instanceof StoreError) throw err;
      throw new StoreError(`state store ${file} cannot be used: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /**
   * Throws a StoreError when the file can no longer be read and written, or is no longer the file
   * that was opened (removed or replaced: writes would go to a file nobody will read again).
   */
  check(): void {
    if (this.file) {
      const st = statSync(this.file.path, { throwIfNoEntry: false });
      if (!st || st.dev !== this.file.dev || st.ino !== this.file.ino) {
        throw new StoreError(`state store unusable: ${this.file.path} was removed or replaced since it was opened`);
      }
    }
    // A health probe must answer quickly: wait briefly for a lock, not the store's usual 5 s.
    try {
      this.db.pragma('busy_timeout = 500');
      this.db.prepare('SELECT count(*) FROM meta').get();
      this.db.prepare(`INSERT INTO meta (key, value) VALUES ('health_checked_at', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(String(Date.now()));
    } catch (err) {
      throw new StoreError(`state store unusable: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    } finally {
      if (this.db.open) this.db.pragma('busy_timeout = 5000');
    }
  }

  meta(key: string): string | null {
    const r = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as Row | undefined;
    return (r?.['value'] as string | undefined) ?? null;
  }

  setMeta(key: string, value: string | null): void {
    if (value === null) this.db.prepare('DELETE FROM meta WHERE key = ?').run(key);
    else this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  transaction<T>(fn: () => T): T {
    const writes = this.logWrites;
    try {
      return this.db.transaction(fn)();
    } catch (err) {
      if (this.logWrites !== writes) this.logCache.clear(); // it may hold what was rolled back
      throw err;
    }
  }

  // --- the evidence log, coverage, trail files --------------------------------------------------

  /**
   * Rows written before pristine knew accounts (schema 1) belong to pristine's own account, the only
   * one such a file can be about. Called once the cycle knows that account.
   */
  adoptLegacyRows(accountId: string): number {
    return this.transaction(() => {
      let n = 0;
      for (const table of ['activities', 'coverage_spans', 'instances', 'replacements']) {
        n += this.db.prepare(`UPDATE ${table} SET account_id = ? WHERE account_id IS NULL`).run(accountId).changes;
      }
      if (n > 0) this.logCache.clear();
      return n;
    });
  }

  /** Whether rows without an account (written by schema 1) wait to be adopted. */
  hasLegacyRows(): boolean {
    return ['activities', 'coverage_spans', 'instances', 'replacements'].some(
      (t) => this.db.prepare(`SELECT 1 FROM ${t} WHERE account_id IS NULL LIMIT 1`).get() !== undefined,
    );
  }

  coverage(scope: Scope, kind: CoverageKind): Span[] {
    return (this.db.prepare('SELECT from_ms, to_ms FROM coverage_spans WHERE account_id = ? AND region = ? AND kind = ? ORDER BY from_ms').all(scope.accountId, scope.region, kind) as Row[]).map(
      (r) => ({ from: r['from_ms'] as number, to: r['to_ms'] as number }),
    );
  }

  private setSpans(scope: Scope, kind: CoverageKind, spans: readonly Span[]): void {
    this.db.prepare('DELETE FROM coverage_spans WHERE account_id = ? AND region = ? AND kind = ?').run(scope.accountId, scope.region, kind);
    const put = this.db.prepare('INSERT INTO coverage_spans (account_id, region, kind, from_ms, to_ms) VALUES (?, ?, ?, ?, ?)');
    for (const s of spans) put.run(scope.accountId, scope.region, kind, s.from, s.to);
  }

  /** Adds a proven span to a scope's coverage of one kind; spans that touch are joined. */
  addCoverage(scope: Scope, kind: CoverageKind, span: Span): void {
    this.transaction(() => this.setSpans(scope, kind, mergeSpans([...this.coverage(scope, kind), span])));
  }

  /** A clock that moved backwards: coverage of a future nobody has read yet is dropped. */
  clampCoverage(scope: Scope, max: number): void {
    this.transaction(() => {
      for (const kind of ['lookup-events', 's3-digest', 'ssm-sessions'] as const) {
        const spans = this.coverage(scope, kind);
        if (spans.some((s) => s.to > max)) this.setSpans(scope, kind, clampSpans(spans, max));
      }
    });
  }

  /**
   * Adds activities to the evidence log, keyed by CloudTrail eventID. An event already held is merged,
   * never overwritten: the paths it came by are added, and instances resolved later (where a command
   * ran, which SSM forgets after a while) are kept. Returns the activities the log did not hold.
   */
  ingest(activities: readonly Activity[], now = Date.now()): Activity[] {
    const get = this.db.prepare('SELECT body, account_id FROM activities WHERE id = ?');
    const put = this.db.prepare('INSERT INTO activities (id, account_id, region, at, body, received_at) VALUES (?, ?, ?, ?, ?, ?)');
    const update = this.db.prepare('UPDATE activities SET body = ? WHERE id = ?');
    const added: Activity[] = [];
    const changed: Activity[] = [];
    this.transaction(() => {
      for (const a of activities) {
        const row = get.get(a.id) as Row | undefined;
        if (!row) {
          put.run(a.id, a.accountId, a.region, a.at, JSON.stringify(a), now);
          added.push(a);
          continue;
        }
        const known = JSON.parse(row['body'] as string) as Activity;
        const merged = mergeActivity(known, a);
        if (merged !== known) {
          update.run(JSON.stringify(merged), a.id);
          const accountId = row['account_id'] as string | null;
          if (accountId !== null) changed.push({ ...merged, accountId });
        }
      }
    });
    for (const a of [...added, ...changed]) {
      const c = a.accountId === null ? undefined : this.logCache.get(scopeKey({ accountId: a.accountId, region: a.region }));
      if (!c || a.at < c.from) continue;
      c.byId.set(a.id, a);
      c.sorted = null;
      this.logWrites++;
    }
    return added;
  }

  /** The activities of a scope from `from` on, oldest first. */
  activities(scope: Scope, from: number): Activity[] {
    const version = this.db.pragma('data_version', { simple: true });
    if (version !== this.logVersion) {
      this.logCache.clear(); // another connection wrote the file
      this.logVersion = version;
    }
    const key = scopeKey(scope);
    let c = this.logCache.get(key);
    if (!c || from < c.from) {
      const rows = this.db.prepare('SELECT body, account_id FROM activities WHERE account_id = ? AND region = ? AND at >= ? ORDER BY at, rowid').all(scope.accountId, scope.region, from) as Row[];
      const byId = new Map<string, Activity>();
      for (const r of rows) {
        const a = JSON.parse(r['body'] as string) as Activity;
        byId.set(a.id, { ...a, accountId: (r['account_id'] as string | null) ?? scope.accountId });
      }
      c = { from, byId, sorted: null };
      this.logCache.set(key, c);
    }
    // Oldest first; the same time in the order written (the file's ORDER BY at, rowid).
    const sorted = (c.sorted ??= [...c.byId.values()].sort((x, y) => x.at - y.at));
    let start = 0;
    while (start < sorted.length && (sorted[start] as Activity).at < from) start++;
    return sorted.slice(start);
  }

  activitiesById(ids: readonly string[]): Activity[] {
    const get = this.db.prepare('SELECT body FROM activities WHERE id = ?');
    return ids.flatMap((id) => {
      const r = get.get(id) as Row | undefined;
      return r ? [JSON.parse(r['body'] as string) as Activity] : [];
    });
  }

  pruneActivities(before: number): number {
    return this.transaction(() => {
      this.db.prepare('DELETE FROM trail_files WHERE read_at < ?').run(before);
      this.db.prepare('DELETE FROM digests WHERE to_ms < ?').run(before);
      const n = this.db.prepare('DELETE FROM activities WHERE at < ?').run(before).changes;
      if (n > 0) {
        this.logWrites++;
        for (const c of this.logCache.values()) {
          for (const [id, a] of c.byId) if (a.at < before) c.byId.delete(id);
          c.sorted = null;
        }
      }
      return n;
    });
  }

  trailFile(bucket: string, key: string): TrailFileRecord | null {
    const r = this.db.prepare('SELECT * FROM trail_files WHERE bucket = ? AND key = ?').get(bucket, key) as Row | undefined;
    return r
      ? { bucket, key, accountId: r['account_id'] as string, region: r['region'] as string, sha256: r['sha256'] as string, records: r['records'] as number, readAt: r['read_at'] as number }
      : null;
  }

  recordTrailFile(f: TrailFileRecord): void {
    this.db
      .prepare('INSERT INTO trail_files (bucket, key, account_id, region, sha256, records, read_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bucket, key) DO NOTHING')
      .run(f.bucket, f.key, f.accountId, f.region, f.sha256, f.records, f.readAt);
  }

  digest(bucket: string, key: string): DigestRecord | null {
    const r = this.db.prepare('SELECT * FROM digests WHERE bucket = ? AND key = ?').get(bucket, key) as Row | undefined;
    return r
      ? {
          bucket,
          key,
          accountId: r['account_id'] as string,
          region: r['region'] as string,
          from: r['from_ms'] as number,
          to: r['to_ms'] as number,
          status: r['status'] as DigestRecord['status'],
          checkedAt: r['checked_at'] as number,
        }
      : null;
  }

  recordDigest(d: DigestRecord): void {
    this.db
      .prepare(
        `INSERT INTO digests (bucket, key, account_id, region, from_ms, to_ms, status, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (bucket, key) DO UPDATE SET status = excluded.status, checked_at = excluded.checked_at`,
      )
      .run(d.bucket, d.key, d.accountId, d.region, d.from, d.to, d.status, d.checkedAt);
  }

  // --- verdicts and findings -------------------------------------------------------------------

  /**
   * Records this cycle's verdicts. Returns the instances whose taint is new (not alerted before),
   * and per already-alerted instance the findings not seen before.
   */
  recordVerdicts(now: number, verdicts: readonly VerdictInput[]): { newlyTainted: string[]; newFindings: Map<string, string[]> } {
    const newlyTainted: string[] = [];
    const newFindings = new Map<string, string[]>();
    const getInstance = this.db.prepare('SELECT * FROM instances WHERE instance_id = ?');
    const upsert = this.db.prepare(`
      INSERT INTO instances (instance_id, account_id, region, policy, name, verdict, first_seen, last_seen, tainted_since)
      VALUES (@instanceId, @accountId, @region, @policy, @name, @verdict, @now, @now, @taintedSince)
      ON CONFLICT (instance_id) DO UPDATE SET account_id = excluded.account_id, policy = excluded.policy, name = excluded.name, verdict = excluded.verdict,
        last_seen = excluded.last_seen, tainted_since = COALESCE(instances.tainted_since, excluded.tainted_since)`);
    const getFinding = this.db.prepare('SELECT 1 FROM findings WHERE instance_id = ? AND key = ?');
    const putFinding = this.db.prepare(`
      INSERT INTO findings (instance_id, key, detector, severity, summary, at, actor, first_seen, last_seen)
      VALUES (@instanceId, @key, @detector, @severity, @summary, @at, @actor, @now, @now)
      ON CONFLICT (instance_id, key) DO UPDATE SET last_seen = excluded.last_seen, summary = excluded.summary`);
    this.transaction(() => {
      for (const v of verdicts) {
        const before = getInstance.get(v.instanceId) as Row | undefined;
        const tainted = v.verdict === 'tainted';
        upsert.run({ instanceId: v.instanceId, accountId: v.accountId, region: v.region, policy: v.policy, name: v.name, verdict: v.verdict, now, taintedSince: tainted ? now : null });
        const fresh: string[] = [];
        for (const f of v.findings) {
          if (!getFinding.get(v.instanceId, f.key)) fresh.push(f.key);
          putFinding.run({ instanceId: v.instanceId, now, ...f });
        }
        if (tainted && (before?.['alert_outbox_id'] ?? null) === null) newlyTainted.push(v.instanceId);
        else if (tainted && fresh.length > 0) newFindings.set(v.instanceId, fresh);
      }
    });
    return { newlyTainted, newFindings };
  }

  instance(instanceId: string): InstanceRow | null {
    const r = this.db.prepare('SELECT * FROM instances WHERE instance_id = ?').get(instanceId) as Row | undefined;
    return r ? toInstance(r) : null;
  }

  setAlert(instanceId: string, outboxId: number): void {
    this.db.prepare('UPDATE instances SET alert_outbox_id = ? WHERE instance_id = ?').run(outboxId, instanceId);
  }

  /** Tainted instances seen in the last cycle that have not been replaced. */
  openFindings(): Array<InstanceRow & { findings: Array<FindingInput & { firstSeen: number; lastSeen: number }> }> {
    const rows = this.db
      .prepare(
        `SELECT i.* FROM instances i WHERE i.verdict = 'tainted'
           AND i.last_seen >= COALESCE((SELECT max(started_at) FROM cycles WHERE finished_at IS NOT NULL), (SELECT max(last_seen) FROM instances))
         AND NOT EXISTS (SELECT 1 FROM replacements r WHERE r.old_instance_id = i.instance_id AND r.status = 'done')
         ORDER BY i.tainted_since`,
      )
      .all() as Row[];
    const findings = this.db.prepare('SELECT * FROM findings WHERE instance_id = ? ORDER BY at');
    return rows.map((r) => ({
      ...toInstance(r),
      findings: (findings.all(r['instance_id']) as Row[]).map((f) => ({
        key: f['key'] as string,
        detector: f['detector'] as string,
        severity: f['severity'] as string,
        summary: f['summary'] as string,
        at: (f['at'] as number | null) ?? null,
        actor: (f['actor'] as string | null) ?? null,
        firstSeen: f['first_seen'] as number,
        lastSeen: f['last_seen'] as number,
      })),
    }));
  }

  // --- outbox ------------------------------------------------------------------------------------

  enqueue(channel: string, notice: Notice, parentId: number | null = null, now = Date.now()): number {
    return Number(
      this.db.prepare('INSERT INTO outbox (channel, parent_id, notice, created_at) VALUES (?, ?, ?, ?)').run(channel, parentId, JSON.stringify(notice), now)
        .lastInsertRowid,
    );
  }

  /** Messages not yet sent, oldest first. */
  pending(): OutboxRow[] {
    return (this.db.prepare('SELECT * FROM outbox WHERE sent_at IS NULL AND dropped_at IS NULL ORDER BY id').all() as Row[]).map((r) => ({
      id: r['id'] as number,
      channel: r['channel'] as string,
      parentId: (r['parent_id'] as number | null) ?? null,
      ...readNotice(r['notice'] as string),
      createdAt: r['created_at'] as number,
      attempts: r['attempts'] as number,
      lastError: (r['last_error'] as string | null) ?? null,
    }));
  }

  /** The Slack ts of a sent message; null while it waits in the outbox. */
  sentTs(outboxId: number): string | null {
    const r = this.db.prepare('SELECT ts FROM outbox WHERE id = ? AND sent_at IS NOT NULL').get(outboxId) as Row | undefined;
    return (r?.['ts'] as string | null | undefined) ?? null;
  }

  markSent(id: number, ts: string | null, now = Date.now()): void {
    this.db.prepare('UPDATE outbox SET sent_at = ?, ts = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?').run(now, ts, id);
  }

  markFailed(id: number, error: string): void {
    this.db.prepare('UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?').run(error, id);
  }

  /** A message Slack will never take (e.g. channel_not_found): kept for the record, not retried. */
  markDropped(id: number, error: string, now = Date.now()): void {
    this.db.prepare('UPDATE outbox SET dropped_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?').run(now, error, id);
  }

  outboxStats(): { pending: number; sent: number; dropped: number } {
    const r = this.db
      .prepare(
        `SELECT sum(sent_at IS NULL AND dropped_at IS NULL) AS pending, sum(sent_at IS NOT NULL) AS sent, sum(dropped_at IS NOT NULL) AS dropped FROM outbox`,
      )
      .get() as Row;
    return { pending: Number(r['pending'] ?? 0), sent: Number(r['sent'] ?? 0), dropped: Number(r['dropped'] ?? 0) };
  }

  // --- replacements and their journal ------------------------------------------------------------

  /** Starts a replacement; null when one that was not rolled back already exists for the instance. */
  createReplacement(r: { oldInstanceId: string; accountId: string; region: string; policy: string; imageId: string; step: string; data: Record<string, unknown>; alertOutboxId: number | null }, now = Date.now()): ReplacementRow | null {
    try {
      const id = Number(
        this.db
          .prepare(
            `INSERT INTO replacements (uuid, old_instance_id, account_id, region, policy, image_id, status, step, data, alert_outbox_id, started_at, updated_at, next_poll_at)
             VALUES (?, ?, ?, ?, ?, ?, 'in-progress', ?, ?, ?, ?, ?, ?)`,
          )
          .run(randomUUID(), r.oldInstanceId, r.accountId, r.region, r.policy, r.imageId, r.step, JSON.stringify(r.data), r.alertOutboxId, now, now, now).lastInsertRowid,
      );
      return this.replacement(id);
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') return null;
      throw err;
    }
  }

  replacement(id: number): ReplacementRow | null {
    const r = this.db.prepare('SELECT * FROM replacements WHERE id = ?').get(id) as Row | undefined;
    return r ? toReplacement(r) : null;
  }

  /** The latest replacement of an instance, whatever its status. */
  replacementOf(oldInstanceId: string): ReplacementRow | null {
    const r = this.db.prepare('SELECT * FROM replacements WHERE old_instance_id = ? ORDER BY id DESC LIMIT 1').get(oldInstanceId) as Row | undefined;
    return r ? toReplacement(r) : null;
  }

  inFlight(): ReplacementRow[] {
    return (this.db.prepare(`SELECT * FROM replacements WHERE status = 'in-progress' ORDER BY id`).all() as Row[]).map(toReplacement);
  }

  recentReplacements(limit = 20): ReplacementRow[] {
    return (this.db.prepare('SELECT * FROM replacements ORDER BY id DESC LIMIT ?').all(limit) as Row[]).map(toReplacement);
  }

  /** Journals a step's phase and moves the replacement to it, in one transaction. */
  journal(
    replacementId: number,
    step: string,
    phase: JournalRow['phase'],
    patch: { data?: Record<string, unknown>; newInstanceId?: string | null; status?: ReplacementStatus; error?: string | null; detail?: Record<string, unknown> } = {},
    now = Date.now(),
    fence?: Fence,
  ): ReplacementRow {
    return this.transaction(() => {
      if (fence) this.checkFence(replacementId, fence);
      this.db.prepare('INSERT INTO journal (replacement_id, step, phase, at, detail) VALUES (?, ?, ?, ?, ?)').run(replacementId, step, phase, now, patch.detail ? JSON.stringify(patch.detail) : null);
      const current = this.replacement(replacementId);
      if (!current) throw new StoreError(`no replacement ${replacementId}`);
      const status = patch.status ?? current.status;
      const finished = status !== 'in-progress' ? now : null;
      this.db
        .prepare(
          `UPDATE replacements SET step = ?, status = ?, data = ?, new_instance_id = ?, error = ?, updated_at = ?, finished_at = COALESCE(finished_at, ?) WHERE id = ?`,
        )
        .run(
          step,
          status,
          JSON.stringify(patch.data ?? current.data),
          patch.newInstanceId === undefined ? current.newInstanceId : patch.newInstanceId,
          patch.error === undefined ? current.error : patch.error,
          now,
          finished,
          replacementId,
        );
      return this.replacement(replacementId) as ReplacementRow;
    });
  }

  private checkFence(replacementId: number, fence: Fence): void {
    const r = this.db.prepare('SELECT lease_owner, lease_token FROM replacements WHERE id = ?').get(replacementId) as Row | undefined;
    if (!r || r['lease_owner'] !== fence.owner || r['lease_token'] !== fence.token) {
      throw new LeaseLostError(`replacement ${replacementId}: the lease passed to ${String(r?.['lease_owner'] ?? 'nobody')} (token ${String(r?.['lease_token'])}); ${fence.owner} stops driving it`);
    }
  }

  /**
   * Takes the lease on a replacement in flight, or renews it: when nobody holds it, when it expired, when
   * this owner holds it, or when `takeOverFrom` (a driver known dead) holds it. The fencing token rises
   * whenever the owner changes. Returns the fence, or null when a live driver holds it.
   */
  claimReplacement(id: number, owner: string, ttlMs: number, now = Date.now(), takeOverFrom: string | null = null): Fence | null {
    const changed = this.db
      .prepare(
        `UPDATE replacements SET lease_token = lease_token + CASE WHEN lease_owner IS ? THEN 0 ELSE 1 END, lease_owner = ?, lease_expires_at = ?
         WHERE id = ? AND status = 'in-progress' AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires_at < ? OR lease_owner = ?)`,
      )
      .run(owner, owner, now + ttlMs, id, owner, now, takeOverFrom).changes;
    if (changed === 0) return null;
    const r = this.db.prepare('SELECT lease_token FROM replacements WHERE id = ?').get(id) as Row;
    return { owner, token: r['lease_token'] as number };
  }

  /** Lets go of one lease (the replacement is over). */
  releaseLease(id: number, owner: string): void {
    this.db.prepare('UPDATE replacements SET lease_owner = NULL, lease_expires_at = NULL, next_poll_at = NULL, waiting_for = NULL WHERE id = ? AND lease_owner = ?').run(id, owner);
  }

  /** The last journal entry of a replacement. */
  lastJournal(replacementId: number): JournalRow | null {
    const r = this.db.prepare('SELECT * FROM journal WHERE replacement_id = ? ORDER BY id DESC LIMIT 1').get(replacementId) as Row | undefined;
    return r ? toJournal(r) : null;
  }

  /** Extends every lease this owner holds. */
  renewLeases(owner: string, ttlMs: number, now = Date.now()): void {
    this.db.prepare('UPDATE replacements SET lease_expires_at = ? WHERE lease_owner = ?').run(now + ttlMs, owner);
  }

  /** Lets go of every lease this owner holds (a clean stop): another driver may take them at once. */
  releaseLeases(owner: string): number {
    return this.db.prepare('UPDATE replacements SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?').run(owner).changes;
  }

  /** When to take the next step or poll, what it waits for, and the data a poll changed; under the lease. */
  schedule(id: number, nextPollAt: number, waitingFor: string | null, fence: Fence, data?: Record<string, unknown>): void {
    this.transaction(() => {
      this.checkFence(id, fence);
      this.db
        .prepare('UPDATE replacements SET next_poll_at = ?, waiting_for = ?, data = COALESCE(?, data) WHERE id = ?')
        .run(nextPollAt, waitingFor, data ? JSON.stringify(data) : null, id);
    });
  }

  journalOf(replacementId: number): JournalRow[] {
    return (this.db.prepare('SELECT * FROM journal WHERE replacement_id = ? ORDER BY id').all(replacementId) as Row[]).map(toJournal);
  }

  // --- cycles --------------------------------------------------------------------------------------

  startCycle(now = Date.now()): number {
    return Number(this.db.prepare('INSERT INTO cycles (started_at) VALUES (?)').run(now).lastInsertRowid);
  }

  finishCycle(id: number, outcome: string, exitCode: number, summary: Record<string, unknown>, now = Date.now()): void {
    this.db.prepare('UPDATE cycles SET finished_at = ?, outcome = ?, exit_code = ?, summary = ? WHERE id = ?').run(now, outcome, exitCode, JSON.stringify(summary), id);
  }

  recentCycles(limit = 10): Array<{ id: number; startedAt: number; finishedAt: number | null; outcome: string | null; exitCode: number | null; summary: Record<string, unknown> | null }> {
    return (this.db.prepare('SELECT * FROM cycles ORDER BY id DESC LIMIT ?').all(limit) as Row[]).map((r) => ({
      id: r['id'] as number,
      startedAt: r['started_at'] as number,
      finishedAt: (r['finished_at'] as number | null) ?? null,
      outcome: (r['outcome'] as string | null) ?? null,
      exitCode: (r['exit_code'] as number | null) ?? null,
      summary: r['summary'] ? (JSON.parse(r['summary'] as string) as Record<string, unknown>) : null,
    }));
  }

  lastFinishedCycle(): { finishedAt: number; outcome: string } | null {
    const r = this.db.prepare('SELECT finished_at, outcome FROM cycles WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1').get() as Row | undefined;
    return r ? { finishedAt: r['finished_at'] as number, outcome: r['outcome'] as string } : null;
  }
}
