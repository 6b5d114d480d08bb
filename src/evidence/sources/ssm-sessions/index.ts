import type { Session, SessionState, SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { activityFromSession, type SessionRecord } from '../../../core/ssm-session.js';
import { scopeKey } from '../../../core/facts.js';
import { describeError } from '../../../errors.js';
import { clockAhead } from '../../clock.js';
import { clampSpans, type Span } from '../../coverage.js';
import type { EvidenceStore } from '../../store-port.js';
import type { PullContext, PullResult, SourceDefinition } from '../types.js';
import { aws } from '../../../collect/aws-sdk.js';

export const IAM_ACTIONS = ['ssm:DescribeSessions'] as const;

/** `sources.ssmSessions`: no options yet; the key is reserved. */
export const SsmSessionsConfig = z.strictObject({}).prefault({});
export type SsmSessionsConfig = z.output<typeof SsmSessionsConfig>;

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

/** DescribeSessions takes `InvokedAfter` as the SSM API reference writes it: `YYYY-MM-DDTHH:MM:SSZ`, whole seconds. */
export function sessionFilterTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Sessions open now, and those that ended, started since `from` (SSM keeps 30 days of history). */
export async function readSessions(ssm: SSMClient, from: number, signal?: AbortSignal): Promise<SessionRecord[]> {
  const out: SessionRecord[] = [];
  const read = async (state: SessionState, filters: Array<{ key: 'InvokedAfter'; value: string }>) => {
    for await (const page of aws.SSM.paginateDescribeSessions({ client: ssm, pageSize: 200 }, { State: state, Filters: filters }, { abortSignal: signal })) {
      for (const s of page.Sessions ?? []) {
        const r = toRecord(s);
        if (r) out.push(r);
      }
    }
  };
  await read('Active', []);
  await read('History', [{ key: 'InvokedAfter', value: sessionFilterTime(from) }]);
  return out;
}

/** Where this cycle's history read starts: the end of what is covered, if that reaches back to the window. */
export function sessionsFrom(window: Span, covered: readonly Span[]): number {
  const reaching = covered.find((s) => s.from <= window.from && s.to >= window.from);
  return reaching ? Math.min(reaching.to, window.to) : window.from;
}

export const ssmSessions = {
  id: 'ssm-sessions',
  configKey: 'ssmSessions',
  config: SsmSessionsConfig,
  proves: "Session Manager sessions SSM remembers (30 days of history, and every open session): its coverage is kept apart from CloudTrail's.",
  iam: { member: IAM_ACTIONS },
  enabled: () => true,

  async read(ctx: PullContext<{ ssm: SSMClient }, EvidenceStore>): Promise<PullResult> {
    const { scope, now, store } = ctx;
    const out: PullResult = { activities: [], gaps: [], errors: [], warnings: [], proven: [] };
    const from = sessionsFrom(ctx.window, clampSpans(await store.coverage(scope, 'ssm-sessions'), now));
    try {
      const records = await readSessions(ctx.clients.ssm, from, ctx.signal);
      out.activities = records.flatMap((s) => activityFromSession(s, scope) ?? []);
      // A session is listed from its start: what started since `from` is all here, but for the last minutes
      // (of AWS's clock: see clock.ts).
      const ahead = clockAhead(ctx.clients.ssm);
      if (ahead > 0) ctx.logger.warn({ source: 'ssm-sessions', scope: scopeKey(scope), aheadMs: ahead }, 'the local clock is ahead of AWS: sessions are proven up to AWS time minus settle');
      const to = now - ctx.settle - ahead;
      if (to >= from) out.proven.push({ kind: 'ssm-sessions', span: { from, to } });
    } catch (err) {
      const message = `DescribeSessions failed: ${describeError(err)}`;
      ctx.logger.warn({ source: 'ssm-sessions', scope: scopeKey(scope), err: describeError(err) }, 'evidence could not be read');
      out.errors.push({ source: 'ssm-sessions:DescribeSessions', ...scope, message });
      out.gaps.push({ source: 'ssm-sessions', ...scope, message });
    }
    return out;
  },
} satisfies SourceDefinition<SsmSessionsConfig> & { read: unknown };
