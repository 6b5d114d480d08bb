import { loadAuditInputs, runAudit } from '../audit.js';
import type { InstanceResult } from '../core/evaluate.js';
import { cannotVouch } from '../core/plan.js';
import { describeError, InputError } from '../errors.js';
import type { Logger } from '../logger.js';
import { drainOutbox } from '../notify/outbox.js';
import { readPlacement } from '../respond/placement.js';
import { Replacer, candidateFor } from '../respond/replacement.js';
import { ReplacementWorker, driverName } from '../respond/worker.js';
import { type ReplacementRow } from '../state/ports.js';
import { adoptLegacy } from '../cycle.js';
import { createPool, openStore, transportFromEnv } from './shared.js';

export interface ReplaceFlags {
  instanceId: string;
  config?: string;
  concurrency?: number;
  policies: string;
  manifests: string;
  state: string;
  yes: boolean;
}

/** Exit statuses of `pristine replace`. */
export const REPLACE_EXIT = { done: 0, failed: 1, refused: 2, incomplete: 3 } as const;

function describeRow(r: ReplacementRow): string {
  if (r.status === 'done') return `replaced ${r.oldInstanceId} with ${r.newInstanceId}`;
  if (r.status === 'rolled-back') return `replacement of ${r.oldInstanceId} rolled back: ${r.error ?? 'unknown error'}; it keeps serving`;
  return `replacement of ${r.oldInstanceId} stopped at step ${r.step}${r.error ? `: ${r.error}` : ''}; the next run resumes it`;
}

/**
 * What `pristine replace` asks before it acts: the instance, its verdict and what would replace it,
 * and first what pristine cannot vouch for (the reason a cycle holds such an instance for a human).
 */
export function replaceQuestion(result: InstanceResult, where: string): string {
  const { instance } = result;
  const doubts = cannotVouch(result);
  const caveat = doubts.length > 0 ? `pristine cannot vouch for what it would launch: ${doubts.join('; ')}.\n` : '';
  return `${caveat}Replace ${instance.instanceId}${instance.name ? ` (${instance.name})` : ''}, verdict ${result.verdict}, with a fresh instance of ${instance.imageId}${where}?`;
}

/**
 * `pristine replace INSTANCE_ID`: the same replacement a cycle would start, on demand. The instance
 * must be in scope, not exempt, not protected from termination, with its evidence read in full.
 */
export async function replaceOne(flags: ReplaceFlags, logger: Logger, confirm: (question: string) => Promise<boolean>): Promise<{ text: string; exitCode: number }> {
  if (!/^i-[0-9a-f]{8,17}$/.test(flags.instanceId)) throw new InputError(`not an instance id: ${flags.instanceId}`);
  const inputs = await loadAuditInputs({ policiesDir: flags.policies, manifestsDir: flags.manifests, configFile: flags.config });
  const store = await openStore(flags.state);
  const pool = await createPool();
  try {
    const policies = new Map(inputs.policies.map((p) => [p.name, p]));
    const replacer = new Replacer({ store, clientsFor: pool.get, logger });
    const worker = new ReplacementWorker({ store, replacer, clientsFor: pool.get, logger, owner: driverName(), leaseTtlMs: inputs.config.leaseTtl });
    await adoptLegacy(store, pool);
    /** Drives this one replacement to its end, unless another driver (the daemon, another run) holds it. */
    const finish = async (start: ReplacementRow) => {
      const first = await worker.turn(Date.now(), new Set([start.id]), true);
      const elsewhere = first.heldElsewhere.find((r) => r.id === start.id);
      if (elsewhere) {
        return { text: `replacement #${start.id} of ${start.oldInstanceId} is driven by ${elsewhere.leaseOwner} (step ${elsewhere.step}); pristine replace leaves it to it\n`, exitCode: REPLACE_EXIT.refused };
      }
      await worker.drive({ untilIdle: true, only: new Set([start.id]) });
      await drainOutbox(store, transportFromEnv(logger), logger);
      const row = (await store.replacement(start.id)) as ReplacementRow;
      return { text: `${describeRow(row)}\n`, exitCode: row.status === 'done' ? REPLACE_EXIT.done : REPLACE_EXIT.failed };
    };

    const existing = await store.replacementOf(flags.instanceId);
    if (existing?.status === 'in-progress') return await finish(existing);
    if (existing?.status === 'done') throw new InputError(`${flags.instanceId} was already replaced by ${existing.newInstanceId}`);

    const { scopes } = await runAudit(inputs, { since: null, logger, pool, store, concurrency: flags.concurrency });
    const scope = scopes.find((r) => r.results.some((x) => x.instance.instanceId === flags.instanceId));
    const result = scope?.results.find((x) => x.instance.instanceId === flags.instanceId);
    if (!scope || !result) throw new InputError(`${flags.instanceId} is not a running instance in scope of a policy (or it is exempt): pristine does not act on it`);
    if (!scope.complete || result.gaps.length > 0) {
      return { text: `${flags.instanceId}: evidence is incomplete (${result.gaps.map((g) => g.message).join('; ') || 'see the audit'}): nothing is replaced on partial evidence\n`, exitCode: REPLACE_EXIT.incomplete };
    }
    const policy = policies.get(result.policy);
    if (!policy) throw new Error(`no policy ${result.policy}`);
    const instance = result.instance;
    const placement = (await readPlacement(pool.get(instance), [instance])).get(instance.instanceId);
    const candidate = candidateFor(instance, policy, (await store.instance(instance.instanceId))?.alertOutboxId ?? null, placement);
    const reason = await replacer.preflight(candidate);
    if (reason) throw new InputError(`${flags.instanceId}: ${reason}`);
    const where = placement?.autoScalingGroup ? ` through Auto Scaling group ${placement.autoScalingGroup.AutoScalingGroupName}` : placement?.targetGroups.length ? ` behind ${placement.targetGroups.length} target group(s)` : '';
    const question = replaceQuestion(result, where);
    const doubts = cannotVouch(result);
    if (flags.yes && doubts.length > 0) logger.warn({ instanceId: instance.instanceId, cannotVouch: doubts }, 'replacing on --yes although pristine cannot vouch for what it launches');
    if (!flags.yes && !(await confirm(question))) return { text: 'Nothing done.\n', exitCode: REPLACE_EXIT.refused };
    const row = await replacer.create(candidate);
    if (!row) throw new InputError(`${flags.instanceId} already has a replacement`);
    return await finish(row);
  } catch (err) {
    if (err instanceof InputError) throw err;
    logger.error({ err: describeError(err) }, 'replace failed');
    throw err;
  } finally {
    pool.destroy();
    await store.close();
  }
}
