// What must never happen, and what must always: limits, windows, the breaker, exemptions, termination
// protection, rollback when a step fails, and a Slack outage that loses nothing. The real `pristine run`.
import { ModifyInstanceAttributeCommand } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, Scenario, after, type CycleReport, type Launched } from '../support/scenario.js';

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
/** A window on a day that is not today (UTC): replacements must hold. */
const closedWindow = `${DAYS[(new Date().getUTCDay() + 3) % 7]} 00:00-00:01 UTC`;

const POLICIES = `
policies:
  - name: web
    scope:
      tags: { role: web }
      exclude: { tags: { "pristine:exempt": "true" } }
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      notify: { slack: { channel: "#web" } }
      replace: { maxPerCycle: 1, maxUnavailable: 50%, minAge: 0s, healthTimeout: 1m }
      breaker: { taintedShare: 50% }
  - name: batch
    scope: { tags: { role: batch } }
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      notify: { slack: { channel: "#batch" } }
      replace: { minAge: 0s }
      breaker: { taintedShare: 50% }
  - name: nightly
    scope: { tags: { role: nightly } }
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      notify: { slack: { channel: "#web" } }
      replace: { minAge: 0s, windows: ["${closedWindow}"] }
      breaker: { taintedShare: 100% }
`;

function action(report: CycleReport, instanceId: string) {
  return report.actions.find((a) => a.instanceId === instanceId)?.action;
}

