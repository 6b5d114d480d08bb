import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import pLimit from 'p-limit';
import type { ScopeClients } from '../collect/clients.js';
import type { Scope } from '../core/facts.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { LeaseLostError, type Fence, type ReplacementRow, type StateStore } from '../state/ports.js';
import { PollCache } from './polls.js';
import type { Replacer } from './replacement.js';

/** A driver's name in a lease: its host and process, and a nonce (a restarted process is another driver). */
export function driverName(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

/** A lease held by a process of this host that no longer runs: it died, and its lease can be taken at once. */
export function deadLocalDriver(owner: string | null, host = hostname()): boolean {
  if (!owner) return false;
  const [h, pid] = owner.split(':');
  if (h !== host || !pid || !/^\d+$/.test(pid)) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export interface WorkerDeps {
  store: StateStore;
  replacer: Replacer;
  clientsFor: (scope: Scope) => ScopeClients;
  logger: Logger;
  /** this driver's name in the leases it takes */
  owner: string;
  /** how long a lease lasts without renewal: a driver that dies loses its replacements within this */
  leaseTtlMs: number;
  /** replacements advanced side by side in one turn */
  parallel?: number;
  /** after each turn, what is in flight (for metrics, and to send the notices the turn queued) */
  onTurn?: (inFlight: readonly ReplacementRow[]) => void | Promise<void>;
  /** a replacement taken over from a driver that died or whose lease expired */
  onTakeover?: (row: ReplacementRow) => void;
}

export interface TurnSummary {
  /** replacements still in flight after the turn */
  inFlight: ReplacementRow[];
  /** held by another live driver */
  heldElsewhere: ReplacementRow[];
  /** whose last step failed past the point of no return (or whose rollback failed): they wait for a retry */
  stuck: ReplacementRow[];
  /** when the next one is due (epoch ms), or null when none is in flight */
  nextAt: number | null;
}

/**
 * Drives replacements in the background, beside the audit: every turn it takes the lease on each
 * replacement that is due, reads for all of those waiting at once (one DescribeInstanceStatus per 100
 * fresh instances, one DescribeTargetHealth per target group), and advances each by one step or one
 * poll. Nothing waits inside a turn: a replacement waiting on a 5-minute drain costs one call a poll,
 * and alerts, cycles and health checks go on meanwhile. Two drivers never advance the same replacement:
 * the lease says who drives it, and every journal write checks its fencing token.
 */
export class ReplacementWorker {
  private wakeUp: (() => void) | null = null;

  constructor(private readonly deps: WorkerDeps) {}

  /** One turn over every due replacement (or only these ids; `force`: every one, due or not). */
  async turn(now = Date.now(), only?: ReadonlySet<number>, force = false): Promise<TurnSummary> {
    const { store, owner, leaseTtlMs, logger } = this.deps;
    await store.renewLeases(owner, leaseTtlMs);
    const inFlight = (await store.inFlight()).filter((r) => !only || only.has(r.id));
    const claimed: Array<{ row: ReplacementRow; fence: Fence }> = [];
    for (const row of inFlight) {
      if (!force && (row.nextPollAt ?? 0) > now) continue;
      const takeOver = deadLocalDriver(row.leaseOwner) ? row.leaseOwner : null;
      const fence = await store.claimReplacement(row.id, owner, leaseTtlMs, takeOver);
      if (!fence) continue;
      if (row.leaseOwner && row.leaseOwner !== owner) {
        logger.warn({ replacement: row.id, from: row.leaseOwner, reason: takeOver ? 'its driver died' : 'its lease expired' }, 'replacement taken over');
        this.deps.onTakeover?.(row);
      }
      claimed.push({ row: (await store.replacement(row.id)) as ReplacementRow, fence });
    }
    const polls = new PollCache(this.deps.clientsFor);
    for (const { row } of claimed) {
      if (row.step === 'wait-running' && row.newInstanceId && row.accountId) polls.want({ accountId: row.accountId, region: row.region }, row.newInstanceId);
    }
    const limit = pLimit(this.deps.parallel ?? 16);
    await Promise.all(
      claimed.map(({ row, fence }) =>
        limit(async () => {
          try {
            await this.deps.replacer.turn(row, fence, polls);
          } catch (err) {
            if (err instanceof LeaseLostError) logger.warn({ replacement: row.id, err: err.message }, 'lease lost: another driver has this replacement');
            else logger.error({ replacement: row.id, err: describeError(err) }, 'replacement turn failed; it is tried again');
          }
        }),
      ),
    );
    const after = (await store.inFlight()).filter((r) => !only || only.has(r.id));
    await this.deps.onTurn?.(after);
    const heldElsewhere = after.filter((r) => r.leaseOwner !== null && r.leaseOwner !== owner && (r.leaseExpiresAt ?? 0) > Date.now());
    const stuck: ReplacementRow[] = [];
    for (const r of after) if ((await store.lastJournal(r.id))?.phase === 'fail') stuck.push(r);
    const times = after.map((r) => (heldElsewhere.includes(r) ? Math.max(r.nextPollAt ?? 0, r.leaseExpiresAt ?? 0) : (r.nextPollAt ?? Date.now())));
    return { inFlight: after, heldElsewhere, stuck, nextAt: times.length ? times.reduce((a, b) => Math.min(a, b)) : null };
  }

  /**
   * Turns until the signal, until `until`, or (`untilIdle`) until nothing is in flight but what failed
   * and waits for a retry (each is tried once more first: its first turn takes every replacement, due
   * or not, as a new `pristine run` retries what the last one left); sleeping between turns until the
   * next one is due (or `wake()`). Lets go of its leases when it stops.
   */
  async drive(opts: { untilIdle: boolean; until?: number; signal?: AbortSignal; only?: ReadonlySet<number> }): Promise<TurnSummary> {
    let last: TurnSummary = { inFlight: [], heldElsewhere: [], stuck: [], nextAt: null };
    const failedHere = new Set<number>();
    try {
      for (let n = 0; ; n++) {
        if (opts.signal?.aborted) break;
        last = await this.turn(Date.now(), opts.only, opts.untilIdle && n === 0);
        for (const r of last.stuck) failedHere.add(r.id);
        if (opts.untilIdle && last.inFlight.every((r) => failedHere.has(r.id) && last.stuck.includes(r))) break;
        if (opts.until !== undefined && Date.now() >= opts.until) break;
        const due = last.nextAt ?? Date.now() + 5_000;
        const limit = opts.until ?? Infinity;
        await this.sleep(Math.max(50, Math.min(due, limit, Date.now() + this.deps.leaseTtlMs / 3) - Date.now()), opts.signal);
      }
    } finally {
      await this.deps.store.releaseLeases(this.deps.owner);
    }
    return last;
  }

  /** Makes a sleeping `drive` take its next turn now (a cycle just started a replacement). */
  wake(): void {
    this.wakeUp?.();
  }

  private sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.wakeUp = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.wakeUp = done;
    });
  }
}
