import type { AuditInputs, ScopeAudit } from './audit.js';
import { attribute } from './core/attribute.js';
import { evaluateScope, type InstanceResult } from './core/evaluate.js';
import { scopeKey, type Activity } from './core/facts.js';
import { enqueueAlerts } from './cycle.js';
import type { SlackOutcome } from './daemon/metrics.js';
import type { Logger } from './logger.js';
import { drainOutbox, type DrainResult } from './notify/outbox.js';
import type { PlannedAction, Transport } from './notify/types.js';
import { toReportInstance } from './report/model.js';
import type { StateStore, VerdictInput } from './state/store.js';

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
 * Judges at once the instances that newly pushed events (EventBridge, trail files) name, with what the
 * store knows of their other evidence and the facts of the last cycle (instances, inventory). A push
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
  onSlack?: (outcome: SlackOutcome) => void;
}): Promise<PushedResult> {
  const now = opts.now ?? Date.now();
  const pushed = new Set(opts.activities.map((a) => a.id));
  const byScope = new Map<string, Activity[]>();
  for (const a of opts.activities) {
    if (!a.accountId) continue;
    const key = scopeKey({ accountId: a.accountId, region: a.region });
    byScope.set(key, [...(byScope.get(key) ?? []), a]);
  }
  const results: InstanceResult[] = [];
  for (const key of byScope.keys()) {
    const audit = opts.scopes.get(key);
    if (!audit) continue; // a scope the last cycle did not read: the next one judges it
    const facts = { ...audit.facts, activities: opts.store.activities(audit.facts, audit.facts.window.from), gaps: [] };
    const concerned = new Set<string>();
    for (const [instanceId, list] of attribute(facts).byInstance) if (list.some((a) => pushed.has(a.id))) concerned.add(instanceId);
    if (concerned.size === 0) continue;
    const judged = evaluateScope(facts, opts.inputs.policies, opts.inputs.manifests, now, concerned);
    results.push(...judged.results.filter((r) => r.verdict === 'tainted'));
  }
  if (results.length === 0) return { tainted: [], alerted: [], outbox: null };

  const verdicts: VerdictInput[] = results.map((r) => ({
    instanceId: r.instance.instanceId,
    accountId: r.instance.accountId,
    region: r.instance.region,
    policy: r.policy,
    name: r.instance.name,
    verdict: r.verdict,
    findings: r.findings.map((f) => ({ key: f.key, detector: f.detector, severity: f.severity, summary: f.summary, at: f.at, actor: f.actor })),
  }));
  const policies = new Map(opts.inputs.policies.map((p) => [p.name, p]));
  const reported = new Map(results.map((r) => [r.instance.instanceId, toReportInstance(r)]));
  const actions = new Map(results.map((r) => [r.instance.instanceId, policies.get(r.policy)?.respond.mode === 'enforce' ? NEXT_CYCLE : ({ kind: 'observe' } as PlannedAction)]));
  const alerted = opts.store.transaction(() => {
    const { newlyTainted, newFindings } = opts.store.recordVerdicts(now, verdicts);
    enqueueAlerts(opts.store, policies, actions, newlyTainted, newFindings, reported, now);
    return newlyTainted;
  });
  opts.logger.info({ tainted: verdicts.map((v) => v.instanceId), alerted }, 'pushed events judged');
  const outbox = await drainOutbox(opts.store, opts.transport, opts.logger, opts.onSlack);
  return { tainted: verdicts.map((v) => v.instanceId), alerted, outbox };
}
