import { describe, expect, it } from 'vitest';
import { evaluateScope, type InstanceResult, type Verdict } from '../../src/core/evaluate.js';
import type { Gap, Instance } from '../../src/core/facts.js';
import { plan, type Placement, type PlanInput, type PriorReplacement } from '../../src/core/plan.js';
import { allowedOf } from '../../src/core/share.js';
import type { PlannedAction } from '../../src/notify/types.js';
import type { LoadedPolicy } from '../../src/policy/schema.js';
import { FIXTURE_INSTANCE, FIXTURE_NOW, cleanInventory, facts, instance, manifest, manifests, policies, trailActivity } from '../support/facts.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** Wednesday 2026-11-18 10:00 UTC: 11:00 in Berlin (CET), a working day. */
const NOW = Date.parse('2026-11-18T10:00:00Z');

const TG = 'arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/web/0123456789abcdef';
const TG2 = 'arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/api/fedcba9876543210';

/** One policy named `web` with the given `respond` block (YAML flow or block text, indented by the caller). */
function web(respond: string, name = 'web'): string {
  return `
policies:
  - name: ${name}
    scope: { tags: { role: web } }
    detect: { interactive-session: {} }
    respond: ${respond}
`;
}

function policyMap(...yamls: string[]): Map<string, LoadedPolicy> {
  return new Map(yamls.flatMap((y) => policies(y)).map((p) => [p.name, p]));
}

function result(id: string, verdict: Verdict, over: { launchTime?: number; policy?: string; gaps?: Gap[] } = {}): InstanceResult {
  const inst: Instance = instance({ instanceId: id, launchTime: over.launchTime ?? NOW - 7 * DAY });
  return { instance: inst, policy: over.policy ?? 'web', verdict, findings: [], gaps: over.gaps ?? [] };
}

/** `n` pristine instances, to keep the breaker's share low. */
function pristineFleet(n: number, policy = 'web'): InstanceResult[] {
  return Array.from({ length: n }, (_, k) => result(`i-pristine${String(k).padStart(4, '0')}`, 'pristine', { policy }));
}

function input(
  pols: Map<string, LoadedPolicy>,
  results: Array<InstanceResult | { result: InstanceResult; regionComplete: boolean }>,
  over: Partial<Omit<PlanInput, 'policies' | 'results'>> = {},
): PlanInput {
  return {
    now: NOW,
    results: results.map((r) => ('regionComplete' in r ? r : { result: r, regionComplete: true })),
    policies: pols,
    prior: new Map(),
    placement: new Map(),
    dryRun: false,
    ...over,
  };
}

function placed(entries: Record<string, Record<string, number>>): Map<string, Placement> {
  return new Map(Object.entries(entries).map(([id, groups]) => [id, { groups: new Map(Object.entries(groups)) }]));
}

function actions(p: ReturnType<typeof plan>): Record<string, PlannedAction> {
  return Object.fromEntries(p.decisions.map((d) => [d.instanceId, d.action]));
}

const hold = (reason: string | RegExp) => ({ kind: 'hold', reason: typeof reason === 'string' ? reason : expect.stringMatching(reason) });

