import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
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

type Queryable = Pick<pg.PoolClient, 'query'>;

/** BIGINT (epoch ms, ids) as numbers: every value pristine stores fits in 2^53. */
const INT8 = 20;
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, (format ?? 'text') as 'text')) as typeof pg.types.getTypeParser,
};

/** Rows per statement when writing many (verdicts, activities). */
const BATCH = 2000;

/** The URL without its password, for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable url)';
  }
}

/** NUL, which PostgreSQL's text refuses, and lone surrogates, which its JSON refuses. */
const UNSTORABLE = /\0|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Text as PostgreSQL can hold it: NUL and lone surrogates as U+FFFD. Evidence is not trusted to be
 * well-formed (a package name in SSM Inventory is whatever the instance reported), and one such
 * string must not fail a whole cycle's writes. SQLite holds them as they are.
 */
export function storable(text: string): string {
  return text.replace(UNSTORABLE, '\uFFFD');
}

const storableParam = (p: unknown): unknown => (typeof p === 'string' ? storable(p) : Array.isArray(p) ? p.map(storableParam) : p);

/**
 * pristine's state in PostgreSQL, shared by any number of replicas. Every write that others could
 * race is conditional (an alert is recorded once, a replacement created once, a lease taken by one)
 * and every lease's expiry is the database's clock (`pristine_now_ms()`), not a replica's.
 */
/**
 * An instance's findings with each key once (one statement cannot write a row twice): the first
 * finding of a key, with the summary of the last, which is what writing them one by one leaves.
 */
function onePerKey(findings: VerdictInput['findings']): VerdictInput['findings'] {
  const byKey = new Map<string, VerdictInput['findings'][number]>();
  for (const f of findings) {
    const first = byKey.get(f.key);
    byKey.set(f.key, first ? { ...first, summary: f.summary } : f);
  }
  return byKey.size === findings.length ? findings : [...byKey.values()];
}

export class PostgresStateStore implements StateStore {
  readonly kind = 'postgres' as const;
  readonly leases: LeasesPort;
  /** the client of the transaction the running code is inside, if any */
  private readonly tx = new AsyncLocalStorage<pg.PoolClient>();
  /**
   * The evidence log of the scopes read so far, with each row's sequence number (a write, insert or
   * merge, takes a new one). A read asks the database for the scope's newest number and count: when
   * they are the cache's, the cache is the log; else only the rows written since are fetched. Rows
   * nobody changed keep their objects from cycle to cycle, so what was worked out from them carries over.
   */
  private readonly logCache = new Map<string, { from: number; seq: number; byId: Map<string, { a: Activity; seq: number }>; sorted: Activity[] | null }>();

