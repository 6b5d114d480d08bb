import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { StateStore } from '../state/store.js';
import { NotifyError } from './slack-transport.js';
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
export function drainOutbox(store: StateStore, transport: Transport, logger: Logger, onOutcome?: (o: 'sent' | 'failed' | 'dropped') => void): Promise<DrainResult> {
  const before = draining.get(store) ?? Promise.resolve();
  const run = before.then(
    () => drainNow(store, transport, logger, onOutcome),
    () => drainNow(store, transport, logger, onOutcome),
  );
  draining.set(store, run.catch(() => undefined));
  return run;
}

/**
 * Sends what waits in the outbox, oldest first. A message is marked sent only once Slack took it;
 * when Slack is down or rate-limits, sending stops there and the rest wait, in order, for the next
 * cycle. A reply waits for its parent. A message Slack will never take (unknown channel) is dropped
 * with its error kept, so it cannot block the queue.
 */
async function drainNow(store: StateStore, transport: Transport, logger: Logger, onOutcome?: (o: 'sent' | 'failed' | 'dropped') => void): Promise<DrainResult> {
  const result: DrainResult = { sent: 0, failed: 0, dropped: 0, pending: 0 };
  const pending = store.pending();
  for (const [n, m] of pending.entries()) {
    let threadTs: string | null = null;
    if (m.parentId !== null) {
      threadTs = store.sentTs(m.parentId);
      if (threadTs === null && store.pending().some((p) => p.id === m.parentId)) {
        result.pending = pending.length - n;
        break;
      }
    }
    try {
      const { ts } = await transport.send({ channel: m.channel, notice: m.notice, threadTs });
      store.markSent(m.id, ts);
      result.sent++;
      onOutcome?.('sent');
    } catch (err) {
      const message = describeError(err);
      if (err instanceof NotifyError && !err.retryable) {
        store.markDropped(m.id, message);
        result.dropped++;
        onOutcome?.('dropped');
        logger.error({ outboxId: m.id, channel: m.channel, err: message }, 'Slack refused a message; it is dropped');
        continue;
      }
      store.markFailed(m.id, message);
      result.failed++;
      result.pending = pending.length - n;
      onOutcome?.('failed');
      logger.warn({ outboxId: m.id, waiting: result.pending, err: message }, 'Slack unavailable; messages wait for the next cycle');
      break;
    }
  }
  return result;
}
