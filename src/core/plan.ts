import type { PlannedAction } from '../notify/types.js';
import type { LoadedPolicy } from '../policy/schema.js';
import type { InstanceResult } from './evaluate.js';
import { allowedOf, type Share } from './share.js';
import { inAnyWindow } from './windows.js';

/** Where an instance serves: the target groups and Auto Scaling group holding it, with their sizes. */
export interface Placement {
  /** group key (target group ARN, or `asg:NAME`) -> how many instances the group holds */
  groups: Map<string, number>;
}

export interface PriorReplacement {
  status: 'in-progress' | 'done' | 'rolled-back' | 'failed';
  step: string;
  /** the policy it was started under */
  policy?: string;
  /** the groups the old instance was in, while it is in flight */
  groups: string[];
}

export interface PlanInput {
  now: number;
  /** this cycle's verdicts, each with whether its region's evidence was read in full */
  results: ReadonlyArray<{ result: InstanceResult; regionComplete: boolean }>;
  policies: ReadonlyMap<string, LoadedPolicy>;
  /** instance id -> its last replacement, if any */
  prior: ReadonlyMap<string, PriorReplacement>;
  /** instance id -> where it serves (only needed for enforce candidates) */
  placement: ReadonlyMap<string, Placement>;
  dryRun: boolean;
  /** instance id -> why it must not be replaced (found by checks against AWS: termination protection...) */
  blocked?: ReadonlyMap<string, string>;
}

export interface Decision {
  instanceId: string;
  policy: string;
  action: PlannedAction;
}

export interface Breaker {
  policy: string;
  tainted: number;
  inScope: number;
  limitPercent: number;
}

export interface Plan {
  /** one decision per tainted instance */
  decisions: Decision[];
  /** instance ids to replace now (empty in dry-run: see the `dry-run` decisions) */
  replace: string[];
  breakers: Breaker[];
}

function tripped(share: Share, tainted: number, inScope: number): boolean {
  if (share.kind === 'count') return tainted > share.value;
  return inScope > 0 && tainted / inScope > share.value;
}

const minutes = (ms: number) => `${Math.round(ms / 60_000)}m`;

/** What pristine cannot vouch for in an instance, each once: its image was never recorded, its inventory is stale… */
export function cannotVouch(result: InstanceResult): string[] {
  return [...new Set(result.findings.filter((f) => f.effect === 'unknown').map((f) => f.summary))];
}

/**
 * Decides, per tainted instance, what pristine will do this cycle. Pure. The order of the checks is
 * the order of their importance: a replacement already under way, the policy's mode, its breaker,
 * complete evidence, the instance's age, maintenance windows, and the per-cycle and per-group limits.
 */
export function plan(input: PlanInput): Plan {
  const decisions: Decision[] = [];
  const replace: string[] = [];
  const breakers: Breaker[] = [];

  const byPolicy = new Map<string, Array<{ result: InstanceResult; regionComplete: boolean }>>();
  for (const r of input.results) {
    const list = byPolicy.get(r.result.policy);
    if (list) list.push(r);
    else byPolicy.set(r.result.policy, [r]);
  }

  // In-flight replacements already hold a place in their groups, and under their policy's maxConcurrent.
  const busy = new Map<string, number>();
  const running = new Map<string, number>();
  for (const p of input.prior.values()) {
    if (p.status !== 'in-progress') continue;
    for (const g of p.groups) busy.set(g, (busy.get(g) ?? 0) + 1);
    if (p.policy) running.set(p.policy, (running.get(p.policy) ?? 0) + 1);
  }

  for (const [policyName, results] of byPolicy) {
    const policy = input.policies.get(policyName);
    if (!policy) continue;
    const tainted = results.filter((r) => r.result.verdict === 'tainted');
    if (tainted.length === 0) continue;
    const { respond } = policy;
    const breaker = tripped(respond.breaker.taintedShare, tainted.length, results.length);
    if (breaker && respond.mode === 'enforce') {
      const share = respond.breaker.taintedShare;
      const percent = share.kind === 'percent' ? share.value * 100 : (share.value / results.length) * 100;
      breakers.push({ policy: policyName, tainted: tainted.length, inScope: results.length, limitPercent: Math.round(percent * 10) / 10 });
    }
    let started = 0;
    const oldestFirst = [...tainted].sort((a, b) => a.result.instance.launchTime - b.result.instance.launchTime);
    for (const { result, regionComplete } of oldestFirst) {
      const { instance } = result;
      const decide = (action: PlannedAction) => decisions.push({ instanceId: instance.instanceId, policy: policyName, action });
      const hold = (reason: string) => decide({ kind: 'hold', reason });
      const prior = input.prior.get(instance.instanceId);
      if (respond.mode === 'observe') decide({ kind: 'observe' });
      else if (prior?.status === 'in-progress') hold(`a replacement is under way (step ${prior.step})`);
      else if (prior?.status === 'done') hold('already replaced; the old instance should be gone');
      else if (prior) hold(`the last replacement ${prior.status === 'failed' ? 'failed' : 'was rolled back'}: run \`pristine replace ${instance.instanceId}\` to try again`);
      else if (breaker) hold(`breaker tripped: ${tainted.length} of ${results.length} instances tainted`);
      else if (!regionComplete || result.gaps.length > 0) hold('evidence is incomplete: nothing is replaced on partial evidence');
      else if (result.findings.some((f) => f.effect === 'unknown')) hold(`pristine cannot vouch for what it would launch (${cannotVouch(result).join('; ')}): a human must decide`);
      else if (input.now - instance.launchTime < respond.replace.minAge) hold(`younger than minAge ${minutes(respond.replace.minAge)}`);
      else if (input.blocked?.has(instance.instanceId)) hold(input.blocked.get(instance.instanceId) as string);
      else if (!inAnyWindow(respond.replace.windows, input.now)) hold(`outside the replacement windows (${(respond.replace.windows ?? []).map((w) => w.text).join('; ')})`);
      else if (started >= respond.replace.maxPerCycle) hold(`maxPerCycle ${respond.replace.maxPerCycle} reached: next cycle`);
      else if (started + (running.get(policyName) ?? 0) >= respond.replace.maxConcurrent) hold(`maxConcurrent ${respond.replace.maxConcurrent} replacements in flight: next cycle`);
      else {
        const groups = input.placement.get(instance.instanceId)?.groups ?? new Map<string, number>();
        const full = [...groups].find(([g, size]) => (busy.get(g) ?? 0) + 1 > allowedOf(respond.replace.maxUnavailable, size));
        if (full) hold(`maxUnavailable reached in ${full[0]}`);
        else {
          started++;
          for (const g of groups.keys()) busy.set(g, (busy.get(g) ?? 0) + 1);
          if (input.dryRun) decide({ kind: 'dry-run' });
          else {
            decide({ kind: 'replace' });
            replace.push(instance.instanceId);
          }
        }
      }
    }
  }
  return { decisions, replace, breakers };
}
