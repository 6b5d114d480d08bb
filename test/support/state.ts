// Rows for the state store's tests: an activity as the evidence log holds it.
import type { Activity } from '../../src/core/facts.js';

export const STATE_ACCOUNT = '111122223333';

/** An SSM session by alice on i-0abc, with this event id and time. */
export function sessionActivity(id: string, at: number, region = 'us-east-1'): Activity {
  return {
    id,
    kind: 'interactive-session',
    source: 'cloudtrail',
    eventSource: 'ssm.amazonaws.com',
    eventName: 'StartSession',
    at,
    region,
    accountId: STATE_ACCOUNT,
    actor: { arn: 'arn:aws:sts::111122223333:assumed-role/Admin/alice', identities: ['arn:aws:iam::111122223333:role/Admin'] },
    instanceIds: ['i-0abc'],
    sessionId: `alice-${id}`,
    detail: { document: 'SSM-SessionManagerRunShell' },
  };
}