describe('plan: mode', () => {
  it('observe mode alerts only: an observe decision, nothing to replace', () => {
    // Prepare
    const pols = policyMap(web('{ mode: observe }'));
    const results = [result('i-tainted', 'tainted'), ...pristineFleet(3)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.decisions).toEqual([{ instanceId: 'i-tainted', policy: 'web', action: { kind: 'observe' } }]);
    expect(p.replace).toEqual([]);
    expect(p.breakers).toEqual([]);
  });

  it('observe is the default mode', () => {
    // Prepare
    const pols = policyMap(web('{}'));

    // Act
    const p = plan(input(pols, [result('i-tainted', 'tainted'), ...pristineFleet(3)]));

    // Assess
    expect(actions(p)).toEqual({ 'i-tainted': { kind: 'observe' } });
    expect(p.replace).toEqual([]);
  });

  it('enforce mode replaces a tainted instance, and decides nothing for pristine or unknown ones', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce }'));
    const results = [result('i-tainted', 'tainted'), result('i-unknown', 'unknown'), ...pristineFleet(2)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.decisions).toEqual([{ instanceId: 'i-tainted', policy: 'web', action: { kind: 'replace' } }]);
    expect(p.replace).toEqual(['i-tainted']);
  });

  it('a dry run says what would be replaced and replaces nothing', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce }'));

    // Act
    const p = plan(input(pols, [result('i-tainted', 'tainted'), ...pristineFleet(3)], { dryRun: true }));

    // Assess
    expect(actions(p)).toEqual({ 'i-tainted': { kind: 'dry-run' } });
    expect(p.replace).toEqual([]);
  });

  it('a dry run counts against maxPerCycle like a real run', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 1 } }'));
    const results = [result('i-old', 'tainted', { launchTime: NOW - 9 * DAY }), result('i-new', 'tainted', { launchTime: NOW - 8 * DAY }), ...pristineFleet(6)];

    // Act
    const p = plan(input(pols, results, { dryRun: true }));

    // Assess
    expect(actions(p)).toEqual({ 'i-old': { kind: 'dry-run' }, 'i-new': hold('maxPerCycle 1 reached: next cycle') });
    expect(p.replace).toEqual([]);
  });

  it('ignores results whose policy is not loaded', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce }'));
    const results = [result('i-stray', 'tainted', { policy: 'gone' }), ...pristineFleet(3)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p).toEqual({ decisions: [], replace: [], breakers: [] });
  });

  it('plans from evaluateScope’s verdicts: an SSM session on an instance is replaced', () => {
    // Prepare
    const baked = manifest();
    const others = ['i-0b1b2c3d4e5f60718', 'i-0c1b2c3d4e5f60718'];
    const ids = [FIXTURE_INSTANCE, ...others];
    const yaml = `
policies:
  - name: web-immutable
    scope: { tags: { role: web } }
    detect: { interactive-session: {}, package-drift: {} }
    respond: { mode: enforce }
`;
    const loaded = policies(yaml);
    const region = evaluateScope(
      facts({
        instances: ids.map((id) => instance({ instanceId: id })),
        inventory: new Map(ids.map((id) => [id, cleanInventory(baked, id)])),
        activities: [trailActivity('ssm-start-session')],
      }),
      loaded,
      manifests(baked),
      FIXTURE_NOW,
    );
    expect(region.results.map((r) => [r.instance.instanceId, r.verdict])).toEqual([
      [FIXTURE_INSTANCE, 'tainted'],
      [others[0], 'pristine'],
      [others[1], 'pristine'],
    ]);

    // Act
    const p = plan({
      now: FIXTURE_NOW,
      results: region.results.map((r) => ({ result: r, regionComplete: true })),
      policies: new Map(loaded.map((x) => [x.name, x])),
      prior: new Map(),
      placement: new Map(),
      dryRun: false,
    });

    // Assess
    expect(p.decisions).toEqual([{ instanceId: FIXTURE_INSTANCE, policy: 'web-immutable', action: { kind: 'replace' } }]);
    expect(p.replace).toEqual([FIXTURE_INSTANCE]);
  });
});

describe('plan: a replacement already known', () => {
  it.each<[PriorReplacement['status'], string | RegExp]>([
    ['in-progress', 'a replacement is under way (step wait-healthy)'],
    ['done', 'already replaced; the old instance should be gone'],
    ['rolled-back', /^the last replacement was rolled back: run `pristine replace i-tainted` to try again$/],
    ['failed', /^the last replacement failed: run `pristine replace i-tainted` to try again$/],
  ])('holds an instance whose last replacement is %s', (status, reason) => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce }'));
    const prior = new Map<string, PriorReplacement>([['i-tainted', { status, step: 'wait-healthy', groups: [] }]]);

    // Act
    const p = plan(input(pols, [result('i-tainted', 'tainted'), ...pristineFleet(3)], { prior }));

    // Assess
    expect(actions(p)).toEqual({ 'i-tainted': hold(reason) });
    expect(p.replace).toEqual([]);
  });

  it('a held prior replacement does not use up maxPerCycle', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 1 } }'));
    const prior = new Map<string, PriorReplacement>([['i-old', { status: 'done', step: 'terminate-old', groups: [] }]]);
    const results = [result('i-old', 'tainted', { launchTime: NOW - 9 * DAY }), result('i-new', 'tainted', { launchTime: NOW - 8 * DAY }), ...pristineFleet(6)];

    // Act
    const p = plan(input(pols, results, { prior }));

    // Assess
    expect(p.replace).toEqual(['i-new']);
  });
});

