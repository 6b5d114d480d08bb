import { loadAuditInputs, type AuditInputs } from '../audit.js';
import { outcomeOf, runCycle } from '../cycle.js';
import { startHttpServer, parseListen } from '../daemon/http-server.js';
import { createMetrics } from '../daemon/metrics.js';
import { isStale, schedulePeriodMs, startSchedule, validateSchedule } from '../daemon/schedule.js';
import { describeError, InputError } from '../errors.js';
import type { Logger } from '../logger.js';
import { ClientPool, openStore, transportFromEnv } from './shared.js';

export interface DaemonFlags {
  policies: string;
  manifests: string;
  since: number | null;
  state: string;
  schedule: string;
  listen: string;
}

/**
 * `pristine daemon`: a cycle at start, then on the schedule, never two at once; /healthz and /metrics
 * on --listen; JSON logs. On SIGTERM or SIGINT it stops reading evidence (a cut-short audit records
 * nothing), starts no new step, parks a replacement that is waiting (the journal resumes it next
 * start), lets the running step finish, and exits 0.
 */
export async function runDaemon(flags: DaemonFlags, logger: Logger): Promise<number> {
  validateSchedule(flags.schedule);
  const listen = parseListen(flags.listen);
  let inputs: AuditInputs = await loadAuditInputs({ policiesDir: flags.policies, manifestsDir: flags.manifests });
  const store = openStore(flags.state);
  const metrics = createMetrics();
  const pool = new ClientPool(metrics.onAwsCall);
  const transport = transportFromEnv(logger);
  const stopping = new AbortController();
  const startedAt = Date.now();
  const period = schedulePeriodMs(flags.schedule);
  let lastFinished: number | null = null;

  const health = () => {
    try {
      store.check();
    } catch (err) {
      return { ok: false, reason: describeError(err) };
    }
    const details = { lastCycleAt: lastFinished === null ? null : new Date(lastFinished).toISOString(), startedAt: new Date(startedAt).toISOString() };
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
        inputs = await loadAuditInputs({ policiesDir: flags.policies, manifestsDir: flags.manifests });
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        logger.error({ err: err.message }, 'policies or manifests are invalid: this cycle uses the last valid ones');
      }
      const result = await runCycle({
        inputs,
        store,
        clientsFor: pool.get,
        transport,
        logger,
        dryRun: false,
        since: flags.since,
        signal: stopping.signal,
        hooks: { onReplacement: (outcome) => metrics.replacements.inc({ outcome }), onSlack: (outcome) => metrics.slack.inc({ outcome }) },
      });
      if (stopping.signal.aborted) {
        logger.info('cycle interrupted by shutdown: the next start reads again');
        return;
      }
      lastFinished = Date.now();
      metrics.cycles.inc({ outcome: outcomeOf(result.exitCode) });
      metrics.lastCycle.set(lastFinished / 1000);
      metrics.setVerdicts(result.report.summary);
      const byDetector: Record<string, number> = {};
      for (const i of result.report.instances) for (const f of i.findings) byDetector[f.detector] = (byDetector[f.detector] ?? 0) + 1;
      metrics.setFindings(byDetector);
      logger.info({ summary: result.report.summary, complete: result.report.complete, replacements: result.replacements.length, outbox: result.outbox }, 'cycle finished');
    } catch (err) {
      metrics.cycles.inc({ outcome: 'failed' });
      logger.error({ err: describeError(err) }, 'cycle failed');
    } finally {
      endTimer();
    }
  };

  // One guard for the start-up cycle and the scheduled ones: never two cycles at once.
  let running: Promise<void> | null = null;
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

  const server = await startHttpServer({ host: listen.host, port: listen.port, health, registry: metrics.registry, logger });
  logger.info({ listen: server.url, schedule: flags.schedule, state: flags.state }, 'pristine daemon started');
  const schedule = startSchedule(flags.schedule, guarded, logger);
  void guarded();

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
  await server.close();
  pool.destroy();
  store.close();
  logger.info('pristine daemon stopped');
  return 0;
}
