import type { AuditInputs, ScopeAudit } from './audit.js';
import { ScopeJudge, type InstanceResult } from './core/evaluate.js';
import { scopeKey, type Activity } from './core/facts.js';
import { DECISION_DUE } from './core/decision-replies.js';
import { channelOf, enqueueAlerts } from './cycle.js';
import type { SlackOutcome } from './daemon/metrics.js';
import type { Logger } from './logger.js';
import { drainOutbox, type DrainResult } from './notify/outbox.js';
import type { PlannedAction, Transport } from './notify/types.js';
import { toReportInstance } from './report/model.js';
import { type StateStore, type VerdictInput } from './state/ports.js';
import { verdictInputOf } from './state/records.js';

/** Each cycle's scopes, made ready for pushed events once; the events pushed since the cycle accumulate in them. */
const judges = new WeakMap<ScopeAudit, ScopeJudge>();
function judgeOf(audit: ScopeAudit, inputs: AuditInputs): ScopeJudge {
  let judge = judges.get(audit);
  if (!judge) {
    judge = (audit.judge ?? new ScopeJudge(audit.facts, inputs.policies, inputs.manifests)).forPushedEvents();
    judges.set(audit, judge);
  }
  return judge;
}

/** What an alert raised between cycles says pristine will do: the scheduled cycle decides replacements. */
const NEXT_CYCLE: PlannedAction = { kind: 'hold', reason: 'the next scheduled cycle decides the replacement, with all evidence read' };

export interface PushedResult {
  /** instances the pushed events taint */
  tainted: string[];
  /** of those, the ones alerted now for the first time */
  alerted: string[];
  outbox: DrainResult | null;
}

/**
 * Judges at once the instances that newly pushed events (EventBridge, trail files) name, with the last
 * cycle's facts and attribution and the events pushed since (only those instances are judged again). A push
 * source only ever taints: it cannot prove that nothing else happened, so a verdict that comes out
 * anything but `tainted` changes nothing here, and the scheduled cycle stays the only one to vouch for
 * `pristine`. Taints are recorded and alerted as a cycle would, exactly once, and the outbox is sent.
 */
export async function judgePushed(opts: {
  activities: readonly Activity[];
  /** the last cycle's scopes, by scopeKey */
  scopes: ReadonlyMap<string, ScopeAudit>;
  inputs: AuditInputs;
  store: StateStore;
  transport: Transport;
  logger: Logger;
  now?: number;
  /** who this process is in the leases it takes (the outbox's) */
  owner?: string;
  onSlack?: (outcome: SlackOutcome) => void;
}): Promise<PushedResult> {
  const now = opts.now ?? Date.now();
  const byScope = new Map<string, Activity[]>();
  for (const a of opts.activities) {
    if (!a.accountId) continue;
    const key = scopeKey({ accountId: a.accountId, region: a.region });
    const list = byScope.get(key);
    if (list) list.push(a);
    else byScope.set(key, [a]);
  }
  const results: InstanceResult[] = [];
  for (const [key, activities] of byScope) {
    const audit = opts.scopes.get(key);
    if (!audit) continue; // a scope the last cycle did not read: the next one judges it
    // Only the instances the events are tied to are judged again, with what is known of them.
    const judge = judgeOf(audit, opts.inputs);
    const concerned = judge.add(activities);
    if (concerned.size === 0) continue;
    for (const r of judge.judgeOnly(concerned, now)) if (r.verdict === 'tainted') results.push(r);
  }
  if (results.length === 0) return { tainted: [], alerted: [], outbox: null };

  const verdicts: VerdictInput[] = results.map(verdictInputOf);
  const policies = new Map(opts.inputs.policies.map((p) => [p.name, p]));
  const reported = new Map(results.map((r) => [r.instance.instanceId, toReportInstance(r)]));
  const actions = new Map(results.map((r) => [r.instance.instanceId, policies.get(r.policy)?.respond.mode === 'enforce' ? NEXT_CYCLE : ({ kind: 'observe' } as PlannedAction)]));
  const alerted = await opts.store.transaction(async () => {
    const { newlyTainted, newFindings } = await opts.store.recordVerdicts(now, verdicts);
    await enqueueAlerts(opts.store, policies, actions, newlyTainted, newFindings, reported, now);
    for (const r of results) {
      const { instanceId, accountId, region } = r.instance;
      if (newlyTainted.includes(instanceId) && actions.get(instanceId) === NEXT_CYCLE) {
        await opts.store.setMeta(`${DECISION_DUE}${instanceId}`, JSON.stringify({ accountId, region, channel: channelOf(policies.get(r.policy)), at: now }));
      }
    }
    return newlyTainted;
  });
  opts.logger.info({ tainted: verdicts.map((v) => v.instanceId), alerted }, 'pushed events judged');
  const outbox = await drainOutbox(opts.store, opts.transport, opts.logger, opts.onSlack, opts.owner);
  return { tainted: verdicts.map((v) => v.instanceId), alerted, outbox };
}
