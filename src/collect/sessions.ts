import { paginateDescribeSessions, type SSMClient, type Session, type SessionState } from '@aws-sdk/client-ssm';
import type { SessionRecord } from '../core/ssm-session.js';

/** IAM actions this collector calls. */
export const IAM_ACTIONS = ['ssm:DescribeSessions'] as const;

function toRecord(s: Session): SessionRecord | null {
  if (!s.SessionId || !s.Target || !s.StartDate) return null;
  return {
    sessionId: s.SessionId,
    target: s.Target,
    status: s.Status ?? 'Unknown',
    startDate: s.StartDate.getTime(),
    endDate: s.EndDate ? s.EndDate.getTime() : null,
    documentName: s.DocumentName ?? null,
    owner: s.Owner ?? null,
    reason: s.Reason ?? null,
  };
}

/** Sessions open now, and those that ended, started since `from` (SSM keeps 30 days of history). */
export async function readSessions(ssm: SSMClient, from: number, signal?: AbortSignal): Promise<SessionRecord[]> {
  const out: SessionRecord[] = [];
  const read = async (state: SessionState, filters: Array<{ key: 'InvokedAfter'; value: string }>) => {
    for await (const page of paginateDescribeSessions({ client: ssm, pageSize: 200 }, { State: state, Filters: filters }, { abortSignal: signal })) {
      for (const s of page.Sessions ?? []) {
        const r = toRecord(s);
        if (r) out.push(r);
      }
    }
  };
  await read('Active', []);
  await read('History', [{ key: 'InvokedAfter', value: new Date(from).toISOString() }]);
  return out;
}
