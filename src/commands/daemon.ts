import { setTimeout as sleep } from 'node:timers/promises';
import { loadAuditInputs, type AuditInputs, type ScopeAudit } from '../audit.js';
import { scopeKey } from '../core/facts.js';
import { outcomeOf, runCycle } from '../cycle.js';
import { queueContext } from '../evidence/queues.js';
import { consumeOnce } from '../evidence/sources/event-queue/index.js';
import { drainOutbox } from '../notify/outbox.js';
import { judgePushed } from '../pushed.js';
import { Replacer } from '../respond/replacement.js';
import { ReplacementWorker, driverName } from '../respond/worker.js';
import { startHttpServer, parseListen } from '../daemon/http-server.js';
import { createMetrics } from '../daemon/metrics.js';
import { isStale, schedulePeriodMs, startSchedule, validateSchedule } from '../daemon/schedule.js';
import { describeError, InputError } from '../errors.js';
import type { Logger } from '../logger.js';
import { createPool, openStore, transportFromEnv } from './shared.js';
import { REPLICA_LEASE_PREFIX, ScopeLeases } from '../daemon/scope-leases.js';

/** Long polling: a receive waits this long for a message, the most SQS allows. */
const LONG_POLL_SECONDS = 20;

export interface DaemonFlags {
  config?: string;
  concurrency?: number;
  policies: string;
  manifests: string;
  since: number | null;
  state: string;
  schedule: string;
  listen: string;
}

/**
 * `pristine daemon`: a cycle at start, then on the schedule, never two at once; /healthz and /metrics
 * on --listen; JSON logs; replacements driven in the background by a worker. On SIGTERM or SIGINT it
 * stops reading evidence (a cut-short audit records nothing), lets the running turn of each replacement
 * and the outbox drains the worker started finish, releases its leases (another driver may take them
 * at once; the journal resumes them) and exits 0.
 */
/** What a load of the user's files holds (policies, manifests, configuration), as one string to compare loads by. */
function contentOf(i: AuditInputs): string {
  return JSON.stringify([i.policies, [...i.manifests], i.regions, i.config, i.configFile]);
}

/**
 * The inputs of the next cycle: the new load when the files changed, else the same objects as before
 * (what was worked out from them, diffs and attribution, carries over).
 */
export function nextInputs(current: { inputs: AuditInputs; content: string }, loaded: AuditInputs): { inputs: AuditInputs; content: string } {
  const content = contentOf(loaded);
  return content === current.content ? current : { inputs: loaded, content };
}

export function firstInputs(inputs: AuditInputs): { inputs: AuditInputs; content: string } {
  return { inputs, content: contentOf(inputs) };
}

