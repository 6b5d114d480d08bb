/**
 * What pristine tells people, independent of how it is sent. Built by the cycle from the report
 * and the plan, queued in the store's outbox, rendered to Slack Block Kit (slack-messages.ts) or to
 * plain text for a terminal when no Slack token is set.
 */
import type { ReportFinding, ReportInstance } from '../report/model.js';

/** What pristine will do about a tainted instance, said in the alert. */
export type PlannedAction =
  | { kind: 'replace' }
  | { kind: 'observe' } // policy mode observe: alert only
  | { kind: 'hold'; reason: string } // enforce, but not now: window, limits, breaker, protection, incomplete evidence...
  | { kind: 'dry-run' };

export type Notice =
  /** one newly tainted instance */
  | { type: 'taint'; instance: ReportInstance; findings: readonly ReportFinding[]; action: PlannedAction }
  /** instead of many `taint` notices when a cycle finds more than a handful */
  | { type: 'digest'; items: Array<{ instance: ReportInstance; findings: readonly ReportFinding[]; action: PlannedAction }> }
  /** the breaker tripped: more of a policy's fleet is tainted than it allows; nothing is replaced */
  | { type: 'breaker'; policy: string; tainted: number; inScope: number; limitPercent: number }
  /** a replacement's progress or outcome, posted in the thread of the instance's alert */
  | {
      type: 'progress';
      instanceId: string;
      step: string;
      outcome: 'started' | 'progress' | 'done' | 'failed' | 'rolled-back' | 'held';
      message: string;
      newInstanceId?: string | null;
      /** where the old instance stands; absent in notices an older pristine queued */
      oldInstance?: 'serving' | 'deregistering' | 'draining' | 'drained' | 'terminated';
    };

/** Sends one rendered notice; returns the message's id (Slack `ts`) so replies can thread under it. */
export interface Transport {
  send(input: { channel: string; notice: Notice; threadTs?: string | null }): Promise<{ ts: string | null }>;
}
