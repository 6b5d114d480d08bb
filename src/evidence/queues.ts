import type { AuditInputs } from '../audit.js';
import { queueRegion, type ClientPool } from '../collect/clients.js';
import type { Activity, Scope } from '../core/facts.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { consumeOnce, type QueueContext } from './sources/event-queue/index.js';
import type { EvidenceStore } from './store-port.js';

export interface QueueDeps {
  inputs: AuditInputs;
  store: EvidenceStore;
  pool: ClientPool;
  logger: Logger;
  signal?: AbortSignal;
  /** the accounts audited, once known; before that, the config's list (or any, with an organisation) */
  accountIds?: ReadonlySet<string>;
}

/** The scopes whose events are worth reading: audited regions, and audited (or, before discovery, plausible) accounts. */
export function queueScopeFilter(inputs: AuditInputs, accountIds?: ReadonlySet<string>): (scope: Scope) => boolean {
  const regions = new Set(inputs.regions);
  const listed = !inputs.config.organization && inputs.config.accounts ? new Set(inputs.config.accounts.map((a) => a.id)) : null;
  return (s) => regions.has(s.region) && (accountIds ? accountIds.has(s.accountId) : !listed || listed.has(s.accountId));
}

export function queueContext(deps: QueueDeps, queueUrl: string, waitSeconds: number): QueueContext {
  const home = deps.inputs.regions[0] ?? 'us-east-1';
  return {
    sqs: deps.pool.sqs(queueRegion(queueUrl) ?? home),
    s3For: (region) => deps.pool.s3(region ?? deps.inputs.config.sources.s3.region ?? home),
    store: deps.store,
    logger: deps.logger.child({ queueUrl }),
    signal: deps.signal,
    now: Date.now,
    inScope: queueScopeFilter(deps.inputs, deps.accountIds),
    waitSeconds,
  };
}

/**
 * Reads every queue until it is empty (for `pristine run`, which has no consumer running between
 * cycles). What cannot be read stays on its queue; a queue that cannot be reached is logged and the
 * cycle goes on: push sources never vouch for an instance, so nothing is lost but speed.
 */
export async function drainQueues(deps: QueueDeps, maxReceives = 100): Promise<Activity[]> {
  const ingested: Activity[] = [];
  for (const url of deps.inputs.config.sources.queues) {
    const ctx = queueContext(deps, url, 1);
    try {
      let received = 0;
      let failed = 0;
      const before = ingested.length;
      for (let n = 0; n < maxReceives && !deps.signal?.aborted; n++) {
        const r = await consumeOnce(ctx, url);
        for (const a of r.ingested) ingested.push(a);
        received += r.received;
        failed += r.failed;
        if (r.received === 0) break;
      }
      deps.logger.info({ queueUrl: url, received, failed, newEvents: ingested.length - before }, 'event queue drained');
    } catch (err) {
      deps.logger.warn({ queueUrl: url, err: describeError(err) }, 'event queue could not be read; the audit goes on without it');
    }
  }
  return ingested;
}
