// `pristine run` in enforce and observe mode: alerts on Slack, replaces a tainted instance behind its
// target group, and a second cycle sends nothing new. Against moto, the CloudTrail/SSM fake and a Slack stand-in.
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allDeclaredActions } from '../../src/permissions.js';
import { ALICE, Scenario, after, type Launched } from '../support/scenario.js';

const MUTATING = /^(Run|Terminate|Start|Stop|Create|Delete|Modify|Register|Deregister|Set|Update|Attach|Detach|Put|Send)/;

const POLICIES = `
policies:
  - name: web
    scope:
      tags: { role: web }
      exclude: { tags: { "pristine:exempt": "true" } }
    allow: { principals: ["arn:aws:iam::*:role/Deployer*"] }
    detect: { interactive-session: {}, remote-command: {}, instance-modified: {}, package-drift: {}, guard-tampered: {} }
    respond:
      mode: enforce
      notify: { slack: { channel: "#infra-alerts" } }
      replace: { maxPerCycle: 2, maxUnavailable: 50%, minAge: 0s, healthTimeout: 2m }
  - name: api
    scope: { tags: { role: api } }
    detect: { interactive-session: {} }
    respond:
      mode: observe
      notify: { slack: { channel: "#api-alerts" } }
`;

describe('pristine run: enforce and observe', () => {
  let s: Scenario;
  let web: Launched[];
  let api: Launched;
  let tg: string;
  let image: string;
  let tainted: string;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICIES);
    image = await s.image('web');
    web = await s.launch(image, { role: 'web', team: 'storefront' }, { count: 4 });
    api = await s.launchOne(image, { role: 'api', Name: 'api-1' });
    tg = await s.targetGroup('web', web.map((w) => w.instanceId));
    tainted = web[1]!.instanceId;
    s.trail('ssm-start-session', tainted, web[1]!.launchTime + 1000, ALICE);
    s.trail('ssm-start-session', api.instanceId, api.launchTime + 1000, ALICE);
    await after(Math.max(api.launchTime, ...web.map((w) => w.launchTime)) + 1500);
  });
  afterAll(() => s?.stop());

  it('--dry-run prints the plan and changes nothing: no mutating AWS call, no Slack message, no state file', async () => {
    const { code, report } = await s.cycle(['--dry-run']);
    expect(code).toBe(1);
    expect(report.actions).toEqual(
      expect.arrayContaining([
        { instanceId: tainted, policy: 'web', action: { kind: 'dry-run' } },
        { instanceId: api.instanceId, policy: 'api', action: { kind: 'observe' } },
      ]),
    );
    const mutating = s.fake.calls.filter((c) => MUTATING.test(c.operation));
    expect(mutating).toEqual([]);
    expect(s.slack.messages).toEqual([]);
    expect(existsSync(s.statePath)).toBe(false);
  });

  it('replaces the tainted web server: fresh instance of the same image and launch spec in the same target group, old one terminated', async () => {
    s.fake.calls.length = 0;
    const { code, report, stderr } = await s.cycle();
    expect(code).toBe(1);
    expect(report.replacements).toEqual([expect.objectContaining({ oldInstanceId: tainted, status: 'done' })]);
    const fresh = report.replacements[0]!.newInstanceId!;
    expect(await s.state(tainted)).toBe('terminated');
    const [old] = await s.instances([{ Name: 'instance-id', Values: [tainted] }]);
    const [neu] = await s.instances([{ Name: 'instance-id', Values: [fresh] }]);
    expect(neu).toMatchObject({ ImageId: image, InstanceType: old?.InstanceType, SubnetId: old?.SubnetId, State: { Name: 'running' } });
    expect(neu?.SecurityGroups?.map((g) => g.GroupId)).toEqual(old?.SecurityGroups?.map((g) => g.GroupId));
    const tags = Object.fromEntries((neu?.Tags ?? []).map((t) => [t.Key, t.Value]));
    expect(tags).toMatchObject({ role: 'web', team: 'storefront', 'pristine:replaces': tainted });
    const targets = await s.targets(tg);
    expect(targets[fresh]).toBe('healthy');
    expect(targets[tainted]).toBeUndefined();
    expect(Object.keys(targets)).toHaveLength(4);
    // The observe-mode instance is alerted on and left alone.
    expect(await s.state(api.instanceId)).toBe('running');
    expect(stderr).not.toContain('xoxb-test-token-do-not-log');
  });

  it('terminated the old instance only after the fresh one was healthy in the target group', () => {
    const ops = s.fake.calls.map((c) => c.operation);
    const lastHealthCheck = ops.lastIndexOf('DescribeTargetHealth', ops.indexOf('DeregisterTargets'));
    expect(ops.indexOf('RunInstances')).toBeLessThan(ops.indexOf('RegisterTargets'));
    expect(ops.indexOf('RegisterTargets')).toBeLessThan(lastHealthCheck);
    expect(lastHealthCheck).toBeLessThan(ops.indexOf('DeregisterTargets'));
    expect(ops.indexOf('DeregisterTargets')).toBeLessThan(ops.indexOf('TerminateInstances'));
  });

  it('tells Slack: one message per tainted instance, and the replacement as replies in its thread', () => {
    const top = s.slack.topLevel();
    expect(top.map((m) => m.channel).sort()).toEqual(['#api-alerts', '#infra-alerts']);
    const alert = top.find((m) => m.channel === '#infra-alerts')!;
    expect(alert.text).toContain(tainted);
    expect(JSON.stringify(alert.blocks)).toContain('arn:aws:sts::123456789012:assumed-role/Admin/alice');
    expect(JSON.stringify(alert.blocks)).toMatch(/[Rr]eplace/);
    const replies = s.slack.replies(alert.ts).map((m) => m.text);
    expect(replies.length).toBeGreaterThanOrEqual(3);
    expect(replies[0]).toMatch(/Replacing/);
    expect(replies[replies.length - 1]).toMatch(/Replaced: i-\w+ serves in place of/);
    const apiAlert = top.find((m) => m.channel === '#api-alerts')!;
    expect(JSON.stringify(apiAlert.blocks)).toMatch(/observe/);
    expect(s.slack.messages.every((m) => m.token === 'xoxb-test-token-do-not-log')).toBe(true);
  });

  it('declares every IAM action it called', () => {
    const declared = allDeclaredActions();
    const called = [...new Set(s.fake.calls.map((c) => `${c.service}:${c.operation}`))];
    expect(called.filter((a) => !declared.has(a))).toEqual([]);
    expect(called).toEqual(expect.arrayContaining(['ec2:RunInstances', 'elasticloadbalancing:RegisterTargets', 'ec2:TerminateInstances']));
  });

  it('sends nothing new on the next cycle, and replaces nothing twice', async () => {
    const before = s.slack.messages.length;
    const fresh = (await s.instances([{ Name: 'tag:pristine:replaces', Values: [tainted] }]))[0]!.InstanceId!;
    s.cleanInventory(fresh);
    const { code, report } = await s.cycle();
    expect(code).toBe(1); // the observe-mode instance is still tainted
    expect(report.replacements).toEqual([]);
    expect(s.slack.messages.length).toBe(before);
    expect(report.instances.find((i) => i.instanceId === fresh)?.verdict).toBe('pristine');
    expect((await s.instances([{ Name: 'tag:pristine:replaces', Values: [tainted] }])).length).toBe(1);
  });

  it('--dry-run with a state file reads it and writes nothing to it: no evidence, coverage, cycle or reconcile time', async () => {
    const snapshot = () => {
      const db = new Database(s.statePath, { readonly: true });
      try {
        const tables = ['activities', 'coverage_spans', 'cycles', 'instances', 'findings', 'outbox', 'replacements', 'journal', 'trail_files', 'digests'];
        return { counts: tables.map((t) => db.prepare(`SELECT count(*) AS n FROM ${t}`).get()), meta: db.prepare('SELECT key, value FROM meta ORDER BY key').all(), spans: db.prepare('SELECT * FROM coverage_spans ORDER BY kind, from_ms').all() };
      } finally {
        db.close();
      }
    };
    const before = snapshot();
    const { code } = await s.cycle(['--dry-run']);
    expect(code).toBe(1);
    expect(snapshot()).toEqual(before);
  });

  it('shows open findings and history in pristine status', async () => {
    const r = await s.run(['status', '--state', s.statePath]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${api.instanceId} (api-1)`);
    expect(r.stdout).toMatch(new RegExp(`replacement #1 ${tainted} -> i-\\w+ done`));
    expect(r.stdout).toContain('Replacements in flight (0)');
  });
});