describe('plan: breaker', () => {
  it('trips when more than taintedShare of the policy’s instances are tainted: all held, one breaker', () => {
    // Prepare: 3 of 4 tainted, limit 50%
    const pols = policyMap(web('{ mode: enforce, breaker: { taintedShare: "50%" }, replace: { maxPerCycle: 10 } }'));
    const results = [result('i-a', 'tainted'), result('i-b', 'tainted'), result('i-c', 'tainted'), ...pristineFleet(1)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    const reason = 'breaker tripped: 3 of 4 instances tainted';
    expect(actions(p)).toEqual({ 'i-a': hold(reason), 'i-b': hold(reason), 'i-c': hold(reason) });
    expect(p.replace).toEqual([]);
    expect(p.breakers).toEqual([{ policy: 'web', tainted: 3, inScope: 4, limitPercent: 50 }]);
  });

  it('50% is the default limit', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 10 } }'));
    const results = [result('i-a', 'tainted'), result('i-b', 'tainted'), result('i-c', 'tainted'), ...pristineFleet(1)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.breakers).toEqual([{ policy: 'web', tainted: 3, inScope: 4, limitPercent: 50 }]);
    expect(p.replace).toEqual([]);
  });

  it('does not trip exactly at the limit (2 of 4 at 50%)', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, breaker: { taintedShare: "50%" }, replace: { maxPerCycle: 10 } }'));
    const results = [result('i-a', 'tainted'), result('i-b', 'tainted'), ...pristineFleet(2)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.breakers).toEqual([]);
    expect(actions(p)).toEqual({ 'i-a': { kind: 'replace' }, 'i-b': { kind: 'replace' } });
  });

  it('counts unknown instances as in scope', () => {
    // Prepare: 2 tainted of 2 would trip; with 2 unknown alongside it is 2 of 4
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 10 } }'));
    const results = [result('i-a', 'tainted'), result('i-b', 'tainted'), result('i-u1', 'unknown'), result('i-u2', 'unknown')];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.breakers).toEqual([]);
    expect(p.replace.sort()).toEqual(['i-a', 'i-b']);
  });

  it.each([
    [2, false],
    [3, true],
  ])('a count limit (taintedShare: 2) with %i of 10 tainted trips: %s', (taintedCount, trips) => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, breaker: { taintedShare: 2 }, replace: { maxPerCycle: 10 } }'));
    const tainted = Array.from({ length: taintedCount }, (_, k) => result(`i-t${k}`, 'tainted'));
    const results = [...tainted, ...pristineFleet(10 - taintedCount)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.breakers).toHaveLength(trips ? 1 : 0);
    expect(p.replace).toHaveLength(trips ? 0 : taintedCount);
    if (trips) expect(Object.values(actions(p))).toEqual(tainted.map(() => hold(`breaker tripped: ${taintedCount} of 10 instances tainted`)));
  });

  it('is per policy: a tripped policy does not hold another policy’s instances', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 10 } }', 'web'), web('{ mode: enforce }', 'api'));
    const results = [
      result('i-web1', 'tainted'),
      result('i-web2', 'tainted'),
      ...pristineFleet(1, 'web'),
      result('i-api1', 'tainted', { policy: 'api' }),
      ...pristineFleet(3, 'api').map((r) => ({ ...r, instance: { ...r.instance, instanceId: `${r.instance.instanceId}-api` } })),
    ];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.breakers.map((b) => b.policy)).toEqual(['web']);
    expect(p.replace).toEqual(['i-api1']);
  });

  it('an observe policy over its limit records no breaker and only observes', () => {
    // Prepare
    const pols = policyMap(web('{ mode: observe }'));
    const results = [result('i-a', 'tainted'), result('i-b', 'tainted'), result('i-c', 'tainted'), ...pristineFleet(1)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.breakers).toEqual([]);
    expect(Object.values(actions(p))).toEqual([{ kind: 'observe' }, { kind: 'observe' }, { kind: 'observe' }]);
  });

  it('reports a 29% limit as limitPercent 29, not 28.999999999999996', () => {
    // Prepare: 30 of 100 tainted, limit 29%
    const pols = policyMap(web('{ mode: enforce, breaker: { taintedShare: "29%" } }'));
    const results = [...Array.from({ length: 30 }, (_, k) => result(`i-t${k}`, 'tainted')), ...pristineFleet(70)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.breakers).toEqual([{ policy: 'web', tainted: 30, inScope: 100, limitPercent: 29 }]);
  });

  it('reports a count limit (taintedShare: 2 of 10 in scope) as its share of the fleet, 20%, not as 2%', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, breaker: { taintedShare: 2 } }'));
    const results = [result('i-a', 'tainted'), result('i-b', 'tainted'), result('i-c', 'tainted'), ...pristineFleet(7)];

    // Act
    const p = plan(input(pols, results));

    // Assess: 2 instances of 10 is a 20% limit
    expect(p.breakers).toEqual([{ policy: 'web', tainted: 3, inScope: 10, limitPercent: 20 }]);
  });
});

