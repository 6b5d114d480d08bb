import { describe, expect, it } from 'vitest';
import type { ReportFinding } from '../../src/report/model.js';
import { reportInstance as instance } from '../support/facts.js';
import type { Notice, PlannedAction } from '../../src/notify/types.js';
import {
  type Block,
  clipMrkdwn,
  renderPlain,
  renderSlack,
  SLACK_LIMITS,
  slackDate,
} from '../../src/notify/slack-messages.js';

const ACTOR = 'arn:aws:sts::111122223333:assumed-role/Admin/alice';


function finding(over: Partial<ReportFinding> = {}): ReportFinding {
  return {
    detector: 'interactive-session',
    key: 'interactive-session:alice-0a1b2c3d4e5f60718',
    severity: 'high',
    effect: 'taint',
    summary: 'SSM session opened on the instance',
    at: '2026-11-21T09:30:00.000Z',
    actor: ACTOR,
    evidence: {},
    ...over,
  };
}

const taint = (findings: ReportFinding[], action: PlannedAction = { kind: 'replace' }, inst = instance()): Notice => ({
  type: 'taint',
  instance: inst,
  findings,
  action,
});

/** every text in a message's blocks, joined */
function allText(blocks: Block[]): string {
  const out: string[] = [];
  for (const b of blocks) {
    if (b.type === 'header') out.push(b.text.text);
    if (b.type === 'section') {
      if (b.text) out.push(b.text.text);
      for (const f of b.fields ?? []) out.push(f.text);
    }
    if (b.type === 'context') for (const e of b.elements) out.push(e.text);
  }
  return out.join('\n');
}

/** asserts Slack's limits on a rendered message */
function expectWithinLimits(msg: { text: string; blocks: Block[] }): void {
  expect(msg.blocks.length).toBeLessThanOrEqual(SLACK_LIMITS.blocks);
  expect(msg.text.length).toBeGreaterThan(0);
  expect(msg.text.length).toBeLessThanOrEqual(SLACK_LIMITS.fallbackText);
  for (const b of msg.blocks) {
    if (b.type === 'header') {
      expect(b.text.type).toBe('plain_text');
      expect(b.text.text.length).toBeLessThanOrEqual(SLACK_LIMITS.headerText);
    }
    if (b.type === 'section') {
      expect(b.text !== undefined || (b.fields?.length ?? 0) > 0).toBe(true);
      if (b.text) expect(b.text.text.length).toBeLessThanOrEqual(SLACK_LIMITS.sectionText);
      expect(b.fields?.length ?? 0).toBeLessThanOrEqual(SLACK_LIMITS.fieldsPerSection);
      for (const f of b.fields ?? []) expect(f.text.length).toBeLessThanOrEqual(SLACK_LIMITS.fieldText);
    }
    if (b.type === 'context') {
      expect(b.elements.length).toBeGreaterThan(0);
      expect(b.elements.length).toBeLessThanOrEqual(SLACK_LIMITS.contextElements);
    }
  }
  // what would go over the wire must be valid JSON and carry no unescaped control syntax from inputs
  expect(() => JSON.parse(JSON.stringify(msg.blocks))).not.toThrow();
}

