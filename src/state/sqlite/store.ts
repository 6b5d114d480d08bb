import { randomUUID } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { AsyncLocalStorage } from 'node:async_hooks';
import { scopeKey, type Activity, type Scope } from '../../core/facts.js';
import { clampSpans, mergeSpans, type Span } from '../../evidence/coverage.js';
import type { CoverageKind } from '../../evidence/sources/types.js';
import type { DigestRecord, TrailFileRecord } from '../../evidence/store-port.js';
import type { Notice } from '../../notify/types.js';
import {
  LeaseLostError,
  type LeaseState,
  StoreError,
  type CycleRow,
  type Fence,
  type InstanceRow,
  type JournalPatch,
  type JournalRow,
  type LeaseRow,
  type LeasesPort,
  type NewReplacement,
  type OpenFinding,
  type OutboxRow,
  type ReplacementRow,
  type StateStore,
  type VerdictInput,
} from '../ports.js';
import { chunks, mergeActivity } from '../records.js';
import { toCycle, toDigest, toFinding, toInstance, toJournal, toOutbox, toReplacement, toTrailFile, type Row } from '../rows.js';
import { migrate } from './schema.js';

/** The store whose transaction the running code is inside, if any. */
const inTransaction = new AsyncLocalStorage<SqliteStateStore>();

/** Verdicts written together (recordVerdicts): each chunk's ids and rows go to SQLite as one JSON text. */
const VERDICTS_AT_ONCE = 500;

/**
 * pristine's memory between cycles, in one SQLite file (WAL): verdicts and findings, what was
 * alerted, the Slack outbox, the replacement journal, the sources' high-water marks and the
 * activities already read. Every write is a transaction, so a crash (`kill -9`) loses at most the
 * step that was running, which the journal shows as begun and not ended.
 */
export class SqliteStateStore implements StateStore {
  readonly kind = 'sqlite' as const;
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
  /** settles when the open transaction ends; null when none is open */
  private gate: Promise<void> | null = null;
  readonly leases: LeasesPort;

  private constructor(
    private readonly db: Database.Database,
    /** the file and its identity when opened, to notice it was removed or replaced under us */
    private readonly file: { path: string; dev: number; ino: number } | null,
    readonly location: string,
  ) {
    this.leases = new SqliteLeases(db, () => this.blocked(), () => this.gate);
  }

