import { existsSync } from 'node:fs';
import { loadAuditInputs } from '../audit.js';
import { runCycle, type CycleResult } from '../cycle.js';
import type { Logger } from '../logger.js';
import { renderTable } from '../report/table.js';
import { actionLabel } from '../notify/slack-messages.js';
import { drainOutbox } from '../notify/outbox.js';
import { Replacer } from '../respond/replacement.js';
import { ReplacementWorker, driverName } from '../respond/worker.js';
import { isPostgresUrl } from '../state/open.js';
import { createPool, openStore, transportFromEnv } from './shared.js';

export interface RunFlags {
  config?: string;
  concurrency?: number;
  policies: string;
  manifests: string;
  since: number | null;
  format: 'table' | 'json';
  state: string;
  dryRun: boolean;
  /** how long to drive replacements after the cycle (ms); null: until they are all done */
  wait: number | null;
}

/** The actions of a cycle, for the terminal. */
export function renderActions(result: CycleResult, dryRun: boolean): string {
  const lines = [dryRun ? 'Planned actions (dry run: nothing was changed):' : 'Actions:'];
  const names = new Map(result.report.instances.map((i) => [i.instanceId, i.name ? `${i.instanceId} (${i.name})` : i.instanceId]));
  if (result.plan.decisions.length === 0) lines.push('  none: no tainted instance');
  for (const d of result.plan.decisions) lines.push(`  ${names.get(d.instanceId) ?? d.instanceId}: ${d.action.kind === 'dry-run' ? 'would replace' : actionLabel(d.action)}`);
  for (const b of result.plan.breakers) lines.push(`  BREAKER ${b.policy}: ${b.tainted} of ${b.inScope} tainted (limit ${b.limitPercent}%): nothing replaced`);
  for (const r of result.replacements) lines.push(`  replacement of ${r.oldInstanceId}: ${r.status}${r.newInstanceId ? `, fresh instance ${r.newInstanceId}` : ''}${r.error ? ` (${r.error})` : ''}`);
  if (result.outbox && result.outbox.pending > 0) lines.push(`  ${result.outbox.pending} message(s) wait in the outbox: Slack is unavailable`);
  return lines.join('\n') + '\n';
}

/** What `run --format json` prints: the report, and what the cycle did. */
export function cycleJson(result: CycleResult): Record<string, unknown> {
  return {
    ...result.report,
    actions: result.plan.decisions,
    breakers: result.plan.breakers,
    replacements: result.replacements.map((r) => ({ id: r.id, oldInstanceId: r.oldInstanceId, newInstanceId: r.newInstanceId, status: r.status, step: r.step, error: r.error })),
  };
}

/** `pristine run`: one cycle. */
export async function runOnce(flags: RunFlags, logger: Logger): Promise<{ output: { json: unknown } | { text: string }; exitCode: number }> {
  const inputs = await loadAuditInputs({ policiesDir: flags.policies, manifestsDir: flags.manifests, configFile: flags.config });
  // A dry run changes nothing, not even the state file: without one it works from an empty memory.
  const store = await openStore(flags.dryRun && !isPostgresUrl(flags.state) && !existsSync(flags.state) ? ':memory:' : flags.state);
  const pool = await createPool();
  try {
    const transport = transportFromEnv(logger);
    const inFlightBefore = flags.dryRun ? [] : (await store.inFlight()).map((r) => r.id);
    const result = await runCycle({
      inputs,
      store,
      pool,
      transport,
      logger,
      dryRun: flags.dryRun,
      since: flags.since,
      drainQueues: true,
      concurrency: flags.concurrency,
    });
    if (!flags.dryRun) {
      // For cron: drive what is in flight (what this cycle started, and what earlier runs left) until done,
      // or until --wait; a later run resumes the rest.
      const replacer = new Replacer({ store, clientsFor: pool.get, logger });
      const worker = new ReplacementWorker({ store, replacer, clientsFor: pool.get, logger, owner: driverName(), leaseTtlMs: inputs.config.leaseTtl });
      await worker.drive({ untilIdle: true, until: flags.wait === null ? undefined : Date.now() + flags.wait });
      const ids = [...new Set([...inFlightBefore, ...result.replacements.map((r) => r.id)])];
      result.replacements = [];
      for (const id of ids) {
        const row = await store.replacement(id);
        if (row) result.replacements.push(row);
      }
      result.outbox = await drainOutbox(store, transport, logger);
    }
    const output = flags.format === 'json' ? { json: cycleJson(result) } : { text: `${renderTable(result.report)}\n${renderActions(result, flags.dryRun)}` };
    return { output, exitCode: result.exitCode };
  } finally {
    pool.destroy();
    await store.close();
  }
}