describe('renderSlack: taint', () => {
  const n = taint([
    finding(),
    finding({
      detector: 'package-drift',
      severity: 'medium',
      summary: 'openssl changed: 3.0.19-1~deb12u2 -> 3.0.20-1',
      at: null,
      actor: null,
    }),
  ]);

  it('has a header naming the instance and fields for the instance facts', () => {
    const { blocks } = renderSlack(n);
    expect(blocks[0]).toEqual({ type: 'header', text: { type: 'plain_text', text: 'Tainted: web-1', emoji: true } });
    const fields = blocks.find((b) => b.type === 'section' && b.fields)!;
    const f = allText([fields]);
    for (const s of ['i-0abc1234def567890', 'web-1', '111122223333 / eu-west-1', 'ami-0c0ffee1234567890', 'web-immutable']) {
      expect(f).toContain(s);
    }
    expect(f).toContain(`<!date^${Date.parse('2026-11-20T08:00:00Z') / 1000}^{date_short_pretty} {time}|2026-11-20T08:00:00.000Z>`);
  });

  it('falls back to the instance id when it has no name', () => {
    const { blocks } = renderSlack(taint([finding()], { kind: 'replace' }, instance({ name: null })));
    expect(blocks[0]).toMatchObject({ type: 'header', text: { text: 'Tainted: i-0abc1234def567890' } });
  });

  it('says who, when and what for each finding', () => {
    const text = allText(renderSlack(n).blocks);
    expect(text).toContain('interactive-session');
    expect(text).toContain('high severity');
    expect(text).toContain(`*Who:* \`${ACTOR}\``);
    expect(text).toContain(
      `*When:* <!date^${Date.parse('2026-11-21T09:30:00Z') / 1000}^{date_short_pretty} {time}|2026-11-21T09:30:00.000Z>`,
    );
    expect(text).toContain('*What:* SSM session opened on the instance');
    // undated, anonymous finding
    expect(text).toContain('*When:* unknown');
    expect(text).toContain('*Who:* unknown');
    expect(text).toContain('openssl changed: 3.0.19-1~deb12u2 -&gt; 3.0.20-1');
  });

  it.each<[PlannedAction, RegExp]>([
    [{ kind: 'replace' }, /What pristine will do:\* Replace it/],
    [{ kind: 'observe' }, /What pristine will do:\* Alert only: the policy is in observe mode/],
    [{ kind: 'hold', reason: 'outside the maintenance window' }, /What pristine will do:\* Hold: .*Reason: outside the maintenance window/],
    [{ kind: 'dry-run' }, /What pristine will do:\* Dry run/],
  ])('says what pristine will do: %o', (action, re) => {
    const msg = renderSlack(taint([finding()], action));
    expect(allText(msg.blocks)).toMatch(re);
    expect(msg.text).toContain('Action: ');
  });

  it('has a plain fallback text with the facts', () => {
    const { text } = renderSlack(n);
    expect(text).toContain('Tainted: web-1');
    expect(text).toContain('i-0abc1234def567890');
    expect(text).toContain('2 findings');
    expect(text).toContain(ACTOR);
    expect(text).toContain('Action: replace');
  });

  it('escapes what comes from outside so it cannot ping or forge links', () => {
    const msg = renderSlack(
      taint(
        [finding({ summary: 'ran <!channel> & <https://evil.example|click>', actor: 'arn:`x`<!here>' })],
        { kind: 'hold', reason: '<@U123> said so' },
        instance({ name: '<!everyone> web' }),
      ),
    );
    const all = allText(msg.blocks.slice(1)) + msg.text;
    expect(all).not.toMatch(/<!channel>|<!here>|<!everyone>|<@U123>|<https:/);
    expect(all).toContain('&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;');
    // the header is plain_text: shown literally, never parsed
    expect(msg.blocks[0]).toMatchObject({ text: { type: 'plain_text', text: 'Tainted: <!everyone> web' } });
  });

  it('stays within Slack limits with 200 findings and shows at most 10, counting the rest', () => {
    const many = Array.from({ length: 200 }, (_, k) =>
      finding({
        detector: k % 2 ? 'remote-command' : 'interactive-session',
        severity: k === 150 ? 'critical' : 'medium',
        summary: `command ${k} ` + 'x&<>'.repeat(2000),
        actor: `arn:aws:iam::111122223333:user/${'u'.repeat(3000)}`,
        at: new Date(Date.parse('2026-11-21T00:00:00Z') + k * 60_000).toISOString(),
      }),
    );
    const msg = renderSlack(taint(many, { kind: 'hold', reason: 'r'.repeat(10_000) }, instance({ name: 'n'.repeat(400) })));
    expectWithinLimits(msg);
    const findingSections = msg.blocks.filter((b) => b.type === 'section' && b.text?.text.includes('*When:*'));
    expect(findingSections).toHaveLength(10);
    const text = allText(msg.blocks);
    expect(text).toContain('+190 more findings not shown (200 in total)');
    expect(text).toContain('200 findings');
    // the critical one is among those shown
    expect(text).toContain('command 150 ');
    // clipping never leaves half an entity or half a date token behind
    for (const s of findingSections) {
      const t = s.type === 'section' ? s.text!.text : '';
      expect(t).not.toMatch(/&[a-z]{0,3}$|&[a-z]{0,3}…/);
      expect((t.match(/`/g) ?? []).length % 2).toBe(0);
    }
  });
});

describe('renderSlack: digest', () => {
  const item = (k: number, action: PlannedAction) => ({
    instance: instance({ instanceId: `i-${String(k).padStart(17, '0')}`, name: `web-${k}`, region: k % 2 ? 'us-east-1' : 'eu-west-1' }),
    findings: [finding(), finding({ detector: 'package-drift' }), finding()],
    action,
  });

  it('lists instances with id, name, region, detectors and action', () => {
    const msg = renderSlack({
      type: 'digest',
      items: [item(1, { kind: 'replace' }), item(2, { kind: 'observe' }), item(3, { kind: 'hold', reason: 'breaker tripped' })],
    });
    expectWithinLimits(msg);
    const text = allText(msg.blocks);
    expect(text).toContain('Tainted: 3 instances');
    expect(text).toContain('`i-00000000000000001`');
    expect(text).toContain('*web-2*');
    expect(text).toContain('us-east-1');
    expect(text).toContain('Detectors: interactive-session, package-drift (3 findings)');
    expect(text).toContain('Action: replace');
    expect(text).toContain('Action: alert only (observe mode)');
    expect(text).toContain('Action: hold: breaker tripped');
    expect(msg.text).toContain('3 instances');
  });

  it('lists at most 20 and counts the rest, with the total', () => {
    const items = Array.from({ length: 500 }, (_, k) => item(k, { kind: 'dry-run' }));
    const msg = renderSlack({ type: 'digest', items });
    expectWithinLimits(msg);
    const listed = msg.blocks.filter((b) => b.type === 'section' && b.text?.text.includes('Detectors:'));
    expect(listed).toHaveLength(20);
    expect(allText(msg.blocks)).toContain('+480 more instances not listed (500 in total)');
    expect(allText(msg.blocks)).toContain('Action: dry run');
  });
});

describe('renderSlack: breaker', () => {
  it('says loudly that nothing will be replaced', () => {
    const msg = renderSlack({ type: 'breaker', policy: 'web-immutable', tainted: 12, inScope: 40, limitPercent: 20 });
    expectWithinLimits(msg);
    expect(msg.text).toBe(
      ':rotating_light: Breaker tripped for policy web-immutable: 12 of 40 in-scope instances are tainted (limit 20%). ' +
        'Nothing will be replaced until this is looked at.',
    );
    expect(allText(msg.blocks)).toContain('Nothing will be replaced until this is looked at.');
    expect(allText(msg.blocks)).toContain('30%');
    expect(msg.blocks[0]).toMatchObject({ type: 'header' });
  });
});

describe('renderSlack: progress', () => {
  it('reports a step with the new instance', () => {
    const msg = renderSlack({
      type: 'progress',
      instanceId: 'i-old',
      step: 'launch replacement',
      outcome: 'done',
      message: 'healthy in target group',
      newInstanceId: 'i-new',
    });
    expectWithinLimits(msg);
    expect(msg.blocks).toHaveLength(1);
    expect(msg.text).toContain('launch replacement');
    expect(msg.text).toContain('healthy in target group');
    expect(msg.text).toContain('`i-new`');
  });

  it.each([
    ['failed', ':x:'],
    ['rolled-back', ':warning:'],
  ] as const)('a %s step starts with %s and says the old instance keeps serving', (outcome, emoji) => {
    const msg = renderSlack({ type: 'progress', instanceId: 'i-old', step: 'drain', outcome, message: 'target never became healthy' });
    expect(msg.text.startsWith(emoji)).toBe(true);
    expect(msg.text).toContain('The old instance `i-old` keeps serving');
    expect(renderPlain({ type: 'progress', instanceId: 'i-old', step: 'drain', outcome, message: 'm' })).toContain(
      'The old instance i-old keeps serving',
    );
  });

  it.each([
    ['deregistering', 'is being taken out of its target groups'],
    ['draining', 'is out of its target groups and draining its connections'],
    ['drained', 'is drained and out of service, not terminated yet'],
  ] as const)('a step that failed past the point of no return says where the old instance stands: %s', (oldInstance, says) => {
    const n = { type: 'progress' as const, instanceId: 'i-old', step: 'wait-drained', outcome: 'failed' as const, message: 'wait-drained: throttled', oldInstance };
    expect(renderSlack(n).text).toContain(`The old instance \`i-old\` ${says}.`);
    expect(renderSlack(n).text).not.toContain('keeps serving');
    expect(renderPlain(n)).toContain(`The old instance i-old ${says}.`);
  });

  it('does not claim the old instance keeps serving when the step succeeded', () => {
    const msg = renderSlack({ type: 'progress', instanceId: 'i-old', step: 'terminate old', outcome: 'done', message: '' });
    expect(msg.text).not.toContain('keeps serving');
  });
});

describe('renderPlain', () => {
  it('renders a taint notice for a terminal: facts, who/when/what, action; no Slack syntax', () => {
    const out = renderPlain(
      taint([finding(), finding({ detector: 'package-drift', actor: null, at: null, summary: 'a -> b' })], { kind: 'observe' }),
    );
    expect(out).toContain('TAINTED: web-1');
    expect(out).toContain('instance  i-0abc1234def567890');
    expect(out).toContain('account   111122223333 / eu-west-1');
    expect(out).toContain('launched  2026-11-20T08:00:00.000Z');
    expect(out).toContain('when: 2026-11-21T09:30:00.000Z');
    expect(out).toContain(`who:  ${ACTOR}`);
    expect(out).toContain('what: SSM session opened on the instance');
    expect(out).toContain('what: a -> b');
    expect(out).toContain('who:  unknown');
    expect(out).toContain('What pristine will do: Alert only');
    expect(out).not.toMatch(/<!date|&gt;|\*When|:warning:/);
    expect(out.split('\n').length).toBeGreaterThan(8);
  });

  it('caps findings and digest items', () => {
    const many = Array.from({ length: 200 }, () => finding());
    expect(renderPlain(taint(many))).toContain('+190 more findings not shown (200 in total)');
    const items = Array.from({ length: 25 }, () => ({ instance: instance(), findings: [finding()], action: { kind: 'replace' } as const }));
    const d = renderPlain({ type: 'digest', items });
    expect(d).toContain('TAINTED: 25 instances');
    expect(d).toContain('+5 more instances not listed (25 in total)');
  });

  it('renders breaker and progress', () => {
    expect(renderPlain({ type: 'breaker', policy: 'p', tainted: 3, inScope: 4, limitPercent: 10 })).toContain(
      'Breaker tripped for policy p: 3 of 4 in-scope instances are tainted (limit 10%). Nothing will be replaced until this is looked at.',
    );
    expect(
      renderPlain({ type: 'progress', instanceId: 'i-1', step: 'launch', outcome: 'started', message: 'from ami-1', newInstanceId: null }),
    ).toBe('i-1: launch: started - from ami-1');
  });
});

describe('text helpers', () => {
  it('slackDate falls back to the escaped string when it is not a date', () => {
    expect(slackDate('not a date <x>')).toBe('not a date &lt;x&gt;');
  });

  it('clipMrkdwn never cuts inside a token, an entity or a code span', () => {
    const s = 'a'.repeat(10) + '<!date^1^{time}|2026-01-01T00:00:00Z>' + 'b';
    expect(clipMrkdwn(s, 20)).toBe('a'.repeat(10) + '…');
    expect(clipMrkdwn('aaaa&amp;bbbb', 8)).toBe('aaaa…');
    expect(clipMrkdwn('x `abcdefghij`', 8)).toBe('x `abc`…');
    for (let max = 1; max < 60; max++) expect(clipMrkdwn(s + ' `code` &amp; tail', max).length).toBeLessThanOrEqual(max);
    expect(clipMrkdwn('short', 10)).toBe('short');
  });
});