describe('pristine run: what holds a replacement back, and what happens when things fail', () => {
  let s: Scenario;
  let protectedWeb: Launched;
  let web: Launched[];
  let batch: Launched[];
  let nightly: Launched;
  let tg: string;
  let first: Awaited<ReturnType<Scenario['cycle']>>;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICIES);
    const image = await s.image('base');
    // Launched first, so the oldest: the planner would pick it first.
    protectedWeb = await s.launchOne(image, { role: 'web', Name: 'web-protected' });
    await s.ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: protectedWeb.instanceId, DisableApiTermination: { Value: true } }));
    await after(protectedWeb.launchTime + 1000);
    web = await s.launch(image, { role: 'web' }, { count: 6 });
    const exempt = await s.launchOne(image, { role: 'web', Name: 'web-exempt', 'pristine:exempt': 'true' });
    tg = await s.targetGroup('web', [protectedWeb, ...web, exempt].map((w) => w.instanceId));
    batch = await s.launch(image, { role: 'batch' }, { count: 2 });
    nightly = await s.launchOne(image, { role: 'nightly' });
    for (const l of [protectedWeb, web[0]!, web[1]!, exempt, ...batch, nightly]) s.trail('ssm-start-session', l.instanceId, l.launchTime + 1000, ALICE);
    await after(Math.max(nightly.launchTime, ...batch.map((b) => b.launchTime)) + 1500);
    first = await s.cycle();
  });
  afterAll(() => s?.stop());

  it('holds the instance with termination protection and gives its place to the next one', () => {
    expect(action(first.report, protectedWeb.instanceId)).toEqual({ kind: 'hold', reason: 'termination protection is on: a human must decide' });
    expect(first.report.replacements.map((r) => [r.oldInstanceId, r.status])).toEqual([[web[0]!.instanceId, 'done']]);
  });

  it('starts no more than maxPerCycle replacements', () => {
    expect(action(first.report, web[1]!.instanceId)).toEqual({ kind: 'hold', reason: 'maxPerCycle 1 reached: next cycle' });
  });

  it('leaves an exempt instance alone', async () => {
    expect(first.report.summary.exempt).toBe(1);
    expect(await s.state(protectedWeb.instanceId)).toBe('running');
  });

  it('trips the breaker when more of a policy\'s fleet is tainted than it allows: nothing replaced, one loud message', async () => {
    for (const b of batch) {
      expect(action(first.report, b.instanceId)).toMatchObject({ kind: 'hold', reason: expect.stringMatching(/^breaker tripped: 2 of 2/) });
      expect(await s.state(b.instanceId)).toBe('running');
    }
    expect(first.report.breakers).toEqual([{ policy: 'batch', tainted: 2, inScope: 2, limitPercent: 50 }]);
    const loud = s.slack.topLevel('#batch').filter((m) => /Breaker tripped/.test(m.text ?? ''));
    expect(loud).toHaveLength(1);
  });

  it('holds outside the replacement windows', async () => {
    expect(action(first.report, nightly.instanceId)).toMatchObject({ kind: 'hold', reason: expect.stringContaining('outside the replacement windows') });
    expect(await s.state(nightly.instanceId)).toBe('running');
  });

  it('rolls back when a step fails, while Slack is down: the old instance keeps serving, the fresh one is removed', async () => {
    const sentBefore = s.slack.messages.length;
    s.slack.down('http500');
    s.fake.fail('RegisterTargets', { code: 'AccessDenied', status: 403, message: 'injected' });
    const { report } = await s.cycle();
    s.fake.clearFailures();
    const r = report.replacements.find((x) => x.oldInstanceId === web[1]!.instanceId);
    expect(r).toMatchObject({ status: 'rolled-back', error: expect.stringMatching(/^register: .*injected/) });
    expect(await s.state(web[1]!.instanceId)).toBe('running');
    expect((await s.targets(tg))[web[1]!.instanceId]).toBe('healthy');
    const orphans = await s.instances([{ Name: 'tag:pristine:replaces', Values: [web[1]!.instanceId] }, { Name: 'instance-state-name', Values: ['pending', 'running'] }]);
    expect(orphans).toEqual([]);
    expect(s.slack.messages.length).toBe(sentBefore);
  });

  it('keeps the messages while Slack stays down for a second cycle, and does not retry a rolled-back replacement by itself', async () => {
    const { report } = await s.cycle();
    expect(action(report, web[1]!.instanceId)).toMatchObject({ kind: 'hold', reason: expect.stringContaining('was rolled back') });
    expect(report.replacements).toEqual([]);
    const status = await s.run(['status', '--state', s.statePath]);
    expect(status.stdout).toMatch(/Slack outbox: [1-9]\d* waiting/);
  });

  it('delivers everything that waited, in order and once, when Slack is back', async () => {
    s.slack.down(null);
    const before = s.slack.messages.length;
    await s.cycle();
    const delivered = s.slack.messages.slice(before);
    expect(delivered.length).toBeGreaterThanOrEqual(3);
    const alert = s.slack.topLevel('#web').find((m) => (m.text ?? '').includes(web[1]!.instanceId))!;
    const thread = s.slack.replies(alert.ts).map((m) => m.text);
    expect(thread[0]).toMatch(/Replacing/);
    expect(thread[thread.length - 1]).toMatch(/rolled back/i);
    const texts = s.slack.messages.map((m) => `${m.channel} ${m.thread_ts} ${m.text}`);
    expect(new Set(texts).size).toBe(texts.length);
  });

  it('pristine replace retries it on demand, and then it is done', async () => {
    const r = await s.run(['replace', web[1]!.instanceId, '--yes', '--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', s.statePath], s.slackEnv());
    expect(r.stderr).not.toMatch(/error/i);
    expect([r.code, r.stdout]).toEqual([0, expect.stringMatching(new RegExp(`^replaced ${web[1]!.instanceId} with i-\\w+`))]);
    expect(await s.state(web[1]!.instanceId)).toBe('terminated');
  });

  it('pristine replace refuses an instance with termination protection, one out of scope, and acts only when confirmed', async () => {
    const base = ['--yes', '--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', s.statePath];
    const protectedRun = await s.run(['replace', protectedWeb.instanceId, ...base]);
    expect([protectedRun.code, protectedRun.stderr]).toEqual([2, expect.stringContaining('termination protection is on')]);
    const outOfScope = await s.run(['replace', 'i-0123456789abcdef0', ...base]);
    expect([outOfScope.code, outOfScope.stderr]).toEqual([2, expect.stringContaining('not a running instance in scope')]);
    // Without --yes it asks; with nobody at a terminal to answer, it does nothing.
    const unconfirmed = await s.run(['replace', web[3]!.instanceId, ...base.filter((a) => a !== '--yes')]);
    expect([unconfirmed.code, unconfirmed.stderr]).toEqual([2, expect.stringContaining('not confirmed: run with --yes')]);
    expect(await s.state(web[3]!.instanceId)).toBe('running');
  });

  it('retries, and does not roll back, a step that fails after the old instance left the load balancer', async () => {
    const target = web[2]!;
    s.trail('ssm-start-session', target.instanceId, target.launchTime + 2000, ALICE);
    s.fake.fail('TerminateInstances', { code: 'UnauthorizedOperation', status: 403, message: 'injected' });
    const { report } = await s.cycle();
    s.fake.clearFailures();
    const r = report.replacements.find((x) => x.oldInstanceId === target.instanceId);
    expect(r).toMatchObject({ status: 'in-progress', step: 'terminate-old', error: expect.stringMatching(/^terminate-old: .*injected/) });
    const targets = await s.targets(tg);
    expect(targets[r!.newInstanceId!]).toBe('healthy');
    expect(targets[target.instanceId]).toBeUndefined();
    expect(await s.state(target.instanceId)).toBe('running');

    const next = await s.cycle();
    expect(next.report.replacements.find((x) => x.oldInstanceId === target.instanceId)).toMatchObject({ status: 'done', newInstanceId: r!.newInstanceId });
    expect(await s.state(target.instanceId)).toBe('terminated');
    const alert = s.slack.topLevel('#web').find((m) => (m.text ?? '').includes(target.instanceId))!;
    const thread = s.slack.replies(alert.ts).map((m) => m.text ?? '');
    expect(thread.filter((t) => /terminate-old/.test(t) && /retries/.test(t))).toHaveLength(1);
  });
});