  static open(file: string): SqliteStateStore {
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
      return new SqliteStateStore(db, resolved && st ? { path: resolved, dev: st.dev, ino: st.ino } : null, resolved ?? file);
    } catch (err) {
      if (db?.open) db.close();
      if (err instanceof StoreError) throw err;
      throw new StoreError(`state store ${file} cannot be used: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    while (this.blocked()) await this.gate;
    if (this.db.open) this.db.close();
  }

  /**
   * Throws a StoreError when the file can no longer be read and written, or is no longer the file
   * that was opened (removed or replaced: writes would go to a file nobody will read again).
   */
  async check(): Promise<void> {
    while (this.blocked()) await this.gate;
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

  async meta(key: string): Promise<string | null> {
    while (this.blocked()) await this.gate;
    const r = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as Row | undefined;
    return (r?.['value'] as string | undefined) ?? null;
  }

  async setMeta(key: string, value: string | null): Promise<void> {
    while (this.blocked()) await this.gate;
    if (value === null) this.db.prepare('DELETE FROM meta WHERE key = ?').run(key);
    else this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  async metaWithPrefix(prefix: string): Promise<Map<string, string>> {
    while (this.blocked()) await this.gate;
    const rows = this.db.prepare('SELECT key, value FROM meta WHERE substr(key, 1, length(?)) = ? ORDER BY key').all(prefix, prefix) as Row[];
    return new Map(rows.map((r) => [r['key'] as string, r['value'] as string]));
  }

  /**
   * Runs fn in one transaction (BEGIN IMMEDIATE on the one connection). Until it ends, calls from
   * outside it wait (they would otherwise run inside it); calls from inside it join it.
   */
  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (inTransaction.getStore() === this) return fn();
    while (this.gate) await this.gate;
    let open!: () => void;
    this.gate = new Promise<void>((resolve) => (open = resolve));
    const writes = this.logWrites;
    try {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const out = await inTransaction.run(this, fn);
        this.db.exec('COMMIT');
        return out;
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        if (this.logWrites !== writes) this.logCache.clear(); // it may hold what was rolled back
        throw err;
      }
    } finally {
      this.gate = null;
      open();
    }
  }

  /**
   * A write transaction within one synchronous call (a savepoint inside an open one). It takes the
   * write lock at once (BEGIN IMMEDIATE), waiting for another process's write to end: most read before
   * they write, and a deferred one would fail (SQLITE_BUSY, whatever the timeout) if another process
   * (the CLI beside the daemon) committed between its read and its first write.
   */
  private tx<T>(fn: () => T): T {
    const writes = this.logWrites;
    try {
      return this.db.transaction(fn).immediate();
    } catch (err) {
      if (this.logWrites !== writes) this.logCache.clear(); // it may hold what was rolled back
      throw err;
    }
  }

  /** Whether a call must wait: a transaction is open, and the call is not part of it. */
  private blocked(): boolean {
    return this.gate !== null && inTransaction.getStore() !== this;
  }

  // --- the evidence log, coverage, trail files --------------------------------------------------

  /**
   * Rows written before pristine knew accounts (schema 1) belong to pristine's own account, the only
   * one such a file can be about. Called once the cycle knows that account.
   */
  async adoptLegacyRows(accountId: string): Promise<number> {
    while (this.blocked()) await this.gate;
    return this.tx(() => {
      let n = 0;
      for (const table of ['activities', 'coverage_spans', 'instances', 'replacements']) {
        n += this.db.prepare(`UPDATE ${table} SET account_id = ? WHERE account_id IS NULL`).run(accountId).changes;
      }
      if (n > 0) this.logCache.clear();
      return n;
    });
  }

  /** Whether rows without an account (written by schema 1) wait to be adopted. */
  async hasLegacyRows(): Promise<boolean> {
    while (this.blocked()) await this.gate;
    return ['activities', 'coverage_spans', 'instances', 'replacements'].some(
      (t) => this.db.prepare(`SELECT 1 FROM ${t} WHERE account_id IS NULL LIMIT 1`).get() !== undefined,
    );
  }

  async coverage(scope: Scope, kind: CoverageKind): Promise<Span[]> {
    while (this.blocked()) await this.gate;
    return this.spans(scope, kind);
  }

  private spans(scope: Scope, kind: CoverageKind): Span[] {
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
  async addCoverage(scope: Scope, kind: CoverageKind, span: Span): Promise<void> {
    while (this.blocked()) await this.gate;
    this.tx(() => this.setSpans(scope, kind, mergeSpans([...this.spans(scope, kind), span])));
  }

  /** A clock that moved backwards: coverage of a future nobody has read yet is dropped. */
  async clampCoverage(scope: Scope, max: number): Promise<void> {
    while (this.blocked()) await this.gate;
    this.tx(() => {
      for (const kind of ['lookup-events', 's3-digest', 'ssm-sessions'] as const) {
        const spans = this.spans(scope, kind);
        if (spans.some((s) => s.to > max)) this.setSpans(scope, kind, clampSpans(spans, max));
      }
    });
  }

  /**
   * Adds activities to the evidence log, keyed by CloudTrail eventID. An event already held is merged,
   * never overwritten: the paths it came by are added, and instances resolved later (where a command
   * ran, which SSM forgets after a while) are kept. Returns the activities the log did not hold.
   */
  async ingest(activities: readonly Activity[], now = Date.now()): Promise<Activity[]> {
    while (this.blocked()) await this.gate;
    const get = this.db.prepare('SELECT body, account_id FROM activities WHERE id = ?');
    const put = this.db.prepare('INSERT INTO activities (id, account_id, region, at, body, received_at) VALUES (?, ?, ?, ?, ?, ?)');
    const update = this.db.prepare('UPDATE activities SET body = ? WHERE id = ?');
    const added: Activity[] = [];
    const changed: Activity[] = [];
    this.tx(() => {
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
  async activities(scope: Scope, from: number): Promise<Activity[]> {
    while (this.blocked()) await this.gate;
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

  async activitiesById(ids: readonly string[]): Promise<Activity[]> {
    while (this.blocked()) await this.gate;
    const get = this.db.prepare('SELECT body FROM activities WHERE id = ?');
    return ids.flatMap((id) => {
      const r = get.get(id) as Row | undefined;
      return r ? [JSON.parse(r['body'] as string) as Activity] : [];
    });
  }

  async pruneActivities(before: number): Promise<number> {
    while (this.blocked()) await this.gate;
    return this.tx(() => {
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

  async trailFile(bucket: string, key: string): Promise<TrailFileRecord | null> {
    while (this.blocked()) await this.gate;
    const r = this.db.prepare('SELECT * FROM trail_files WHERE bucket = ? AND key = ?').get(bucket, key) as Row | undefined;
    return r ? toTrailFile(r) : null;
  }

  async recordTrailFile(f: TrailFileRecord): Promise<void> {
    while (this.blocked()) await this.gate;
    this.db
      .prepare('INSERT INTO trail_files (bucket, key, account_id, region, sha256, records, read_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bucket, key) DO NOTHING')
      .run(f.bucket, f.key, f.accountId, f.region, f.sha256, f.records, f.readAt);
  }

  async digest(bucket: string, key: string): Promise<DigestRecord | null> {
    while (this.blocked()) await this.gate;
    const r = this.db.prepare('SELECT * FROM digests WHERE bucket = ? AND key = ?').get(bucket, key) as Row | undefined;
    return r ? toDigest(r) : null;
  }

  async recordDigest(d: DigestRecord): Promise<void> {
    while (this.blocked()) await this.gate;
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
  async recordVerdicts(now: number, verdicts: readonly VerdictInput[], audited: readonly Scope[] = []): Promise<{ newlyTainted: string[]; newFindings: Map<string, string[]> }> {
    while (this.blocked()) await this.gate;
    const newlyTainted: string[] = [];
    const newFindings = new Map<string, string[]>();
    // A few statements per VERDICTS_AT_ONCE instances, not a few per instance: a cycle of a fleet whose
    // findings are as they were moves every row's last seen in a handful of statements.
    const known = this.db.prepare('SELECT instance_id, alert_outbox_id, last_seen FROM instances WHERE instance_id IN (SELECT value FROM json_each(?))').raw();
    // (The SELECT of an INSERT with ON CONFLICT takes a WHERE, or SQLite reads ON as a join's.)
    const upsert = this.db.prepare(`
      INSERT INTO instances (instance_id, account_id, region, policy, name, verdict, first_seen, last_seen, tainted_since)
      SELECT x.value ->> 0, x.value ->> 1, x.value ->> 2, x.value ->> 3, x.value ->> 4, x.value ->> 5, @now, @now, CASE WHEN x.value ->> 5 = 'tainted' THEN @now END
      FROM json_each(@rows) AS x WHERE true
      ON CONFLICT (instance_id) DO UPDATE SET account_id = excluded.account_id, policy = excluded.policy, name = excluded.name, verdict = excluded.verdict,
        last_seen = excluded.last_seen, tainted_since = COALESCE(instances.tainted_since, excluded.tainted_since)
      WHERE instances.last_seen <= excluded.last_seen`);
    const had = this.db.prepare('SELECT instance_id, key, summary, rowid FROM findings WHERE instance_id IN (SELECT value FROM json_each(?))').raw();
    const seen = this.db.prepare('UPDATE findings SET last_seen = ? WHERE rowid IN (SELECT value FROM json_each(?))');
    const putFinding = this.db.prepare(`
      INSERT INTO findings (instance_id, key, detector, severity, summary, at, actor, first_seen, last_seen)
      VALUES (@instanceId, @key, @detector, @severity, @summary, @at, @actor, @now, @now)
      ON CONFLICT (instance_id, key) DO UPDATE SET last_seen = excluded.last_seen, summary = excluded.summary`);
    this.tx(() => {
      for (let batch of chunks(verdicts, VERDICTS_AT_ONCE)) {
        const rows = new Map((known.all(JSON.stringify(batch.map((v) => v.instanceId))) as Array<[string, number | null, number]>).map(([id, alert, lastSeen]) => [id, { alert, lastSeen }]));
        // Judged since, from later facts (an event pushed while a cycle read older ones): that verdict stands.
        batch = batch.filter((v) => !((rows.get(v.instanceId)?.lastSeen ?? -Infinity) > now));
        if (batch.length === 0) continue;
        upsert.run({ now, rows: JSON.stringify(batch.map((v) => [v.instanceId, v.accountId, v.region, v.policy, v.name, v.verdict])) });
        const withFindings = batch.filter((v) => v.findings.length > 0).map((v) => v.instanceId);
        const stored = new Map<string, Map<string, { summary: string; rowid: number | null }>>();
        for (const [id, key, summary, rowid] of had.all(JSON.stringify(withFindings)) as Array<[string, string, string, number]>) {
          let of = stored.get(id);
          if (!of) stored.set(id, (of = new Map()));
          of.set(key, { summary, rowid });
        }
        const same: number[] = [];
        for (const v of batch) {
          const tainted = v.verdict === 'tainted';
          const fresh: string[] = [];
          const before = stored.get(v.instanceId) ?? new Map<string, { summary: string; rowid: number | null }>();
          for (const f of v.findings) {
            const b = before.get(f.key);
            if (b === undefined) fresh.push(f.key);
            if (b?.summary === f.summary) {
              // (A row written just now, for the same key given twice, already has this last seen.)
              if (b.rowid !== null) same.push(b.rowid);
            } else putFinding.run({ instanceId: v.instanceId, now, ...f });
            before.set(f.key, { summary: f.summary, rowid: b?.rowid ?? null }); // a key given twice is new once
          }
          if (tainted && (rows.get(v.instanceId)?.alert ?? null) === null) newlyTainted.push(v.instanceId);
          else if (tainted && fresh.length > 0) newFindings.set(v.instanceId, fresh);
        }
        if (same.length > 0) seen.run(now, JSON.stringify(same));
      }
      const put = this.db.prepare('INSERT INTO scope_audits (account_id, region, audited_at) VALUES (?, ?, ?) ON CONFLICT (account_id, region) DO UPDATE SET audited_at = excluded.audited_at');
      for (const s of audited) put.run(s.accountId, s.region, now);
    });
    return { newlyTainted, newFindings };
  }

  async instance(instanceId: string): Promise<InstanceRow | null> {
    while (this.blocked()) await this.gate;
    const r = this.db.prepare('SELECT * FROM instances WHERE instance_id = ?').get(instanceId) as Row | undefined;
    return r ? toInstance(r) : null;
  }

  async setAlert(instanceId: string, outboxId: number): Promise<boolean> {
    while (this.blocked()) await this.gate;
    return this.db.prepare('UPDATE instances SET alert_outbox_id = ? WHERE instance_id = ? AND alert_outbox_id IS NULL').run(outboxId, instanceId).changes > 0;
  }

  /** Tainted instances seen in the last cycle that have not been replaced. */
  async openFindings(): Promise<OpenFinding[]> {
    while (this.blocked()) await this.gate;
    const rows = this.db
      .prepare(
        `SELECT i.* FROM instances i LEFT JOIN scope_audits a ON a.account_id = i.account_id AND a.region = i.region
         WHERE i.verdict = 'tainted'
           AND i.last_seen >= COALESCE(a.audited_at, (SELECT max(started_at) FROM cycles WHERE finished_at IS NOT NULL), (SELECT max(last_seen) FROM instances))
         AND NOT EXISTS (SELECT 1 FROM replacements r WHERE r.old_instance_id = i.instance_id AND r.status = 'done')
         ORDER BY i.tainted_since`,
      )
      .all() as Row[];
    const findings = this.db.prepare('SELECT * FROM findings WHERE instance_id = ? ORDER BY at');
    return rows.map((r) => ({
      ...toInstance(r),
      findings: (findings.all(r['instance_id']) as Row[]).map(toFinding),
    }));
  }

  // --- outbox ------------------------------------------------------------------------------------

  async enqueue(channel: string, notice: Notice, parentId: number | null = null, now = Date.now()): Promise<number> {
    while (this.blocked()) await this.gate;
    return Number(
      this.db.prepare('INSERT INTO outbox (channel, parent_id, notice, created_at) VALUES (?, ?, ?, ?)').run(channel, parentId, JSON.stringify(notice), now)
        .lastInsertRowid,
    );
  }

  /** Messages not yet sent, oldest first. */
  async pending(): Promise<OutboxRow[]> {
    while (this.blocked()) await this.gate;
    return (this.db.prepare('SELECT * FROM outbox WHERE sent_at IS NULL AND dropped_at IS NULL ORDER BY id').all() as Row[]).map(toOutbox);
  }

  /** The Slack ts of a sent message; null while it waits in the outbox. */
  async sentTs(outboxId: number): Promise<string | null> {
    while (this.blocked()) await this.gate;
    const r = this.db.prepare('SELECT ts FROM outbox WHERE id = ? AND sent_at IS NOT NULL').get(outboxId) as Row | undefined;
    return (r?.['ts'] as string | null | undefined) ?? null;
  }

  async markSent(id: number, ts: string | null, now = Date.now()): Promise<void> {
    while (this.blocked()) await this.gate;
    this.db.prepare('UPDATE outbox SET sent_at = ?, ts = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?').run(now, ts, id);
  }

  async markFailed(id: number, error: string): Promise<void> {
    while (this.blocked()) await this.gate;
    this.db.prepare('UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?').run(error, id);
  }

  /** A message Slack will never take (e.g. channel_not_found): kept for the record, not retried. */
  async markDropped(id: number, error: string, now = Date.now()): Promise<void> {
    while (this.blocked()) await this.gate;
    this.db.prepare('UPDATE outbox SET dropped_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?').run(now, error, id);
  }

  async outboxStats(): Promise<{ pending: number; sent: number; dropped: number }> {
    while (this.blocked()) await this.gate;
    const r = this.db
      .prepare(
        `SELECT sum(sent_at IS NULL AND dropped_at IS NULL) AS pending, sum(sent_at IS NOT NULL) AS sent, sum(dropped_at IS NOT NULL) AS dropped FROM outbox`,
      )
      .get() as Row;
    return { pending: Number(r['pending'] ?? 0), sent: Number(r['sent'] ?? 0), dropped: Number(r['dropped'] ?? 0) };
  }

  // --- replacements and their journal ------------------------------------------------------------

  /** Starts a replacement; null when one that was not rolled back already exists for the instance. */
  async createReplacement(r: NewReplacement, now = Date.now()): Promise<ReplacementRow | null> {
    while (this.blocked()) await this.gate;
    try {
      const id = Number(
        this.db
          .prepare(
            `INSERT INTO replacements (uuid, old_instance_id, account_id, region, policy, image_id, status, step, data, alert_outbox_id, started_at, updated_at, next_poll_at)
             VALUES (?, ?, ?, ?, ?, ?, 'in-progress', ?, ?, ?, ?, ?, ?)`,
          )
          .run(randomUUID(), r.oldInstanceId, r.accountId, r.region, r.policy, r.imageId, r.step, JSON.stringify(r.data), r.alertOutboxId, now, now, now).lastInsertRowid,
      );
      return this.row(id);
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') return null;
      throw err;
    }
  }

  async replacement(id: number): Promise<ReplacementRow | null> {
    while (this.blocked()) await this.gate;
    return this.row(id);
  }

  private row(id: number): ReplacementRow | null {
    const r = this.db.prepare('SELECT * FROM replacements WHERE id = ?').get(id) as Row | undefined;
    return r ? toReplacement(r) : null;
  }

  /** The latest replacement of an instance, whatever its status. */
  async replacementOf(oldInstanceId: string): Promise<ReplacementRow | null> {
    while (this.blocked()) await this.gate;
    const r = this.db.prepare('SELECT * FROM replacements WHERE old_instance_id = ? ORDER BY id DESC LIMIT 1').get(oldInstanceId) as Row | undefined;
    return r ? toReplacement(r) : null;
  }

  async inFlight(): Promise<ReplacementRow[]> {
    while (this.blocked()) await this.gate;
    return (this.db.prepare(`SELECT * FROM replacements WHERE status = 'in-progress' ORDER BY id`).all() as Row[]).map(toReplacement);
  }

  async recentReplacements(limit = 20): Promise<ReplacementRow[]> {
    while (this.blocked()) await this.gate;
    return (this.db.prepare('SELECT * FROM replacements ORDER BY id DESC LIMIT ?').all(limit) as Row[]).map(toReplacement);
  }

  /** Journals a step's phase and moves the replacement to it, in one transaction. */
  async journal(replacementId: number, step: string, phase: JournalRow['phase'], patch: JournalPatch = {}, now = Date.now(), fence?: Fence): Promise<ReplacementRow> {
    while (this.blocked()) await this.gate;
    return this.tx(() => {
      if (fence) this.checkFence(replacementId, fence);
      this.db.prepare('INSERT INTO journal (replacement_id, step, phase, at, detail) VALUES (?, ?, ?, ?, ?)').run(replacementId, step, phase, now, patch.detail ? JSON.stringify(patch.detail) : null);
      const current = this.row(replacementId);
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
      return this.row(replacementId) as ReplacementRow;
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
  async claimReplacement(id: number, owner: string, ttlMs: number, takeOverFrom: string | null = null): Promise<Fence | null> {
    while (this.blocked()) await this.gate;
    const now = Date.now();
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
  async releaseLease(id: number, owner: string): Promise<void> {
    while (this.blocked()) await this.gate;
    this.db.prepare('UPDATE replacements SET lease_owner = NULL, lease_expires_at = NULL, next_poll_at = NULL, waiting_for = NULL WHERE id = ? AND lease_owner = ?').run(id, owner);
  }

  /** The last journal entry of a replacement. */
  async lastJournal(replacementId: number): Promise<JournalRow | null> {
    while (this.blocked()) await this.gate;
    const r = this.db.prepare('SELECT * FROM journal WHERE replacement_id = ? ORDER BY id DESC LIMIT 1').get(replacementId) as Row | undefined;
    return r ? toJournal(r) : null;
  }

  /** Extends every lease this owner holds. */
  async renewLeases(owner: string, ttlMs: number): Promise<void> {
    while (this.blocked()) await this.gate;
    const now = Date.now();
    this.db.prepare('UPDATE replacements SET lease_expires_at = ? WHERE lease_owner = ?').run(now + ttlMs, owner);
  }

  /** Lets go of every lease this owner holds (a clean stop): another driver may take them at once. */
  async releaseLeases(owner: string): Promise<number> {
    while (this.blocked()) await this.gate;
    return this.db.prepare('UPDATE replacements SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?').run(owner).changes;
  }

  /** When to take the next step or poll, what it waits for, and the data a poll changed; under the lease. */
  async schedule(id: number, nextPollAt: number, waitingFor: string | null, fence: Fence, data?: Record<string, unknown>): Promise<void> {
    while (this.blocked()) await this.gate;
    this.tx(() => {
      this.checkFence(id, fence);
      this.db
        .prepare('UPDATE replacements SET next_poll_at = ?, waiting_for = ?, data = COALESCE(?, data) WHERE id = ?')
        .run(Math.ceil(nextPollAt), waitingFor, data ? JSON.stringify(data) : null, id);
    });
  }

  async journalOf(replacementId: number): Promise<JournalRow[]> {
    while (this.blocked()) await this.gate;
    return (this.db.prepare('SELECT * FROM journal WHERE replacement_id = ? ORDER BY id').all(replacementId) as Row[]).map(toJournal);
  }

  // --- cycles --------------------------------------------------------------------------------------

  async startCycle(now = Date.now()): Promise<number> {
    while (this.blocked()) await this.gate;
    return Number(this.db.prepare('INSERT INTO cycles (started_at) VALUES (?)').run(now).lastInsertRowid);
  }

  async finishCycle(id: number, outcome: string, exitCode: number, summary: Record<string, unknown>, now = Date.now()): Promise<void> {
    while (this.blocked()) await this.gate;
    this.db.prepare('UPDATE cycles SET finished_at = ?, outcome = ?, exit_code = ?, summary = ? WHERE id = ?').run(now, outcome, exitCode, JSON.stringify(summary), id);
  }

  async recentCycles(limit = 10): Promise<CycleRow[]> {
    while (this.blocked()) await this.gate;
    return (this.db.prepare('SELECT * FROM cycles ORDER BY id DESC LIMIT ?').all(limit) as Row[]).map(toCycle);
  }

  async lastFinishedCycle(): Promise<{ finishedAt: number; outcome: string } | null> {
    while (this.blocked()) await this.gate;
    const r = this.db.prepare('SELECT finished_at, outcome FROM cycles WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1').get() as Row | undefined;
    return r ? { finishedAt: r['finished_at'] as number, outcome: r['outcome'] as string } : null;
  }
}

/**
 * Named leases in the file. One machine shares a file, so its clock is the store's clock; the
 * token rises whenever the holder changes and never falls (a released row keeps it).
 */
class SqliteLeases implements LeasesPort {
  constructor(
    private readonly db: Database.Database,
    private readonly blocked: () => boolean,
    private readonly gate: () => Promise<void> | null,
  ) {}

  private async wait(): Promise<void> {
    while (this.blocked()) await this.gate();
  }

  async claim(name: string, owner: string, ttlMs: number, takeOverFrom: string | null = null): Promise<Fence | null> {
    await this.wait();
    const now = Date.now();
    const r = this.db
      .prepare(
        `INSERT INTO leases (name, owner, token, expires_at) VALUES (?, ?, 1, ?)
         ON CONFLICT (name) DO UPDATE SET token = leases.token + CASE WHEN leases.owner IS excluded.owner THEN 0 ELSE 1 END,
           owner = excluded.owner, expires_at = excluded.expires_at
         WHERE leases.owner IS NULL OR leases.owner = excluded.owner OR leases.expires_at < ? OR leases.owner = ?
         RETURNING token`,
      )
      .get(name, owner, now + ttlMs, now, takeOverFrom) as Row | undefined;
    return r ? { owner, token: r['token'] as number } : null;
  }

  async renew(owner: string, ttlMs: number): Promise<string[]> {
    await this.wait();
    const now = Date.now();
    return (this.db.prepare('UPDATE leases SET expires_at = ? WHERE owner = ? AND expires_at >= ? RETURNING name').all(now + ttlMs, owner, now) as Row[]).map((r) => r['name'] as string);
  }

  async check(name: string, fence: Fence): Promise<void> {
    await this.wait();
    const r = this.db.prepare('SELECT owner, token, expires_at FROM leases WHERE name = ?').get(name) as Row | undefined;
    if (!r || r['owner'] !== fence.owner || r['token'] !== fence.token || (r['expires_at'] as number) < Date.now()) {
      throw new LeaseLostError(`lease ${name}: held by ${String(r?.['owner'] ?? 'nobody')} (token ${String(r?.['token'])}), not ${fence.owner} (token ${fence.token})`);
    }
  }

  async release(name: string, owner: string): Promise<void> {
    await this.wait();
    this.db.prepare('UPDATE leases SET owner = NULL, expires_at = NULL WHERE name = ? AND owner = ?').run(name, owner);
  }

  async releaseAll(owner: string): Promise<number> {
    await this.wait();
    return this.db.prepare('UPDATE leases SET owner = NULL, expires_at = NULL WHERE owner = ?').run(owner).changes;
  }

  async held(owner: string): Promise<LeaseRow[]> {
    await this.wait();
    return (this.db.prepare('SELECT name, owner, token, expires_at FROM leases WHERE owner = ? AND expires_at >= ? ORDER BY name').all(owner, Date.now()) as Row[]).map((r) => ({
      name: r['name'] as string,
      owner: r['owner'] as string,
      token: r['token'] as number,
      expiresAt: r['expires_at'] as number,
    }));
  }

  async list(prefix: string): Promise<LeaseState[]> {
    await this.wait();
    const now = Date.now();
    return (this.db.prepare(`SELECT name, owner, token, expires_at FROM leases WHERE substr(name, 1, ?) = ? ORDER BY name`).all(prefix.length, prefix) as Row[]).map((r) => ({
      name: r['name'] as string,
      owner: (r['owner'] as string | null) ?? null,
      token: r['token'] as number,
      live: r['owner'] !== null && ((r['expires_at'] as number | null) ?? 0) >= now,
    }));
  }
}
