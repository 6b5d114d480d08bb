import type { InstanceResult } from './evaluate.js';
import { scopeKey, type Scope } from './facts.js';
import type { Decision } from './plan.js';

// An alert raised between cycles (a pushed event) says "the next scheduled cycle decides the
// replacement": that cycle owes the alert's thread its decision. Pure: what to reply, from the cycle's
// decisions and verdicts.

/**
 * The state store's meta key prefix (then the instance id) of a decision an alert waits for. Its value:
 * the instance's scope and the alert's channel, as JSON. The cycle that decides clears it.
 */
export const DECISION_DUE = 'decision-due:';

export interface DecisionDue {
  instanceId: string;
  accountId: string;
  region: string;
  /** when the alert promised it (epoch ms) */
  at: number;
}

export type DecisionReply =
  /** the cycle starts a replacement: its own "Replacing…" reply says so; settled once it is created */
  | { instanceId: string; kind: 'replacing' }
  /** not replaced (now): say why in the thread */
  | { instanceId: string; kind: 'reply'; message: string }
  /** owed for longer than DECISION_KEPT_MS by a scope no replica audits any more: no longer owed */
  | { instanceId: string; kind: 'forget' };

/** How long a decision is owed in a scope no cycle audits (an account that left the organisation). */
export const DECISION_KEPT_MS = 7 * 86_400_000;

function why(result: InstanceResult): string {
  const missing = [...result.gaps.map((g) => g.message), ...result.findings.filter((f) => f.effect === 'unknown').map((f) => f.summary)];
  return missing.length > 0 ? missing[0] + (missing.length > 1 ? ` (+${missing.length - 1} more)` : '') : 'evidence is missing';
}

/**
 * The replies this cycle (started at `startedAt`) owes, for the due decisions in the scopes it audited
 * (listed). A scope it did not audit (another replica's, or its role not assumed) is left to the cycle
 * that does; so is an alert raised after this cycle started, whose event its facts may not hold.
 */
export function decisionReplies(
  due: readonly DecisionDue[],
  decisions: readonly Decision[],
  judged: ReadonlyMap<string, InstanceResult>,
  audited: readonly Scope[],
  startedAt: number,
): DecisionReply[] {
  const scopes = new Set(audited.map(scopeKey));
  const decisionOf = new Map(decisions.map((d) => [d.instanceId, d]));
  const out: DecisionReply[] = [];
  for (const d of due) {
    if (!scopes.has(scopeKey(d))) {
      if (startedAt - d.at > DECISION_KEPT_MS) out.push({ instanceId: d.instanceId, kind: 'forget' });
      continue;
    }
    if (d.at > startedAt) continue;
    const id = d.instanceId;
    const decision = decisionOf.get(id);
    const result = judged.get(id);
    if (decision) {
      const a = decision.action;
      if (a.kind === 'replace') out.push({ instanceId: id, kind: 'replacing' });
      else if (a.kind === 'hold') out.push({ instanceId: id, kind: 'reply', message: `The scheduled cycle does not replace it now: ${a.reason}` });
      else if (a.kind === 'observe') out.push({ instanceId: id, kind: 'reply', message: `Not replaced: policy ${decision.policy} now only observes (mode: observe).` });
      else out.push({ instanceId: id, kind: 'reply', message: 'Not replaced: this cycle was a dry run.' });
    } else if (result?.verdict === 'unknown') {
      out.push({ instanceId: id, kind: 'reply', message: `Not replaced: the scheduled cycle judged it unknown, ${why(result)}.` });
    } else if (result) {
      out.push({ instanceId: id, kind: 'reply', message: `Not replaced: the scheduled cycle read every source and judged it ${result.verdict} under policy ${result.policy}.` });
    } else {
      out.push({ instanceId: id, kind: 'reply', message: 'Not replaced: the scheduled cycle did not judge it (no longer running, exempt by tag, or selected by no policy).' });
    }
  }
  return out;
}
