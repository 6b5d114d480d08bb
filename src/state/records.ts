import type { InstanceResult } from '../core/evaluate.js';
import type { Activity } from '../core/facts.js';
import type { VerdictInput } from './ports.js';

/** What the store keeps of a verdict: the instance, its policy, and its findings' keys and summaries. */
export function verdictInputOf(result: InstanceResult): VerdictInput {
  return {
    instanceId: result.instance.instanceId,
    accountId: result.instance.accountId,
    region: result.instance.region,
    policy: result.policy,
    name: result.instance.name,
    verdict: result.verdict,
    findings: result.findings.map((f) => ({ key: f.key, detector: f.detector, severity: f.severity, summary: f.summary, at: f.at, actor: f.actor })),
  };
}

/** One event known by two paths: the first record stays; the paths add up; a later resolution of its instances is kept. */
export function mergeActivity(known: Activity, incoming: Activity): Activity {
  const via = [...new Set([...(known.via ?? []), ...(incoming.via ?? [])])];
  const instanceIds = known.instanceIds.length === 0 && incoming.instanceIds.length > 0 ? incoming.instanceIds : known.instanceIds;
  if (via.length === (known.via ?? []).length && instanceIds === known.instanceIds) return known;
  return { ...known, via, instanceIds };
}

/** Items in lists of `size` (the last may be shorter), for writes a batch at a time. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A notice as stored (JSON), or why it cannot be read. */
export function readNotice<N>(text: string): { notice: N | null; unreadable?: string } {
  try {
    return { notice: JSON.parse(text) as N };
  } catch (err) {
    return { notice: null, unreadable: err instanceof Error ? err.message : String(err) };
  }
}

/** The name of the lease on one scope's audit. */
export const scopeLease = (scope: { accountId: string; region: string }) => `audit:${scope.accountId}/${scope.region}`;
/** The name of the lease on sending the outbox. */
export const OUTBOX_LEASE = 'outbox';
