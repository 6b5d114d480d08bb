import type { Activity } from '../facts.js';
import type { DetectorId, Finding, Severity } from './types.js';

/** The evidence block every CloudTrail- or session-based finding carries: enough to find the record again. */
export function activityEvidence(a: Activity): Record<string, unknown> {
  return {
    source: a.source,
    eventSource: a.eventSource,
    eventName: a.eventName,
    eventId: a.source === 'cloudtrail' ? a.id : undefined,
    region: a.region,
    ...a.detail,
  };
}

export function activityFinding(
  detector: DetectorId,
  severity: Severity,
  a: Activity,
  summary: string,
): Finding {
  return {
    detector,
    // One SSM session is one finding, whether CloudTrail's StartSession or SSM's history told of it.
    key: `${detector}:${a.sessionId ?? a.id}`,
    severity,
    effect: 'taint',
    summary,
    at: a.at,
    actor: a.actor.arn,
    evidence: activityEvidence(a),
  };
}

export function byWhom(a: Activity): string {
  return a.actor.arn ? `by ${a.actor.arn}` : 'by an unknown caller';
}
