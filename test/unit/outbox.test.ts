// The outbox drain against each store (SQLite, and a fresh PostgreSQL database where its binaries are):
// order, threads, retries, what is dropped and why, and two replicas draining one outbox.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { drainOutbox, MAX_ATTEMPTS } from '../../src/notify/outbox.js';
import { NotifyError, RenderError } from '../../src/notify/slack-transport.js';
import type { Notice, Transport } from '../../src/notify/types.js';
import { openStateStore } from '../../src/state/open.js';
import type { StateStore } from '../../src/state/ports.js';
import { freshStore, STORE_BACKENDS, type StoreBackend } from '../support/postgres.js';

const logger = pino({ level: 'silent' });

interface Sent {
  channel: string;
  message: string;
  threadTs: string | null;
}

/**
 * A Transport that records what it sends and answers `ts-<message>`. `failWith` decides, per call,
 * whether this attempt throws instead (a call that throws sends nothing).
 */
class FakeTransport implements Transport {
  readonly sent: Sent[] = [];
  readonly attempts: string[] = [];
  failWith: (message: string, attempt: number) => Error | null = () => null;

  async send(input: { channel: string; notice: Notice; threadTs?: string | null }): Promise<{ ts: string | null }> {
    const message = input.notice.type === 'progress' ? input.notice.message : input.notice.type;
    this.attempts.push(message);
    const err = this.failWith(message, this.attempts.filter((m) => m === message).length);
    if (err) throw err;
    this.sent.push({ channel: input.channel, message, threadTs: input.threadTs ?? null });
    return { ts: `ts-${message}` };
  }
}

const retryable = () => new NotifyError('Slack chat.postMessage failed: rate limited', { retryable: true, code: 'rate_limited' });
const refused = () => new NotifyError('Slack chat.postMessage failed: channel_not_found', { retryable: false, code: 'channel_not_found' });

function progress(message: string): Notice {
  return { type: 'progress', instanceId: 'i-0abc', step: 'launch', outcome: 'progress', message };
}

let dir: string;
/** where the store is: a SQLite file, or a PostgreSQL database (to open it again as another replica) */
let where: string;
let store: StateStore;

/** Writes a stored notice as it is, behind the store's back (what an older or broken writer left). */
async function overwriteNotice(backend: StoreBackend, id: number, text: string): Promise<void> {
  if (backend === 'sqlite') {
    (store as unknown as { db: { prepare(sql: string): { run(...a: unknown[]): void } } }).db.prepare('UPDATE outbox SET notice = ? WHERE id = ?').run(text, id);
    return;
  }
  const client = new pg.Client({ connectionString: where });
  await client.connect();
  try {
    await client.query('UPDATE outbox SET notice = $1 WHERE id = $2', [text, id]);
  } finally {
    await client.end();
  }
}