describe('plan: evidence and age', () => {
  it('holds when the region’s evidence was not read in full', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce }'));
    const results = [{ result: result('i-tainted', 'tainted'), regionComplete: false }, ...pristineFleet(3)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(actions(p)).toEqual({ 'i-tainted': hold('evidence is incomplete: nothing is replaced on partial evidence') });
    expect(p.replace).toEqual([]);
  });

  it('holds when the instance itself has evidence gaps', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce }'));
    const gaps: Gap[] = [{ source: 'ssm-inventory', accountId: '111122223333', region: 'us-east-1', message: 'GetInventory failed', instanceIds: ['i-tainted'] }];
    const results = [result('i-tainted', 'tainted', { gaps }), ...pristineFleet(3)];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(actions(p)).toEqual({ 'i-tainted': hold('evidence is incomplete: nothing is replaced on partial evidence') });
    expect(p.replace).toEqual([]);
  });

  it('holds a tainted instance pristine cannot vouch for either: its image was never recorded', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce }'));
    const tainted = result('i-tainted', 'tainted');
    tainted.findings = [
      { detector: 'interactive-session', key: 'interactive-session:s-1', severity: 'high', effect: 'taint', summary: 'SSM shell session', at: NOW - HOUR, actor: null, evidence: {} },
      { detector: 'unrecorded-image', key: 'unrecorded-image:no-manifest', severity: 'medium', effect: 'unknown', summary: 'image ami-1 has no manifest', at: null, actor: null, evidence: {} },
    ];

    // Act
    const p = plan(input(pols, [tainted, ...pristineFleet(3)]));

    // Assess
    expect(actions(p)).toEqual({ 'i-tainted': hold(/^pristine cannot vouch for what it would launch \(image ami-1 has no manifest\): a human must decide$/) });
    expect(p.replace).toEqual([]);
  });

  it.each([
    [30 * MIN, hold('younger than minAge 60m')],
    [59 * MIN, hold('younger than minAge 60m')],
    [60 * MIN, { kind: 'replace' }],
    [2 * HOUR, { kind: 'replace' }],
  ])('with minAge 1h, an instance launched %i ms ago is decided %o', (age, expected) => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, replace: { minAge: 1h } }'));

    // Act
    const p = plan(input(pols, [result('i-tainted', 'tainted', { launchTime: NOW - age }), ...pristineFleet(3)]));

    // Assess
    expect(actions(p)).toEqual({ 'i-tainted': expected });
  });

  it('the default minAge is 10 minutes', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce }'));

    // Act
    const p = plan(input(pols, [result('i-young', 'tainted', { launchTime: NOW - 9 * MIN }), ...pristineFleet(3)]));

    // Assess
    expect(actions(p)).toEqual({ 'i-young': hold('younger than minAge 10m') });
  });
});

