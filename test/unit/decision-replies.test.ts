// What a cycle replies to an alert raised between cycles that said "the next scheduled cycle decides".
import { describe, expect, it } from 'vitest';
import { DECISION_KEPT_MS, decisionReplies, type DecisionDue } from '../../src/core/decision-replies.js';
import type { InstanceResult, Verdict } from '../../src/core/evaluate.js';
import type { Gap } from '../../src/core/facts.js';
import type { Decision } from '../../src/core/plan.js';
import { FIXTURE_ACCOUNT, REGION, instance } from '../support/facts.js';

const US = { accountId: FIXTURE_ACCOUNT, region: REGION };
const STARTED = Date.parse('2026-12-03T12:00:00Z');
const due = (instanceId: string, scope = US, at = STARTED - 60_000): DecisionDue => ({ instanceId, ...scope, at });
const result = (instanceId: string, verdict: Verdict, gaps: Gap[] = []): InstanceResult => ({
  instance: instance({ instanceId }),
  policy: 'web',
  verdict,
  findings: [],
  gaps,
});
const judged = (...results: InstanceResult[]) => new Map(results.map((r) => [r.instance.instanceId, r]));

describe('decisionReplies', () => {
  it('says why a tainted instance is held, and leaves a replacement to say itself', () => {
    const decisions: Decision[] = [
      { instanceId: 'i-held', policy: 'web', action: { kind: 'hold', reason: 'outside the replacement windows (Sat 02:00-04:00)' } },
      { instanceId: 'i-replaced', policy: 'web', action: { kind: 'replace' } },
      { instanceId: 'i-observed', policy: 'web', action: { kind: 'observe' } },
    ];
    const replies = decisionReplies([due('i-held'), due('i-replaced'), due('i-observed')], decisions, judged(result('i-held', 'tainted'), result('i-replaced', 'tainted'), result('i-observed', 'tainted')), [US], STARTED);
    expect(replies).toEqual([
      { instanceId: 'i-held', kind: 'reply', message: 'The scheduled cycle does not replace it now: outside the replacement windows (Sat 02:00-04:00)' },
      { instanceId: 'i-replaced', kind: 'replacing' },
      { instanceId: 'i-observed', kind: 'reply', message: 'Not replaced: policy web now only observes (mode: observe).' },
    ]);
  });

  it('says what the cycle judged an instance it does not find tainted, and one it did not judge', () => {
    const gap: Gap = { source: 'ssm-sessions', ...US, message: 'SSM DescribeSessions failed: ThrottlingException' };
    const replies = decisionReplies(
      [due('i-unknown'), due('i-pristine'), due('i-gone')],
      [],
      judged(result('i-unknown', 'unknown', [gap]), result('i-pristine', 'pristine')),
      [US],
      STARTED,
    );
    expect(replies).toEqual([
      { instanceId: 'i-unknown', kind: 'reply', message: 'Not replaced: the scheduled cycle judged it unknown, SSM DescribeSessions failed: ThrottlingException.' },
      { instanceId: 'i-pristine', kind: 'reply', message: 'Not replaced: the scheduled cycle read every source and judged it pristine under policy web.' },
      { instanceId: 'i-gone', kind: 'reply', message: expect.stringMatching(/did not judge it \(no longer running, exempt by tag, or selected by no policy\)/) },
    ]);
  });

  it("leaves a scope this cycle did not audit (another replica's, or unread) to the cycle that does", () => {
    const EU = { accountId: FIXTURE_ACCOUNT, region: 'eu-west-1' };
    const replies = decisionReplies([due('i-eu', EU), due('i-us')], [], judged(), [US], STARTED);
    expect(replies.map((r) => r.instanceId)).toEqual(['i-us']);
  });

  it('forgets one owed for over a week by a scope no cycle audits any more (an account gone from the organisation)', () => {
    const EU = { accountId: '444455556666', region: 'eu-west-1' };
    const replies = decisionReplies([due('i-gone', EU, STARTED - DECISION_KEPT_MS - 1), due('i-recent', EU, STARTED - DECISION_KEPT_MS + 60_000)], [], judged(), [US], STARTED);
    expect(replies).toEqual([{ instanceId: 'i-gone', kind: 'forget' }]);
  });

  it('leaves an alert raised after the cycle started to the next cycle: its facts may not hold the event', () => {
    const replies = decisionReplies([due('i-late', US, STARTED + 1000), due('i-early')], [], judged(result('i-late', 'pristine'), result('i-early', 'pristine')), [US], STARTED);
    expect(replies.map((r) => r.instanceId)).toEqual(['i-early']);
  });
});