describe.each(STORE_BACKENDS)('the outbox on $backend', ({ backend, missing }) => {
  if (missing) {
    it.skip(`skipped: ${missing}`, () => undefined);
    return;
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pristine-outbox-'));
    where = await freshStore(backend, path.join(dir, 'state.db'));
    store = await openStateStore(where);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('drainOutbox', () => {
    it('sends every pending message once, in the order queued', async () => {
      // Prepare
      const transport = new FakeTransport();
      await store.enqueue('#ops', progress('m1'));
      await store.enqueue('#sec', progress('m2'));
      await store.enqueue('#ops', progress('m3'));

      // Act
      const result = await drainOutbox(store, transport, logger);

      // Assess
      expect(transport.sent).toEqual([
        { channel: '#ops', message: 'm1', threadTs: null },
        { channel: '#sec', message: 'm2', threadTs: null },
        { channel: '#ops', message: 'm3', threadTs: null },
      ]);
      expect(result).toEqual({ sent: 3, failed: 0, dropped: 0, pending: 0 });
      expect(await store.pending()).toEqual([]);
      expect(await store.outboxStats()).toEqual({ pending: 0, sent: 3, dropped: 0 });
    });

    it('records the ts Slack gave each message', async () => {
      // Prepare
      const transport = new FakeTransport();
      const id = await store.enqueue('#ops', progress('alert'));

      // Act
      await drainOutbox(store, transport, logger);

      // Assess
      expect(await store.sentTs(id)).toBe('ts-alert');
    });

    it('threads a reply under its parent’s ts', async () => {
      // Prepare
      const transport = new FakeTransport();
      const alert = await store.enqueue('#ops', progress('alert'));
      await store.enqueue('#ops', progress('unrelated'));
      await store.enqueue('#ops', progress('reply'), alert);

      // Act
      await drainOutbox(store, transport, logger);

      // Assess
      expect(transport.sent).toEqual([
        { channel: '#ops', message: 'alert', threadTs: null },
        { channel: '#ops', message: 'unrelated', threadTs: null },
        { channel: '#ops', message: 'reply', threadTs: 'ts-alert' },
      ]);
    });

    it('threads a reply under a parent sent in an earlier drain', async () => {
      // Prepare
      const transport = new FakeTransport();
      const alert = await store.enqueue('#ops', progress('alert'));
      await drainOutbox(store, transport, logger);
      await store.enqueue('#ops', progress('reply'), alert);

      // Act
      await drainOutbox(store, transport, logger);

      // Assess
      expect(transport.sent.map((s) => [s.message, s.threadTs])).toEqual([
        ['alert', null],
        ['reply', 'ts-alert'],
      ]);
    });

    it('stops at a retryable failure: the rest wait, in order, and the next drain sends them exactly once', async () => {
      // Prepare: m2 is rate limited on its first attempt only
      const transport = new FakeTransport();
      transport.failWith = (m, attempt) => (m === 'm2' && attempt === 1 ? retryable() : null);
      const ids: number[] = [];
      for (const m of ['m1', 'm2', 'm3', 'm4']) ids.push(await store.enqueue('#ops', progress(m)));
      await store.enqueue('#ops', progress('m2-reply'), ids[1]);

      // Act
      const first = await drainOutbox(store, transport, logger);
      const waiting = await store.pending();
      const second = await drainOutbox(store, transport, logger);

      // Assess
      expect(first).toEqual({ sent: 1, failed: 1, dropped: 0, pending: 4 });
      expect(waiting.map((m) => [(m.notice as { message: string }).message, m.attempts, m.lastError])).toEqual([
        ['m2', 1, expect.stringContaining('Slack chat.postMessage failed: rate limited')],
        ['m3', 0, null],
        ['m4', 0, null],
        ['m2-reply', 0, null],
      ]);
      expect(second).toEqual({ sent: 4, failed: 0, dropped: 0, pending: 0 });
      expect(transport.attempts).toEqual(['m1', 'm2', 'm2', 'm3', 'm4', 'm2-reply']);
      expect(transport.sent.map((s) => [s.message, s.threadTs])).toEqual([
        ['m1', null],
        ['m2', null],
        ['m3', null],
        ['m4', null],
        ['m2-reply', 'ts-m2'],
      ]);
      expect(await store.outboxStats()).toEqual({ pending: 0, sent: 5, dropped: 0 });
    });

    it("waits out Slack's Retry-After: no drain tries before then, so none spends an attempt on it", async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      try {
        vi.setSystemTime(Date.parse('2026-12-03T12:00:00Z'));
        const transport = new FakeTransport();
        transport.failWith = (m, attempt) =>
          m === 'm1' && attempt === 1 ? new NotifyError('Slack chat.postMessage failed: rate limited (retry after 30 s)', { retryable: true, code: 'rate_limited', retryAfterSeconds: 30 }) : null;
        await store.enqueue('#ops', progress('m1'));
        await store.enqueue('#ops', progress('m2'));

        const limited = await drainOutbox(store, transport, logger);
        vi.setSystemTime(Date.parse('2026-12-03T12:00:29Z'));
        const early = await drainOutbox(store, transport, logger);
        const attemptsBefore = (await store.pending()).map((m) => m.attempts);
        vi.setSystemTime(Date.parse('2026-12-03T12:00:31Z'));
        const after = await drainOutbox(store, transport, logger);

        expect(limited).toEqual({ sent: 0, failed: 1, dropped: 0, pending: 2 });
        expect(early).toEqual({ sent: 0, failed: 0, dropped: 0, pending: 2 });
        expect(attemptsBefore).toEqual([1, 0]);
        expect(after).toEqual({ sent: 2, failed: 0, dropped: 0, pending: 0 });
        expect(transport.attempts).toEqual(['m1', 'm1', 'm2']);
      } finally {
        vi.useRealTimers();
      }
    });

    it('treats an error that is not a NotifyError as retryable', async () => {
      // Prepare
      const transport = new FakeTransport();
      transport.failWith = (m) => (m === 'm1' ? new Error('socket hang up') : null);
      await store.enqueue('#ops', progress('m1'));
      await store.enqueue('#ops', progress('m2'));

      // Act
      const result = await drainOutbox(store, transport, logger);

      // Assess
      expect(result).toEqual({ sent: 0, failed: 1, dropped: 0, pending: 2 });
      expect(transport.attempts).toEqual(['m1']);
      expect(await store.pending()).toHaveLength(2);
    });

    it('drops a message Slack will never take and goes on with the rest', async () => {
      // Prepare
      const transport = new FakeTransport();
      transport.failWith = (m) => (m === 'm2' ? refused() : null);
      const ids: number[] = [];
      for (const m of ['m1', 'm2', 'm3']) ids.push(await store.enqueue('#ops', progress(m)));
      const outcomes: string[] = [];

      // Act
      const first = await drainOutbox(store, transport, logger, (o) => outcomes.push(o));
      const second = await drainOutbox(store, transport, logger);

      // Assess
      expect(first).toEqual({ sent: 2, failed: 0, dropped: 1, pending: 0 });
      expect(outcomes).toEqual(['sent', 'dropped', 'sent']);
      expect(transport.sent.map((s) => s.message)).toEqual(['m1', 'm3']);
      expect(await store.sentTs(ids[1]!)).toBeNull();
      expect(await store.outboxStats()).toEqual({ pending: 0, sent: 2, dropped: 1 });
      expect(second).toEqual({ sent: 0, failed: 0, dropped: 0, pending: 0 });
      expect(transport.attempts).toEqual(['m1', 'm2', 'm3']);
    });

    it('sends a reply whose parent was dropped without a thread', async () => {
      // Prepare
      const transport = new FakeTransport();
      transport.failWith = (m) => (m === 'alert' ? refused() : null);
      const alert = await store.enqueue('#gone', progress('alert'));
      await store.enqueue('#gone', progress('reply'), alert);

      // Act
      const result = await drainOutbox(store, transport, logger);

      // Assess
      expect(result).toEqual({ sent: 1, failed: 0, dropped: 1, pending: 0 });
      expect(transport.sent).toEqual([{ channel: '#gone', message: 'reply', threadTs: null }]);
    });

    it('sends a reply whose parent was sent without a ts as a plain message', async () => {
      // Prepare
      const transport = new FakeTransport();
      const alert = await store.enqueue('#ops', progress('alert'));
      await store.markSent(alert, null);
      await store.enqueue('#ops', progress('reply'), alert);

      // Act
      await drainOutbox(store, transport, logger);

      // Assess
      expect(transport.sent).toEqual([{ channel: '#ops', message: 'reply', threadTs: null }]);
    });

    it('never sends a message twice across drains, whatever fails when', async () => {
      // Prepare: every message fails retryably on its first attempt, m3 is refused outright
      const transport = new FakeTransport();
      transport.failWith = (m, attempt) => (m === 'm3' ? refused() : attempt === 1 ? retryable() : null);
      const ids: number[] = [];
      for (const m of ['m1', 'm2', 'm3', 'm4', 'm5']) ids.push(await store.enqueue('#ops', progress(m), m === 'm4' ? (ids[0] ?? null) : null));

      // Act
      const results = [];
      for (let k = 0; k < 8; k++) results.push(await drainOutbox(store, transport, logger));

      // Assess
      expect(transport.sent.map((s) => s.message)).toEqual(['m1', 'm2', 'm4', 'm5']);
      expect(transport.sent.find((s) => s.message === 'm4')?.threadTs).toBe('ts-m1');
      expect(await store.outboxStats()).toEqual({ pending: 0, sent: 4, dropped: 1 });
      expect(results.at(-1)).toEqual({ sent: 0, failed: 0, dropped: 0, pending: 0 });
      const sentPerDrain = results.map((r) => r.sent);
      expect(sentPerDrain.reduce((a, b) => a + b, 0)).toBe(4);
    });

    it('does nothing on an empty outbox', async () => {
      // Prepare
      const transport = new FakeTransport();

      // Act
      const result = await drainOutbox(store, transport, logger);

      // Assess
      expect(result).toEqual({ sent: 0, failed: 0, dropped: 0, pending: 0 });
      expect(transport.attempts).toEqual([]);
    });
  });

  describe('drainOutbox: nothing blocks the queue for good', () => {
    it('drops a notice that cannot be rendered, keeps its error, and sends the rest', async () => {
      // Prepare
      const transport = new FakeTransport();
      transport.failWith = (m) => (m === 'poison' ? new RenderError('progress could not be rendered: boom') : null);
      const ids: number[] = [];
      for (const m of ['m1', 'poison', 'm3']) ids.push(await store.enqueue('#ops', progress(m)));
      const outcomes: string[] = [];

      // Act
      const result = await drainOutbox(store, transport, logger, (o) => outcomes.push(o));

      // Assess
      expect(result).toEqual({ sent: 2, failed: 0, dropped: 1, pending: 0 });
      expect(transport.sent.map((s) => s.message)).toEqual(['m1', 'm3']);
      expect(outcomes).toEqual(['sent', 'dropped', 'sent']);
      expect(await store.outboxStats()).toEqual({ pending: 0, sent: 2, dropped: 1 });
      expect(ids).toHaveLength(3);
    });

    it('drops a stored notice that is not even JSON', async () => {
      // Prepare
      const transport = new FakeTransport();
      const bad = await store.enqueue('#ops', progress('m1'));
      await store.enqueue('#ops', progress('m2'));
      await overwriteNotice(backend, bad, '{not json');

      // Act
      const result = await drainOutbox(store, transport, logger);

      // Assess
      expect(result).toMatchObject({ sent: 1, dropped: 1 });
      expect(transport.sent.map((s) => s.message)).toEqual(['m2']);
    });

    it(`gives a message up after ${MAX_ATTEMPTS} failed attempts, loudly, and goes on next time`, async () => {
      // Prepare
      const transport = new FakeTransport();
      transport.failWith = (m) => (m === 'm1' ? retryable() : null);
      await store.enqueue('#ops', progress('m1'));
      await store.enqueue('#ops', progress('m2'));
      const outcomes: string[] = [];

      // Act
      for (let n = 0; n < MAX_ATTEMPTS; n++) await drainOutbox(store, transport, logger, (o) => outcomes.push(o));
      const after = await drainOutbox(store, transport, logger, (o) => outcomes.push(o));

      // Assess
      expect(outcomes.filter((o) => o === 'failed')).toHaveLength(MAX_ATTEMPTS - 1);
      expect(outcomes).toContain('undeliverable');
      expect(after).toMatchObject({ sent: 1 });
      expect(transport.sent.map((s) => s.message)).toEqual(['m2']);
    });

    it('two replicas draining one outbox at once send each message exactly once, in order', async () => {
      // Prepare: a second connection to the same file is a second replica, with a name of its own
      const other = await openStateStore(where);
      try {
        const slow = new (class extends FakeTransport {
          override async send(input: { channel: string; notice: Notice; threadTs?: string | null }) {
            await new Promise((r) => setTimeout(r, 5));
            return super.send(input);
          }
        })();
        for (let n = 0; n < 20; n++) await store.enqueue('#ops', progress(`m${n}`));

        // Act
        const [a, b] = await Promise.all([drainOutbox(store, slow, logger, undefined, 'host:1:a'), drainOutbox(other, slow, logger, undefined, 'host:2:b')]);

        // Assess
        expect(slow.sent.map((m) => m.message)).toEqual(Array.from({ length: 20 }, (_, n) => `m${n}`));
        expect(a.sent + b.sent).toBe(20);
        expect(await store.outboxStats()).toEqual({ pending: 0, sent: 20, dropped: 0 });
      } finally {
        await other.close();
      }
    });

    it('sends nothing while another replica holds the outbox, and leaves what waits to it', async () => {
      // Prepare
      await store.enqueue('#ops', progress('m1'));
      await store.leases.claim('outbox', 'host:9:holder', 60_000);
      const transport = new FakeTransport();

      // Act
      const started = Date.now();
      const result = await drainOutbox(store, transport, logger, undefined, 'host:1:a');

      // Assess
      expect(result).toEqual({ sent: 0, failed: 0, dropped: 0, pending: 1 });
      expect(transport.sent).toEqual([]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(9_000);
    }, 20_000);
  });
});
