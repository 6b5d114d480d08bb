import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { SlackOutcome } from '../daemon/metrics.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { type StateStore } from '../state/ports.js';
import { OUTBOX_LEASE } from '../state/records.js';
import { driverName } from '../respond/worker.js';
import { NotifyError, RenderError } from './slack-transport.js';
import type { Transport } from './types.js';

export interface DrainResult {
  sent: number;
  failed: number;
  dropped: number;
  pending: number;
}

/** Drains in progress, per store: two callers (a cycle and a pushed event) never send the same row twice. */
const draining = new WeakMap<StateStore, Promise<unknown>>();

/**
 * Sends what waits in the outbox, oldest first; a drain that starts while another runs on the same
 * store waits for it, then sends what is left.
 */
export function drainOutbox(store: StateStore, transport: Transport, logger: Logger, onOutcome?: (o: SlackOutcome) => void, owner = PROCESS_OWNER): Promise<DrainResult> {
  const before = draining.get(store) ?? Promise.resolve();
  const run = before.then(
    () => drainLeased(store, transport, logger, onOutcome, owner),
    () => drainLeased(store, transport, logger, onOutcome, owner),
  );
  draining.set(store, run.catch(() => undefined));
  return run;
}

/** Who this process is, as the outbox's lease holder. */
const PROCESS_OWNER = driverName();
/** The outbox lease lasts this long unless renewed (before every message): a sender killed mid-drain holds it no longer. */
export const OUTBOX_LEASE_TTL_MS = 30_000;
/** How long a drain waits for another replica's drain to end before leaving the rest to the next one. */
const OUTBOX_WAIT_MS = 10_000;

/**
 * Sends under the outbox lease: one replica sends at a time, so no message goes out twice and a thread's
 * replies keep their order. A drain that cannot get the lease within OUTBOX_WAIT_MS sends nothing: what
 * waits is sent by the holder, or by the next drain.
 */
async function drainLeased(store: StateStore, transport: Transport, logger: Logger, onOutcome: ((o: SlackOutcome) => void) | undefined, owner: string): Promise<DrainResult> {
  const deadline = Date.now() + OUTBOX_WAIT_MS;
  while ((await store.leases.claim(OUTBOX_LEASE, owner, OUTBOX_LEASE_TTL_MS)) === null) {
    if (Date.now() >= deadline) {
      const pending = (await store.outboxStats()).pending;
      logger.info({ pending }, 'another replica is sending the outbox: what waits is left to it');
      return { sent: 0, failed: 0, dropped: 0, pending };
    }
    await sleep(250);
  }
  try {
    // Slack asked to wait (a 429's Retry-After): no drain of any replica tries before then, and so none
    // spends one of a message's MAX_ATTEMPTS on an answer known in advance.
    const notBefore = Number((await store.meta(SLACK_NOT_BEFORE)) ?? 0);
    if (Date.now() < notBefore) {
      const pending = (await store.outboxStats()).pending;
      logger.info({ pending, retryAt: new Date(notBefore).toISOString() }, 'Slack asked to wait: the outbox is sent after that');
      return { sent: 0, failed: 0, dropped: 0, pending };
    }
    return await drainNow(store, transport, logger, onOutcome, () => store.leases.claim(OUTBOX_LEASE, owner, OUTBOX_LEASE_TTL_MS).then((f) => f !== null));
  } finally {
    await store.leases.release(OUTBOX_LEASE, owner).catch(() => undefined);
  }
}

/** A message Slack keeps refusing for this many attempts is given up on, loudly. */
export const MAX_ATTEMPTS = 24;

/** Meta key: epoch ms before which Slack asked not to be sent to (its last 429's Retry-After). */
const SLACK_NOT_BEFORE = 'outbox:slack-not-before';

/**
 * Sends what waits in the outbox, oldest first. A message is marked sent only once Slack took it;
 * when Slack is down or rate-limits, sending stops there and the rest wait, in order, for the next
 * cycle. A reply waits for its parent. A message Slack will never take (unknown channel), one that
 * cannot be read or rendered, and one still refused after MAX_ATTEMPTS are dropped with their error
 * kept, so none can block the queue.
 */
async function drainNow(store: StateStore, transport: Transport, logger: Logger, onOutcome: ((o: SlackOutcome) => void) | undefined, stillHeld: () => Promise<boolean>): Promise<DrainResult> {
  const result: DrainResult = { sent: 0, failed: 0, dropped: 0, pending: 0 };
  const pending = await store.pending();
  for (const [n, m] of pending.entries()) {
    // Claim before send: a drain whose lease passed to another replica stops; the rest is that one's.
    if (!(await stillHeld())) {
      result.pending = pending.length - n;
      logger.warn({ waiting: result.pending }, 'the outbox lease passed to another replica: it sends the rest');
      break;
    }
    if (m.notice === null) {
      await store.markDropped(m.id, `stored notice cannot be read: ${m.unreadable ?? 'unknown'}`);
      result.dropped++;
      onOutcome?.('dropped');
      logger.error({ outboxId: m.id, channel: m.channel, err: m.unreadable }, 'a stored notice cannot be read; it is dropped');
      continue;
    }
    let threadTs: string | null = null;
    if (m.parentId !== null) {
      threadTs = await store.sentTs(m.parentId);
      if (threadTs === null && (await store.pending()).some((p) => p.id === m.parentId)) {
        result.pending = pending.length - n;
        break;
      }
    }
    try {
      const { ts } = await transport.send({ channel: m.channel, notice: m.notice, threadTs });
      await store.markSent(m.id, ts);
      result.sent++;
      onOutcome?.('sent');
    } catch (err) {
      const message = describeError(err);
      if (err instanceof NotifyError && !err.retryable) {
        await store.markDropped(m.id, message);
        result.dropped++;
        onOutcome?.('dropped');
        logger.error({ outboxId: m.id, channel: m.channel, err: message }, 'Slack refused a message; it is dropped');
        continue;
      }
      if (err instanceof RenderError) {
        // Not a delivery problem: this notice would fail the same way forever.
        await store.markDropped(m.id, message);
        result.dropped++;
        onOutcome?.('dropped');
        logger.error({ outboxId: m.id, channel: m.channel, notice: m.notice.type, err: message }, 'a notice could not be rendered; it is dropped');
        continue;
      }
      if (m.attempts + 1 >= MAX_ATTEMPTS) {
        await store.markDropped(m.id, `undeliverable after ${m.attempts + 1} attempts: ${message}`);
        result.dropped++;
        onOutcome?.('undeliverable');
        logger.error({ outboxId: m.id, channel: m.channel, attempts: m.attempts + 1, err: message }, 'could not deliver a Slack message: given up');
        result.pending = pending.length - n - 1;
        break;
      }
      await store.markFailed(m.id, message);
      if (err instanceof NotifyError && err.retryAfterSeconds !== null && err.retryAfterSeconds > 0) {
        await store.setMeta(SLACK_NOT_BEFORE, String(Date.now() + err.retryAfterSeconds * 1000));
      }
      result.failed++;
      result.pending = pending.length - n;
      onOutcome?.('failed');
      logger.warn({ outboxId: m.id, waiting: result.pending, err: message }, 'Slack unavailable; messages wait for the next cycle');
      break;
    }
  }
  return result;
}