describe('plan: maintenance windows', () => {
  const pols = policyMap(web('{ mode: enforce, replace: { windows: ["Mon-Fri 09:00-17:00 Europe/Berlin"] } }'));

  it.each([
    // winter, CET = UTC+1
    ['2026-11-18T07:30:00Z', 'Wednesday 08:30 in Berlin', false],
    ['2026-11-18T08:00:00Z', 'Wednesday 09:00 in Berlin', true],
    ['2026-11-18T15:59:00Z', 'Wednesday 16:59 in Berlin', true],
    ['2026-11-18T16:00:00Z', 'Wednesday 17:00 in Berlin', false],
    ['2026-11-21T10:00:00Z', 'Saturday 11:00 in Berlin', false],
    ['2026-11-23T08:30:00Z', 'Monday 09:30 in Berlin', true],
    // the week Berlin moves to summer time (Sun 2026-03-29): the same UTC time is an hour later locally
    ['2026-03-23T07:30:00Z', 'Monday 08:30 CET', false],
    ['2026-03-30T07:30:00Z', 'Monday 09:30 CEST', true],
    ['2026-03-30T15:30:00Z', 'Monday 17:30 CEST', false],
    ['2026-03-23T15:30:00Z', 'Monday 16:30 CET', true],
  ])('at %s (%s) replaces: %s', (iso, _local, inside) => {
    // Prepare
    const now = Date.parse(iso);
    const results = [result('i-tainted', 'tainted', { launchTime: now - 7 * DAY }), ...pristineFleet(3)];

    // Act
    const p = plan(input(pols, results, { now }));

    // Assess
    expect(actions(p)).toEqual({
      'i-tainted': inside ? { kind: 'replace' } : hold('outside the replacement windows (Mon-Fri 09:00-17:00 Europe/Berlin)'),
    });
    expect(p.replace).toEqual(inside ? ['i-tainted'] : []);
  });

  it('lists every window in the hold reason', () => {
    // Prepare
    const two = policyMap(web('{ mode: enforce, replace: { windows: ["Sat,Sun 02:00-06:00 UTC", "Wed 22:00-04:00 UTC"] } }'));

    // Act
    const p = plan(input(two, [result('i-tainted', 'tainted'), ...pristineFleet(3)]));

    // Assess
    expect(actions(p)).toEqual({ 'i-tainted': hold('outside the replacement windows (Sat,Sun 02:00-06:00 UTC; Wed 22:00-04:00 UTC)') });
  });
});

describe('plan: maxPerCycle', () => {
  it('replaces the oldest-launched first and holds the rest for the next cycle', () => {
    // Prepare: given out of launch order
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 1 } }'));
    const results = [
      result('i-middle', 'tainted', { launchTime: NOW - 5 * DAY }),
      result('i-oldest', 'tainted', { launchTime: NOW - 9 * DAY }),
      result('i-newest', 'tainted', { launchTime: NOW - 1 * DAY }),
      ...pristineFleet(7),
    ];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.replace).toEqual(['i-oldest']);
    expect(actions(p)).toEqual({
      'i-oldest': { kind: 'replace' },
      'i-middle': hold('maxPerCycle 1 reached: next cycle'),
      'i-newest': hold('maxPerCycle 1 reached: next cycle'),
    });
  });

  it('maxPerCycle 2 replaces the two oldest, in launch order', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 2 } }'));
    const results = [
      result('i-c', 'tainted', { launchTime: NOW - 1 * DAY }),
      result('i-b', 'tainted', { launchTime: NOW - 2 * DAY }),
      result('i-a', 'tainted', { launchTime: NOW - 3 * DAY }),
      ...pristineFleet(7),
    ];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.replace).toEqual(['i-a', 'i-b']);
    expect(actions(p)['i-c']).toEqual(hold('maxPerCycle 2 reached: next cycle'));
  });

  it('an instance held for another reason does not use up the cycle’s replacement', () => {
    // Prepare: the oldest has an evidence gap
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 1 } }'));
    const gaps: Gap[] = [{ source: 'ssm-inventory', accountId: '111122223333', region: 'us-east-1', message: 'stale', instanceIds: ['i-oldest'] }];
    const results = [
      result('i-oldest', 'tainted', { launchTime: NOW - 9 * DAY, gaps }),
      result('i-next', 'tainted', { launchTime: NOW - 5 * DAY }),
      ...pristineFleet(7),
    ];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.replace).toEqual(['i-next']);
  });

  it('maxPerCycle 0 replaces nothing', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 0 } }'));

    // Act
    const p = plan(input(pols, [result('i-tainted', 'tainted'), ...pristineFleet(3)]));

    // Assess
    expect(p.replace).toEqual([]);
    expect(actions(p)).toEqual({ 'i-tainted': hold('maxPerCycle 0 reached: next cycle') });
  });

  it('is counted per policy', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 1 } }', 'web'), web('{ mode: enforce, replace: { maxPerCycle: 1 } }', 'api'));
    const results = [
      result('i-web', 'tainted'),
      ...pristineFleet(3, 'web'),
      result('i-api', 'tainted', { policy: 'api' }),
      ...pristineFleet(3, 'api').map((r) => ({ ...r, instance: { ...r.instance, instanceId: `${r.instance.instanceId}-api` } })),
    ];

    // Act
    const p = plan(input(pols, results));

    // Assess
    expect(p.replace.sort()).toEqual(['i-api', 'i-web']);
  });
});

