import { actorFrom } from './actor.js';
import type { Activity, Scope } from './facts.js';
import { INSTANCE_ID } from './cloudtrail-record.js';

/** A Session Manager session as DescribeSessions reports it, times in epoch ms. */
export interface SessionRecord {
  sessionId: string;
  target: string;
  status: string;
  startDate: number;
  endDate: number | null;
  documentName: string | null;
  owner: string | null;
  reason: string | null;
}

/**
 * A session SSM remembers, as an Activity. CloudTrail's StartSession for the same session id
 * describes the same thing; the evaluator keeps one of them.
 */
export function activityFromSession(s: SessionRecord, scope: Scope): Activity | null {
  if (!INSTANCE_ID.test(s.target)) return null;
  return {
    id: `session:${s.sessionId}`,
    kind: 'interactive-session',
    source: 'ssm-sessions',
    via: ['ssm-sessions'],
    eventSource: 'ssm.amazonaws.com',
    eventName: 'StartSession',
    at: s.startDate,
    region: scope.region,
    accountId: scope.accountId,
    actor: actorFrom(s.owner),
    instanceIds: [s.target],
    sessionId: s.sessionId,
    detail: {
      sessionId: s.sessionId,
      documentName: s.documentName ?? 'SSM-SessionManagerRunShell',
      status: s.status,
      ...(s.reason ? { reason: s.reason } : {}),
      ...(s.endDate !== null ? { endedAt: new Date(s.endDate).toISOString() } : {}),
    },
  };
}