export async function runDaemon(flags: DaemonFlags, logger: Logger): Promise<number> {
  validateSchedule(flags.schedule);
  const listen = parseListen(flags.listen);
  const load = () => loadAuditInputs({ policiesDir: flags.policies, manifestsDir: flags.manifests, configFile: flags.config });
  let inputs: AuditInputs = await load();
  let loadedInputs = firstInputs(inputs);
  const store = await openStore(flags.state);
  const metrics = createMetrics();
  /** this replica: the owner of every lease it takes (scopes, itself, the outbox, replacements) */
  const owner = driverName();
  const leaseTtlMs = inputs.config.leaseTtl;
  const scopeLeases = new ScopeLeases(store, owner, leaseTtlMs, {
    onTakeover: (scope, from) => {
      metrics.leaseTakeovers.inc({ kind: 'audit' });
      logger.warn({ scope: scopeKey(scope), from }, 'scope taken over from a replica whose lease expired');
    },
  });
  let leasesHeld: string[] = [];
  let replacementsHeld = 0;
  const pool = await createPool(metrics.onAwsCall);
  /** the last cycle's scopes: pushed events are judged against them between cycles */
  let lastScopes = new Map<string, ScopeAudit>();
  let noticesQueued = false;
  /** outbox drains the worker started and does not wait for: a stop waits for them (a drain waits at most OUTBOX_WAIT_MS for the lease) */
  const drains = new Set<Promise<void>>();
  const replacer = new Replacer({
    store,
    clientsFor: pool.get,
    logger,
    onOutcome: (outcome) => metrics.replacements.inc({ outcome }),
    onNotice: () => (noticesQueued = true),
  });
  const worker = new ReplacementWorker({
    store,
    replacer,
    clientsFor: pool.get,
    logger,
    owner,
    leaseTtlMs,
    onTakeover: () => metrics.leaseTakeovers.inc({ kind: 'replacement' }),
    onTurn: async (inFlight) => {
      metrics.setInFlight(inFlight.map((r) => r.step));
      replacementsHeld = inFlight.filter((r) => r.leaseOwner === owner).length;
      metrics.setLeasesHeld(leasesHeld, replacementsHeld);
      // A replacement's progress goes to its Slack thread now, not at the next cycle; the worker does not
      // wait for it (another replica may hold the outbox for a while: the drain waits for it, the turns go on).
      if (noticesQueued) {
        noticesQueued = false;
        const drain = drainOutbox(store, transport, logger, (outcome) => metrics.slack.inc({ outcome }), owner)
          .then(() => undefined)
          .catch((err: unknown) => logger.warn({ err: describeError(err) }, 'the outbox could not be sent; it is tried again'))
          .finally(() => drains.delete(drain));
        drains.add(drain);
      }
    },
  });
  let auditedAccounts: Set<string> | undefined;
  const transport = transportFromEnv(logger);
  const stopping = new AbortController();
  const startedAt = Date.now();
  const period = schedulePeriodMs(flags.schedule);
  let lastFinished: number | null = null;

  const health = async () => {
    const storeInfo = { kind: store.kind, location: store.location };
    try {
      await store.check();
    } catch (err) {
      return { ok: false, reason: describeError(err), details: { store: storeInfo } };
    }
    const details = {
      lastCycleAt: lastFinished === null ? null : new Date(lastFinished).toISOString(),
      startedAt: new Date(startedAt).toISOString(),
      store: storeInfo,
      replica: owner,
      leases: leasesHeld.filter((n) => !n.startsWith(REPLICA_LEASE_PREFIX)),
      replacementsDriven: replacementsHeld,
    };
    if (isStale(lastFinished, startedAt, period, Date.now())) {
      return { ok: false, reason: lastFinished === null ? 'no cycle has finished yet' : `the last cycle finished at ${details.lastCycleAt}: too long ago`, details };
    }
    return { ok: true, details };
  };

  const cycle = async () => {
    if (stopping.signal.aborted) return;
    const endTimer = metrics.cycleDuration.startTimer();
    try {
      try {
        const loaded = await load();
        // Unchanged files keep their objects: what was worked out from them (diffs, attribution) carries over.
        loadedInputs = nextInputs(loadedInputs, loaded);
        inputs = loadedInputs.inputs;
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        logger.error({ err: err.message }, 'policies or manifests are invalid: this cycle uses the last valid ones');
      }
      const result = await runCycle({
        inputs,
        store,
        pool,
        concurrency: flags.concurrency,
        transport,
        logger,
        dryRun: false,
        since: flags.since,
        signal: stopping.signal,
        previous: lastScopes,
        scopeLeases,
        owner,
        hooks: { onReplacement: (outcome) => metrics.replacements.inc({ outcome }), onSlack: (outcome) => metrics.slack.inc({ outcome }) },
      });
      if (stopping.signal.aborted) {
        logger.info('cycle interrupted by shutdown: the next start reads again');
        return;
      }
      lastFinished = Date.now();
      worker.wake();
      lastScopes = new Map(result.scopes.map((s) => [scopeKey(s), s]));
      // Every account of the deployment, not only those of this replica's scopes: what the queues bring goes into
      // the shared log, and the replica auditing its scope judges it.
      // Accounts that could not all be found this time (an organisation not listed): the queues keep taking
      // in the ones known before (any, before a first full list) rather than dropping what they bring.
      if (result.accountIds) auditedAccounts = new Set(result.accountIds);
      metrics.cycles.inc({ outcome: outcomeOf(result.exitCode) });
      metrics.lastCycle.set(lastFinished / 1000);
      metrics.setVerdicts(result.report.summary);
      const byDetector: Record<string, number> = {};
      for (const i of result.report.instances) for (const f of i.findings) byDetector[f.detector] = (byDetector[f.detector] ?? 0) + 1;
      metrics.setFindings(byDetector);
      leasesHeld = (await store.leases.held(owner)).map((l) => l.name);
      metrics.setLeasesHeld(leasesHeld, replacementsHeld);
      logger.info({ startedAt: result.report.startedAt, scopes: result.scopes.map((s) => scopeKey(s)), summary: result.report.summary, complete: result.report.complete, replacements: result.replacements.length, outbox: result.outbox, carriedOver: result.scopes.filter((s) => s.judge?.carried).length }, 'cycle finished');
    } catch (err) {
      metrics.cycles.inc({ outcome: 'failed' });
      logger.error({ err: describeError(err) }, 'cycle failed');
    } finally {
      endTimer();
    }
  };

  // One guard for the start-up cycle and the scheduled ones: never two cycles at once.
  let running = null as Promise<void> | null; // (not narrowed to null: the closures assign it)
  const guarded = async () => {
    if (running) {
      logger.info('a cycle is still running: this tick is skipped');
      return;
    }
    running = cycle().finally(() => {
      running = null;
    });
    await running;
  };

  /**
   * One consumer per event queue, beside the schedule: long-polls, puts what arrives in the evidence
   * log, and judges the instances it names at once. A queue that fails is retried after a pause; the
   * scheduled cycles go on whatever the queues do.
   */
  const consume = async (queueUrl: string) => {
    let pause = 1000;
    while (!stopping.signal.aborted) {
      try {
        const ctx = queueContext({ inputs, store, pool, logger, signal: stopping.signal, accountIds: auditedAccounts }, queueUrl, LONG_POLL_SECONDS);
        const r = await consumeOnce(ctx, queueUrl);
        pause = 1000;
        metrics.queueMessages.inc({ outcome: 'ingested' }, r.received - r.failed);
        metrics.queueMessages.inc({ outcome: 'failed' }, r.failed);
        metrics.pushedEvents.inc(r.ingested.length);
        if (r.ingested.length > 0) {
          await judgePushed({ activities: r.ingested, scopes: lastScopes, inputs, store, transport, logger, owner, onSlack: (outcome) => metrics.slack.inc({ outcome }) });
        }
      } catch (err) {
        if (stopping.signal.aborted) break;
        logger.warn({ queueUrl, err: describeError(err), retryInMs: pause }, 'event queue could not be read');
        await sleep(pause, undefined, { signal: stopping.signal }).catch(() => undefined);
        pause = Math.min(pause * 2, 60_000);
      }
    }
  };

  // Alive before the first cycle, and kept so every third of the TTL: the other replicas count this one
  // in their share, and the scopes it audits stay its own while it lives.
  const beat = async () => {
    try {
      leasesHeld = await scopeLeases.heartbeat();
      metrics.setLeasesHeld(leasesHeld, replacementsHeld);
      // A replica died (its leases expired) or joined: take over or hand over its share now, not at the next tick.
      if (!running && !stopping.signal.aborted && (await scopeLeases.shouldRebalance())) {
        logger.info('scopes to take over or to hand over: a cycle now');
        void guarded();
      }
    } catch (err) {
      logger.warn({ err: describeError(err) }, 'leases could not be renewed');
    }
  };
  await beat();
  // One renewal at a time; the one in flight when the daemon stops is awaited before its leases go, or
  // it would claim this replica's lease again after the release.
  let beating = null as Promise<void> | null; // (not narrowed to null: the interval assigns it)
  const heartbeat = setInterval(() => {
    if (beating) return;
    beating = beat().finally(() => {
      beating = null;
    });
  }, Math.max(1000, Math.floor(leaseTtlMs / 3)));

  const server = await startHttpServer({ host: listen.host, port: listen.port, health, registry: metrics.registry, logger });
  logger.info({ listen: server.url, schedule: flags.schedule, state: store.location, store: store.kind, replica: owner }, 'pristine daemon started');
  const schedule = startSchedule(flags.schedule, guarded, logger);
  void guarded();
  const consumers = inputs.config.sources.queues.map((url) => consume(url));
  // Replacements run beside the schedule: detection, alerts and /healthz never wait for one.
  const driving = (async () => {
    while (!stopping.signal.aborted) {
      try {
        await worker.drive({ untilIdle: false, signal: stopping.signal });
      } catch (err) {
        logger.error({ err: describeError(err) }, 'replacement worker failed; it starts again');
        await sleep(5_000, undefined, { signal: stopping.signal }).catch(() => undefined);
      }
    }
  })();

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      if (stopping.signal.aborted) return;
      logger.info({ signal }, 'stopping: finishing or parking the current step');
      stopping.abort();
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await schedule.stop();
  if (running) await running;
  await Promise.all([...consumers, driving]);
  clearInterval(heartbeat);
  await beating;
  // A drain still sending holds the outbox lease: it lets go of it itself, before the store closes.
  await Promise.all([...drains]);
  // A clean stop lets go of every lease at once: another replica takes the scopes at its next cycle.
  const released = await scopeLeases.releaseAll().catch(() => 0);
  logger.info({ released }, 'leases released');
  await server.close();
  pool.destroy();
  await store.close();
  logger.info('pristine daemon stopped');
  return 0;
}