describe('plan: maxUnavailable', () => {
  const enforce = (maxUnavailable: string | number) => policyMap(web(`{ mode: enforce, replace: { maxPerCycle: 10, maxUnavailable: ${JSON.stringify(maxUnavailable)} } }`));
  /** `n` tainted instances, oldest first, among 10 in scope (the breaker stays quiet up to 5) */
  const taintedFleet = (n: number) => [
    ...Array.from({ length: n }, (_, k) => result(`i-t${k}`, 'tainted', { launchTime: NOW - (10 - k) * DAY })),
    ...pristineFleet(10 - n),
  ];

  it('a target group of 4 at 25% has one replaced at a time', () => {
    // Prepare
    const placement = placed({ 'i-t0': { [TG]: 4 }, 'i-t1': { [TG]: 4 } });

    // Act
    const p = plan(input(enforce('25%'), taintedFleet(2), { placement }));

    // Assess
    expect(p.replace).toEqual(['i-t0']);
    expect(actions(p)).toEqual({ 'i-t0': { kind: 'replace' }, 'i-t1': hold(`maxUnavailable reached in ${TG}`) });
  });

  it('25% is the default', () => {
    // Prepare
    const pols = policyMap(web('{ mode: enforce, replace: { maxPerCycle: 10 } }'));
    const placement = placed({ 'i-t0': { [TG]: 4 }, 'i-t1': { [TG]: 4 } });

    // Act
    const p = plan(input(pols, taintedFleet(2), { placement }));

    // Assess
    expect(p.replace).toEqual(['i-t0']);
  });

  it('holds a new one while a replacement in the same group is in flight', () => {
    // Prepare
    const prior = new Map<string, PriorReplacement>([['i-elsewhere', { status: 'in-progress', step: 'wait-healthy', groups: [TG] }]]);
    const placement = placed({ 'i-t0': { [TG]: 4 } });

    // Act
    const p = plan(input(enforce('25%'), taintedFleet(1), { placement, prior }));

    // Assess
    expect(p.replace).toEqual([]);
    expect(actions(p)).toEqual({ 'i-t0': hold(`maxUnavailable reached in ${TG}`) });
  });

  it('a finished or rolled-back replacement does not hold a place in the group', () => {
    // Prepare
    const prior = new Map<string, PriorReplacement>([
      ['i-gone', { status: 'done', step: 'terminate-old', groups: [TG] }],
      ['i-back', { status: 'rolled-back', step: 'rollback', groups: [TG] }],
    ]);
    const placement = placed({ 'i-t0': { [TG]: 4 } });

    // Act
    const p = plan(input(enforce('25%'), taintedFleet(1), { placement, prior }));

    // Assess
    expect(p.replace).toEqual(['i-t0']);
  });

  it('instances in different groups are replaced together', () => {
    // Prepare
    const placement = placed({ 'i-t0': { [TG]: 4 }, 'i-t1': { [TG2]: 4 } });

    // Act
    const p = plan(input(enforce('25%'), taintedFleet(2), { placement }));

    // Assess
    expect(p.replace).toEqual(['i-t0', 'i-t1']);
  });

  it('an Auto Scaling group key (asg:NAME) is limited the same way', () => {
    // Prepare
    const placement = placed({ 'i-t0': { 'asg:web-asg': 4 }, 'i-t1': { 'asg:web-asg': 4 }, 'i-t2': { 'asg:api-asg': 4 } });

    // Act
    const p = plan(input(enforce('25%'), taintedFleet(3), { placement }));

    // Assess
    expect(p.replace).toEqual(['i-t0', 'i-t2']);
    expect(actions(p)['i-t1']).toEqual(hold('maxUnavailable reached in asg:web-asg'));
  });

  it('an in-flight replacement in an ASG holds a new one in that ASG', () => {
    // Prepare
    const prior = new Map<string, PriorReplacement>([['i-elsewhere', { status: 'in-progress', step: 'launch', groups: ['asg:web-asg'] }]]);
    const placement = placed({ 'i-t0': { 'asg:web-asg': 4 } });

    // Act
    const p = plan(input(enforce('25%'), taintedFleet(1), { placement, prior }));

    // Assess
    expect(actions(p)).toEqual({ 'i-t0': hold('maxUnavailable reached in asg:web-asg') });
  });

  it('an instance in a target group and an ASG is held by whichever is full', () => {
    // Prepare: i-t0 takes the ASG's only place; i-t1 shares the ASG but not the target group
    const placement = placed({ 'i-t0': { 'asg:web-asg': 4, [TG]: 8 }, 'i-t1': { 'asg:web-asg': 4, [TG2]: 8 } });

    // Act
    const p = plan(input(enforce('25%'), taintedFleet(2), { placement }));

    // Assess
    expect(p.replace).toEqual(['i-t0']);
    expect(actions(p)['i-t1']).toEqual(hold('maxUnavailable reached in asg:web-asg'));
  });

  it('25% of a group of 8 allows two at a time', () => {
    // Prepare
    const placement = placed({ 'i-t0': { [TG]: 8 }, 'i-t1': { [TG]: 8 }, 'i-t2': { [TG]: 8 } });

    // Act
    const p = plan(input(enforce('25%'), taintedFleet(3), { placement }));

    // Assess
    expect(p.replace).toEqual(['i-t0', 'i-t1']);
    expect(actions(p)['i-t2']).toEqual(hold(`maxUnavailable reached in ${TG}`));
  });

  it('25% of a group of 3 rounds down to 0 but still allows one at a time', () => {
    // Prepare
    const placement = placed({ 'i-t0': { [TG]: 3 }, 'i-t1': { [TG]: 3 } });

    // Act
    const p = plan(input(enforce('25%'), taintedFleet(2), { placement }));

    // Assess
    expect(p.replace).toEqual(['i-t0']);
  });

  it('a count (maxUnavailable: 2) allows two of a group at a time', () => {
    // Prepare
    const placement = placed({ 'i-t0': { [TG]: 4 }, 'i-t1': { [TG]: 4 }, 'i-t2': { [TG]: 4 } });

    // Act
    const p = plan(input(enforce(2), taintedFleet(3), { placement }));

    // Assess
    expect(p.replace).toEqual(['i-t0', 'i-t1']);
  });

  it('an instance in no group is not limited', () => {
    // Act
    const p = plan(input(enforce('25%'), taintedFleet(3)));

    // Assess
    expect(p.replace).toEqual(['i-t0', 'i-t1', 'i-t2']);
  });
});

describe('allowedOf', () => {
  it.each<[Parameters<typeof allowedOf>[0], number, number]>([
    [{ kind: 'percent', value: 0.25 }, 4, 1],
    [{ kind: 'percent', value: 0.25 }, 8, 2],
    [{ kind: 'percent', value: 0.25 }, 11, 2],
    [{ kind: 'percent', value: 0.25 }, 3, 1],
    [{ kind: 'percent', value: 0.25 }, 0, 1],
    [{ kind: 'percent', value: 1 }, 5, 5],
    [{ kind: 'count', value: 3 }, 10, 3],
    [{ kind: 'count', value: 0 }, 10, 1],
  ])('%o of %i allows %i', (share, size, expected) => {
    // Act
    const n = allowedOf(share, size);

    // Assess
    expect(n).toBe(expected);
  });
});