  private constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
  ) {
    this.leases = new PostgresLeases((sql, params) => this.q(sql, params));
  }

  static async open(url: string, options: { poolSize?: number } = {}): Promise<PostgresStateStore> {
    const location = redactUrl(url);
    const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 8, types, connectionTimeoutMillis: 10_000 });
    // An idle connection the server closed: the next query fails and says so; the process stays up.
    pool.on('error', () => undefined);
    try {
      const client = await pool.connect();
      try {
        await migrate(client, location);
      } finally {
        client.release();
      }
      return new PostgresStateStore(pool, location);
    } catch (err) {
      await pool.end().catch(() => undefined);
      if (err instanceof StoreError) throw err;
      throw new StoreError(`state store ${location} cannot be used: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  private async q(sql: string, params: unknown[] = []): Promise<pg.QueryResult<Row>> {
    const client: Queryable = this.tx.getStore() ?? this.pool;
    return client.query<Row>(sql, params.map(storableParam));
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.tx.getStore()) return fn();
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      try {
        const out = await this.tx.run(client, fn);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        this.logCache.clear(); // it may hold what was rolled back
        throw err;
      }
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  async check(): Promise<void> {
    // A health probe must answer quickly: a database that does not answer within 3 s is unusable now.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no answer within 3 s')), 3000);
    });
    try {
      const write = this.transaction(async () => {
        await this.q(`SET LOCAL statement_timeout = 2000`);
        await this.q(`INSERT INTO meta (key, value) VALUES ('health_checked_at', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [String(Date.now())]);
      });
      write.catch(() => undefined); // when the timeout answers first
      await Promise.race([write, timeout]);
    } catch (err) {
      throw new StoreError(`state store unusable: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  async meta(key: string): Promise<string | null> {
    return ((await this.q('SELECT value FROM meta WHERE key = $1', [key])).rows[0]?.['value'] as string | undefined) ?? null;
  }

  async setMeta(key: string, value: string | null): Promise<void> {
    if (value === null) await this.q('DELETE FROM meta WHERE key = $1', [key]);
    else await this.q('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]);
  }

  async metaWithPrefix(prefix: string): Promise<Map<string, string>> {
    const r = await this.q('SELECT key, value FROM meta WHERE substr(key, 1, length($1)) = $1 ORDER BY key', [prefix]);
    return new Map(r.rows.map((x) => [x['key'] as string, x['value'] as string]));
  }

  // --- the evidence log, coverage, trail files --------------------------------------------------

  async adoptLegacyRows(accountId: string): Promise<number> {
    return this.transaction(async () => {
      let n = 0;
      for (const table of ['activities', 'coverage_spans', 'instances', 'replacements']) {
        n += (await this.q(`UPDATE ${table} SET account_id = $1 WHERE account_id IS NULL`, [accountId])).rowCount ?? 0;
      }
      if (n > 0) this.logCache.clear();
      return n;
    });
  }

  async hasLegacyRows(): Promise<boolean> {
    for (const t of ['activities', 'coverage_spans', 'instances', 'replacements']) {
      if ((await this.q(`SELECT 1 FROM ${t} WHERE account_id IS NULL LIMIT 1`)).rows.length > 0) return true;
    }
    return false;
  }

  async coverage(scope: Scope, kind: CoverageKind): Promise<Span[]> {
    const r = await this.q('SELECT from_ms, to_ms FROM coverage_spans WHERE account_id = $1 AND region = $2 AND kind = $3 ORDER BY from_ms', [scope.accountId, scope.region, kind]);
    return r.rows.map((x) => ({ from: Number(x['from_ms']), to: Number(x['to_ms']) }));
  }

  private async setSpans(scope: Scope, kind: CoverageKind, spans: readonly Span[]): Promise<void> {
    await this.q('DELETE FROM coverage_spans WHERE account_id = $1 AND region = $2 AND kind = $3', [scope.accountId, scope.region, kind]);
    for (const s of spans) {
      await this.q('INSERT INTO coverage_spans (account_id, region, kind, from_ms, to_ms) VALUES ($1, $2, $3, $4, $5)', [scope.accountId, scope.region, kind, s.from, s.to]);
    }
  }

  /** Spans are read and written under a transaction lock on the scope's kind, so two writers merge, not overwrite. */
  private async lockCoverage(scope: Scope, kind: CoverageKind): Promise<void> {
    await this.q('SELECT pg_advisory_xact_lock(hashtext($1))', [`coverage:${scopeKey(scope)}:${kind}`]);
  }

  async addCoverage(scope: Scope, kind: CoverageKind, span: Span): Promise<void> {
    await this.transaction(async () => {
      await this.lockCoverage(scope, kind);
      await this.setSpans(scope, kind, mergeSpans([...(await this.coverage(scope, kind)), span]));
    });
  }

  async clampCoverage(scope: Scope, max: number): Promise<void> {
    await this.transaction(async () => {
      for (const kind of ['lookup-events', 's3-digest', 'ssm-sessions'] as const) {
        await this.lockCoverage(scope, kind);
        const spans = await this.coverage(scope, kind);
        if (spans.some((s) => s.to > max)) await this.setSpans(scope, kind, clampSpans(spans, max));
      }
    });
  }

  async ingest(activities: readonly Activity[], now = Date.now()): Promise<Activity[]> {
    if (activities.length === 0) return [];
    const added: Activity[] = [];
    const written: Array<{ a: Activity; seq: number }> = [];
    await this.transaction(async () => {
      // Rows are locked and written in id order: two replicas writing overlapping events cannot deadlock.
      // An id is the key it is stored and found again under: as the database holds it.
      const sorted = activities
        .map((a) => {
          const id = storable(a.id);
          return id === a.id ? a : { ...a, id };
        })
        .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
      for (const batch of chunks(sorted, BATCH)) {
        // One event twice in a call (LookupEvents and a trail file overlap): merged, as written one after the other.
        const byId = new Map<string, Activity>();
        for (const a of batch) {
          const twice = byId.get(a.id);
          byId.set(a.id, twice ? mergeActivity(twice, a) : a);
        }
        const known = await this.q('SELECT id, body, account_id FROM activities WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [[...byId.keys()]]);
        const held = new Map(known.rows.map((r) => [r['id'] as string, r]));
        const fresh = [...byId.values()].filter((a) => !held.has(a.id));
        if (fresh.length > 0) {
          // Another replica may insert the same event meanwhile: what this one inserted is what it adds.
          const inserted = await this.q(
            `INSERT INTO activities (id, account_id, region, at, body, received_at)
             SELECT x.id, x.account_id, x.region, x.at, x.body, $2 FROM jsonb_to_recordset($1::jsonb) AS x(id text, account_id text, region text, at bigint, body text)
             ON CONFLICT (id) DO NOTHING RETURNING id, seq`,
            [JSON.stringify(fresh.map((a) => ({ id: a.id, account_id: a.accountId, region: a.region, at: a.at, body: JSON.stringify(a) }))), now],
          );
          const seqOf = new Map(inserted.rows.map((r) => [r['id'] as string, Number(r['seq'])]));
          for (const a of fresh) {
            const seq = seqOf.get(a.id);
            if (seq === undefined) continue;
            added.push(a);
            written.push({ a, seq });
          }
        }
        for (const [id, row] of held) {
          const before = JSON.parse(row['body'] as string) as Activity;
          const merged = mergeActivity(before, byId.get(id) as Activity);
          if (merged === before) continue;
          const r = await this.q(`UPDATE activities SET body = $1, seq = nextval(pg_get_serial_sequence('activities', 'seq')) WHERE id = $2 RETURNING seq`, [JSON.stringify(merged), id]);
          const accountId = row['account_id'] as string | null;
          if (accountId !== null) written.push({ a: { ...merged, accountId }, seq: Number(r.rows[0]?.['seq']) });
        }
      }
    });
    // What this store wrote is known as written: the next read keeps these objects.
    for (const w of written) {
      const c = w.a.accountId === null ? undefined : this.logCache.get(scopeKey({ accountId: w.a.accountId, region: w.a.region }));
      if (!c || w.a.at < c.from) continue;
      c.byId.set(w.a.id, w);
      c.sorted = null;
    }
    // In the order given, not the order written.
    const order = new Map(activities.map((a, n) => [a.id, n]));
    return added.sort((x, y) => (order.get(x.id) ?? 0) - (order.get(y.id) ?? 0));
  }

  async activities(scope: Scope, from: number): Promise<Activity[]> {
    const key = scopeKey(scope);
    const c = this.logCache.get(key);
    if (c && from >= c.from) {
      const head = (await this.q('SELECT coalesce(max(seq), 0) AS seq, count(*) AS n FROM activities WHERE account_id = $1 AND region = $2 AND at >= $3', [scope.accountId, scope.region, c.from])).rows[0] as Row;
      const [seq, count] = [Number(head['seq']), Number(head['n'])];
      if (seq !== c.seq || count !== c.byId.size) {
        const since = (await this.q('SELECT body, account_id, seq FROM activities WHERE account_id = $1 AND region = $2 AND at >= $3 AND seq > $4', [scope.accountId, scope.region, c.from, c.seq])).rows;
        for (const r of since) {
          const rowSeq = Number(r['seq']);
          const a = JSON.parse(r['body'] as string) as Activity;
          if (c.byId.get(a.id)?.seq === rowSeq) continue; // written by this store: its object stands
          c.byId.set(a.id, { a: { ...a, accountId: (r['account_id'] as string | null) ?? scope.accountId }, seq: rowSeq });
          c.sorted = null;
        }
        c.seq = seq;
      }
      // Rows removed (pruned) or written in a way the numbers do not show: read the scope afresh.
      if (count === c.byId.size) {
        c.sorted ??= [...c.byId.values()].sort((x, y) => x.a.at - y.a.at || x.seq - y.seq).map((x) => x.a);
        return fromOn(c.sorted, from);
      }
    }
    const rows = (await this.q('SELECT body, account_id, seq FROM activities WHERE account_id = $1 AND region = $2 AND at >= $3 ORDER BY at, seq', [scope.accountId, scope.region, from])).rows;
    const byId = new Map<string, { a: Activity; seq: number }>();
    let seq = 0;
    for (const r of rows) {
      const rowSeq = Number(r['seq']);
      seq = Math.max(seq, rowSeq);
      const a = JSON.parse(r['body'] as string) as Activity;
      byId.set(a.id, { a: { ...a, accountId: (r['account_id'] as string | null) ?? scope.accountId }, seq: rowSeq });
    }
    const fresh = { from, seq, byId, sorted: [...byId.values()].map((x) => x.a) };
    this.logCache.set(key, fresh);
    return fresh.sorted.slice();
  }

  async activitiesById(ids: readonly string[]): Promise<Activity[]> {
    if (ids.length === 0) return [];
    const r = await this.q('SELECT id, body FROM activities WHERE id = ANY($1::text[])', [ids]);
    const byId = new Map(r.rows.map((x) => [x['id'] as string, JSON.parse(x['body'] as string) as Activity]));
    return ids.flatMap((id) => byId.get(id) ?? []);
  }

  async pruneActivities(before: number): Promise<number> {
    return this.transaction(async () => {
      await this.q('DELETE FROM trail_files WHERE read_at < $1', [before]);
      await this.q('DELETE FROM digests WHERE to_ms < $1', [before]);
      const n = (await this.q('DELETE FROM activities WHERE at < $1', [before])).rowCount ?? 0;
      if (n > 0) {
        for (const c of this.logCache.values()) {
          for (const [id, x] of c.byId) if (x.a.at < before) c.byId.delete(id);
          c.sorted = null;
        }
      }
      return n;
    });
  }

  async trailFile(bucket: string, key: string): Promise<TrailFileRecord | null> {
    const r = (await this.q('SELECT * FROM trail_files WHERE bucket = $1 AND key = $2', [bucket, key])).rows[0];
    return r ? toTrailFile(r) : null;
  }

  async recordTrailFile(f: TrailFileRecord): Promise<void> {
    await this.q(
      'INSERT INTO trail_files (bucket, key, account_id, region, sha256, records, read_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (bucket, key) DO NOTHING',
      [f.bucket, f.key, f.accountId, f.region, f.sha256, f.records, f.readAt],
    );
  }

  async digest(bucket: string, key: string): Promise<DigestRecord | null> {
    const r = (await this.q('SELECT * FROM digests WHERE bucket = $1 AND key = $2', [bucket, key])).rows[0];
    return r ? toDigest(r) : null;
  }

  async recordDigest(d: DigestRecord): Promise<void> {
    await this.q(
      `INSERT INTO digests (bucket, key, account_id, region, from_ms, to_ms, status, checked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (bucket, key) DO UPDATE SET status = excluded.status, checked_at = excluded.checked_at`,
      [d.bucket, d.key, d.accountId, d.region, d.from, d.to, d.status, d.checkedAt],
    );
  }

  // --- verdicts and findings -------------------------------------------------------------------

  async recordVerdicts(now: number, verdicts: readonly VerdictInput[], audited: readonly Scope[] = []): Promise<{ newlyTainted: string[]; newFindings: Map<string, string[]> }> {
    const newlyTainted: string[] = [];
    const newFindings = new Map<string, string[]>();
    await this.transaction(async () => {
      // Instances are written in id order: a cycle and an event judged by another replica cannot deadlock.
      const sorted = [...verdicts].sort((x, y) => (x.instanceId < y.instanceId ? -1 : x.instanceId > y.instanceId ? 1 : 0));
      for (let batch of chunks(sorted, BATCH)) {
        // Rows judged since, from later facts (an event pushed while a cycle read older ones), are locked
        // and left as they are: that verdict stands.
        const known = (await this.q('SELECT instance_id, alert_outbox_id, last_seen FROM instances WHERE instance_id = ANY($1::text[]) ORDER BY instance_id FOR UPDATE', [batch.map((v) => v.instanceId)])).rows;
        const later = new Set(known.filter((r) => Number(r['last_seen']) > now).map((r) => r['instance_id'] as string));
        const alerted = new Map(known.map((r) => [r['instance_id'] as string, r['alert_outbox_id']]));
        batch = batch.filter((v) => !later.has(v.instanceId));
        if (batch.length === 0) continue;
        const ids = batch.map((v) => v.instanceId);
        const seen = new Set((await this.q('SELECT instance_id, key FROM findings WHERE instance_id = ANY($1::text[])', [ids])).rows.map((r) => `${r['instance_id'] as string}\0${r['key'] as string}`));
        await this.q(
          `INSERT INTO instances (instance_id, account_id, region, policy, name, verdict, first_seen, last_seen, tainted_since)
           SELECT x.instance_id, x.account_id, x.region, x.policy, x.name, x.verdict, $2, $2, CASE WHEN x.verdict = 'tainted' THEN $2::bigint END
           FROM jsonb_to_recordset($1::jsonb) AS x(instance_id text, account_id text, region text, policy text, name text, verdict text)
           ON CONFLICT (instance_id) DO UPDATE SET account_id = excluded.account_id, policy = excluded.policy, name = excluded.name, verdict = excluded.verdict,
             last_seen = excluded.last_seen, tainted_since = COALESCE(instances.tainted_since, excluded.tainted_since)
           WHERE instances.last_seen <= excluded.last_seen`,
          [JSON.stringify(batch.map((v) => ({ instance_id: v.instanceId, account_id: v.accountId, region: v.region, policy: v.policy, name: v.name === null ? null : storable(v.name), verdict: v.verdict }))), now],
        );
        const findings = batch.flatMap((v) =>
          onePerKey(v.findings.map((f) => ({ ...f, key: storable(f.key), summary: storable(f.summary), actor: f.actor === null ? null : storable(f.actor) }))).map((f) => ({ instance_id: v.instanceId, ...f })),
        );
        for (const part of chunks(findings, BATCH)) {
          await this.q(
            `INSERT INTO findings (instance_id, key, detector, severity, summary, at, actor, first_seen, last_seen)
             SELECT x.instance_id, x.key, x.detector, x.severity, x.summary, x.at, x.actor, $2, $2
             FROM jsonb_to_recordset($1::jsonb) AS x(instance_id text, key text, detector text, severity text, summary text, at bigint, actor text)
             ON CONFLICT (instance_id, key) DO UPDATE SET last_seen = excluded.last_seen, summary = excluded.summary`,
            [JSON.stringify(part), now],
          );
        }
        for (const v of batch) {
          if (v.verdict !== 'tainted') continue;
          const fresh = [...new Set(v.findings.map((f) => f.key))].filter((k) => !seen.has(`${v.instanceId}\0${storable(k)}`));
          if ((alerted.get(v.instanceId) ?? null) === null) newlyTainted.push(v.instanceId);
          else if (fresh.length > 0) newFindings.set(v.instanceId, fresh);
        }
      }
      for (const s of audited) {
        await this.q(
          'INSERT INTO scope_audits (account_id, region, audited_at) VALUES ($1, $2, $3) ON CONFLICT (account_id, region) DO UPDATE SET audited_at = excluded.audited_at',
          [s.accountId, s.region, now],
        );
      }
    });
    // In the order given (alerts go out in it), not the order written.
    const order = new Map(verdicts.map((v, n) => [v.instanceId, n]));
    const rank = (id: string) => order.get(id) ?? 0;
    return { newlyTainted: newlyTainted.sort((a, b) => rank(a) - rank(b)), newFindings: new Map([...newFindings].sort(([a], [b]) => rank(a) - rank(b))) };
  }

  async instance(instanceId: string): Promise<InstanceRow | null> {
    const r = (await this.q('SELECT * FROM instances WHERE instance_id = $1', [instanceId])).rows[0];
    return r ? toInstance(r) : null;
  }

  async setAlert(instanceId: string, outboxId: number): Promise<boolean> {
    return ((await this.q('UPDATE instances SET alert_outbox_id = $1 WHERE instance_id = $2 AND alert_outbox_id IS NULL', [outboxId, instanceId])).rowCount ?? 0) > 0;
  }

  async openFindings(): Promise<OpenFinding[]> {
    const rows = (
      await this.q(
        `SELECT i.* FROM instances i LEFT JOIN scope_audits a ON a.account_id = i.account_id AND a.region = i.region
         WHERE i.verdict = 'tainted'
           AND i.last_seen >= COALESCE(a.audited_at, (SELECT max(started_at) FROM cycles WHERE finished_at IS NOT NULL), (SELECT max(last_seen) FROM instances))
           AND NOT EXISTS (SELECT 1 FROM replacements r WHERE r.old_instance_id = i.instance_id AND r.status = 'done')
         ORDER BY i.tainted_since`,
      )
    ).rows;
    // Their findings in one query, not one per instance.
    const ids = rows.map((r) => r['instance_id'] as string);
    const byInstance = new Map<string, OpenFinding['findings']>(ids.map((id) => [id, []]));
    for (const f of (await this.q('SELECT * FROM findings WHERE instance_id = ANY($1::text[]) ORDER BY instance_id, at NULLS FIRST', [ids])).rows) {
      byInstance.get(f['instance_id'] as string)?.push(toFinding(f));
    }
    return rows.map((r) => ({ ...toInstance(r), findings: byInstance.get(r['instance_id'] as string) ?? [] }));
  }

  // --- outbox ------------------------------------------------------------------------------------

  async enqueue(channel: string, notice: Notice, parentId: number | null = null, now = Date.now()): Promise<number> {
    const r = await this.q('INSERT INTO outbox (channel, parent_id, notice, created_at) VALUES ($1, $2, $3, $4) RETURNING id', [channel, parentId, JSON.stringify(notice), now]);
    return Number(r.rows[0]?.['id']);
  }

  async pending(): Promise<OutboxRow[]> {
    return (await this.q('SELECT * FROM outbox WHERE sent_at IS NULL AND dropped_at IS NULL ORDER BY id')).rows.map(toOutbox);
  }

  async sentTs(outboxId: number): Promise<string | null> {
    return ((await this.q('SELECT ts FROM outbox WHERE id = $1 AND sent_at IS NOT NULL', [outboxId])).rows[0]?.['ts'] as string | null | undefined) ?? null;
  }

  async markSent(id: number, ts: string | null, now = Date.now()): Promise<void> {
    await this.q('UPDATE outbox SET sent_at = $1, ts = $2, attempts = attempts + 1, last_error = NULL WHERE id = $3', [now, ts, id]);
  }

  async markFailed(id: number, error: string): Promise<void> {
    await this.q('UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2', [error, id]);
  }

  async markDropped(id: number, error: string, now = Date.now()): Promise<void> {
    await this.q('UPDATE outbox SET dropped_at = $1, attempts = attempts + 1, last_error = $2 WHERE id = $3', [now, error, id]);
  }

  async outboxStats(): Promise<{ pending: number; sent: number; dropped: number }> {
    const r = (
      await this.q(
        `SELECT count(*) FILTER (WHERE sent_at IS NULL AND dropped_at IS NULL) AS pending, count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent,
                count(*) FILTER (WHERE dropped_at IS NOT NULL) AS dropped FROM outbox`,
      )
    ).rows[0] as Row;
    return { pending: Number(r['pending'] ?? 0), sent: Number(r['sent'] ?? 0), dropped: Number(r['dropped'] ?? 0) };
  }

  // --- replacements and their journal ------------------------------------------------------------

  async createReplacement(r: NewReplacement, now = Date.now()): Promise<ReplacementRow | null> {
    const res = await this.q(
      `INSERT INTO replacements (uuid, old_instance_id, account_id, region, policy, image_id, status, step, data, alert_outbox_id, started_at, updated_at, next_poll_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'in-progress', $7, $8, $9, $10, $10, $10)
       ON CONFLICT (old_instance_id) WHERE status <> 'rolled-back' DO NOTHING RETURNING *`,
      [randomUUID(), r.oldInstanceId, r.accountId, r.region, r.policy, r.imageId, r.step, JSON.stringify(r.data), r.alertOutboxId, now],
    );
    const row = res.rows[0];
    return row ? toReplacement(row) : null;
  }

  async replacement(id: number): Promise<ReplacementRow | null> {
    const r = (await this.q('SELECT * FROM replacements WHERE id = $1', [id])).rows[0];
    return r ? toReplacement(r) : null;
  }

  async replacementOf(oldInstanceId: string): Promise<ReplacementRow | null> {
    const r = (await this.q('SELECT * FROM replacements WHERE old_instance_id = $1 ORDER BY id DESC LIMIT 1', [oldInstanceId])).rows[0];
    return r ? toReplacement(r) : null;
  }

  async inFlight(): Promise<ReplacementRow[]> {
    return (await this.q(`SELECT * FROM replacements WHERE status = 'in-progress' ORDER BY id`)).rows.map(toReplacement);
  }

  async recentReplacements(limit = 20): Promise<ReplacementRow[]> {
    return (await this.q('SELECT * FROM replacements ORDER BY id DESC LIMIT $1', [limit])).rows.map(toReplacement);
  }

  /** Locks the replacement's row and checks the fence: the write that follows is this holder's or none. */
  private async checkFence(replacementId: number, fence: Fence): Promise<void> {
    const r = (await this.q('SELECT lease_owner, lease_token FROM replacements WHERE id = $1 FOR UPDATE', [replacementId])).rows[0];
    if (!r || r['lease_owner'] !== fence.owner || Number(r['lease_token']) !== fence.token) {
      throw new LeaseLostError(`replacement ${replacementId}: the lease passed to ${String(r?.['lease_owner'] ?? 'nobody')} (token ${String(r?.['lease_token'])}); ${fence.owner} stops driving it`);
    }
  }

  async journal(replacementId: number, step: string, phase: JournalRow['phase'], patch: JournalPatch = {}, now = Date.now(), fence?: Fence): Promise<ReplacementRow> {
    return this.transaction(async () => {
      if (fence) await this.checkFence(replacementId, fence);
      await this.q('INSERT INTO journal (replacement_id, step, phase, at, detail) VALUES ($1, $2, $3, $4, $5)', [replacementId, step, phase, now, patch.detail ? JSON.stringify(patch.detail) : null]);
      const current = await this.replacement(replacementId);
      if (!current) throw new StoreError(`no replacement ${replacementId}`);
      const status = patch.status ?? current.status;
      const r = await this.q(
        `UPDATE replacements SET step = $1, status = $2, data = $3, new_instance_id = $4, error = $5, updated_at = $6, finished_at = COALESCE(finished_at, $7) WHERE id = $8 RETURNING *`,
        [
          step,
          status,
          JSON.stringify(patch.data ?? current.data),
          patch.newInstanceId === undefined ? current.newInstanceId : patch.newInstanceId,
          patch.error === undefined ? current.error : patch.error,
          now,
          status !== 'in-progress' ? now : null,
          replacementId,
        ],
      );
      return toReplacement(r.rows[0] as Row);
    });
  }

  async journalOf(replacementId: number): Promise<JournalRow[]> {
    return (await this.q('SELECT * FROM journal WHERE replacement_id = $1 ORDER BY id', [replacementId])).rows.map(toJournal);
  }

  async lastJournal(replacementId: number): Promise<JournalRow | null> {
    const r = (await this.q('SELECT * FROM journal WHERE replacement_id = $1 ORDER BY id DESC LIMIT 1', [replacementId])).rows[0];
    return r ? toJournal(r) : null;
  }

  async claimReplacement(id: number, owner: string, ttlMs: number, takeOverFrom: string | null = null): Promise<Fence | null> {
    const r = await this.q(
      `UPDATE replacements SET lease_token = lease_token + CASE WHEN lease_owner IS NOT DISTINCT FROM $2 THEN 0 ELSE 1 END,
         lease_owner = $2, lease_expires_at = pristine_now_ms() + $3
       WHERE id = $1 AND status = 'in-progress' AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at < pristine_now_ms() OR lease_owner = $4)
       RETURNING lease_token`,
      [id, owner, ttlMs, takeOverFrom],
    );
    const row = r.rows[0];
    return row ? { owner, token: Number(row['lease_token']) } : null;
  }

  async releaseLease(id: number, owner: string): Promise<void> {
    await this.q('UPDATE replacements SET lease_owner = NULL, lease_expires_at = NULL, next_poll_at = NULL, waiting_for = NULL WHERE id = $1 AND lease_owner = $2', [id, owner]);
  }

  async renewLeases(owner: string, ttlMs: number): Promise<void> {
    await this.q('UPDATE replacements SET lease_expires_at = pristine_now_ms() + $1 WHERE lease_owner = $2', [ttlMs, owner]);
  }

  async releaseLeases(owner: string): Promise<number> {
    return (await this.q('UPDATE replacements SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1', [owner])).rowCount ?? 0;
  }

  async schedule(id: number, nextPollAt: number, waitingFor: string | null, fence: Fence, data?: Record<string, unknown>): Promise<void> {
    await this.transaction(async () => {
      await this.checkFence(id, fence);
      await this.q('UPDATE replacements SET next_poll_at = $1, waiting_for = $2, data = COALESCE($3, data) WHERE id = $4', [Math.ceil(nextPollAt), waitingFor, data ? JSON.stringify(data) : null, id]);
    });
  }

  // --- cycles --------------------------------------------------------------------------------------

  async startCycle(now = Date.now()): Promise<number> {
    return Number((await this.q('INSERT INTO cycles (started_at) VALUES ($1) RETURNING id', [now])).rows[0]?.['id']);
  }

  async finishCycle(id: number, outcome: string, exitCode: number, summary: Record<string, unknown>, now = Date.now()): Promise<void> {
    await this.q('UPDATE cycles SET finished_at = $1, outcome = $2, exit_code = $3, summary = $4 WHERE id = $5', [now, outcome, exitCode, JSON.stringify(summary), id]);
  }

  async recentCycles(limit = 10): Promise<CycleRow[]> {
    return (await this.q('SELECT * FROM cycles ORDER BY id DESC LIMIT $1', [limit])).rows.map(toCycle);
  }

  async lastFinishedCycle(): Promise<{ finishedAt: number; outcome: string } | null> {
    const r = (await this.q('SELECT finished_at, outcome FROM cycles WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1')).rows[0];
    return r ? { finishedAt: Number(r['finished_at']), outcome: r['outcome'] as string } : null;
  }
}

/** The log from `from` on, from one sorted oldest first. */
function fromOn(sorted: readonly Activity[], from: number): Activity[] {
  let start = 0;
  while (start < sorted.length && (sorted[start] as Activity).at < from) start++;
  return sorted.slice(start);
}

/** Named leases whose expiry is the database's clock. */
class PostgresLeases implements LeasesPort {
  constructor(private readonly q: (sql: string, params?: unknown[]) => Promise<pg.QueryResult<Row>>) {}

  async claim(name: string, owner: string, ttlMs: number, takeOverFrom: string | null = null): Promise<Fence | null> {
    const r = await this.q(
      `INSERT INTO leases (name, owner, token, expires_at) VALUES ($1, $2, 1, pristine_now_ms() + $3)
       ON CONFLICT (name) DO UPDATE SET token = leases.token + CASE WHEN leases.owner IS NOT DISTINCT FROM excluded.owner THEN 0 ELSE 1 END,
         owner = excluded.owner, expires_at = excluded.expires_at
       WHERE leases.owner IS NULL OR leases.owner = excluded.owner OR leases.expires_at < pristine_now_ms() OR leases.owner = $4
       RETURNING token`,
      [name, owner, ttlMs, takeOverFrom],
    );
    const row = r.rows[0];
    return row ? { owner, token: Number(row['token']) } : null;
  }

  async renew(owner: string, ttlMs: number): Promise<string[]> {
    const r = await this.q('UPDATE leases SET expires_at = pristine_now_ms() + $1 WHERE owner = $2 AND expires_at >= pristine_now_ms() RETURNING name', [ttlMs, owner]);
    return r.rows.map((x) => x['name'] as string).sort();
  }

  async check(name: string, fence: Fence): Promise<void> {
    // FOR UPDATE: inside a transaction, the lease cannot pass to another holder before the writes it fences commit.
    const r = (await this.q('SELECT owner, token, expires_at >= pristine_now_ms() AS live FROM leases WHERE name = $1 FOR UPDATE', [name])).rows[0];
    if (!r || r['owner'] !== fence.owner || Number(r['token']) !== fence.token || r['live'] !== true) {
      throw new LeaseLostError(`lease ${name}: held by ${String(r?.['owner'] ?? 'nobody')} (token ${String(r?.['token'])}), not ${fence.owner} (token ${fence.token})`);
    }
  }

  async release(name: string, owner: string): Promise<void> {
    await this.q('UPDATE leases SET owner = NULL, expires_at = NULL WHERE name = $1 AND owner = $2', [name, owner]);
  }

  async releaseAll(owner: string): Promise<number> {
    return (await this.q('UPDATE leases SET owner = NULL, expires_at = NULL WHERE owner = $1', [owner])).rowCount ?? 0;
  }

  async held(owner: string): Promise<LeaseRow[]> {
    const r = await this.q('SELECT name, owner, token, expires_at FROM leases WHERE owner = $1 AND expires_at >= pristine_now_ms() ORDER BY name', [owner]);
    return r.rows.map((x) => ({ name: x['name'] as string, owner: x['owner'] as string, token: Number(x['token']), expiresAt: Number(x['expires_at']) }));
  }

  async list(prefix: string): Promise<LeaseState[]> {
    const r = await this.q(
      `SELECT name, owner, token, owner IS NOT NULL AND expires_at >= pristine_now_ms() AS live FROM leases WHERE left(name, $1) = $2 ORDER BY name`,
      [prefix.length, prefix],
    );
    return r.rows.map((x) => ({ name: x['name'] as string, owner: (x['owner'] as string | null) ?? null, token: Number(x['token']), live: x['live'] === true }));
  }
}
