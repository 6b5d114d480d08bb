// Replacements in the background: side by side within the limits, a daemon that keeps alerting and
// answering /healthz while one drains, two drivers on one state file that never drive the same one, a
// lease taken over when its driver stops, and an Auto Scaling group that scaled out meanwhile keeping
// its size. The real CLI and daemon against moto, the AWS fake and the Slack stand-in.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { SetDesiredCapacityCommand, DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.js';
import { until } from '../support/until.js';
import { readFixtureJson, repoRoot } from '../support/fixtures.js';
import { ACCOUNT, MALLORY, REGION, Scenario, after, type Launched } from '../support/scenario.js';

const DRAIN_SECONDS = 20;

const policy = (replace: string) => `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      notify: { slack: { channel: "#web" } }
      replace: { ${replace} }
      breaker: { taintedShare: 100% }
`;

/** The replacement of one instance, as the state file has it. */
function replacementOf(statePath: string, oldId: string): { id: number; step: string; status: string; lease_owner: string | null } | undefined {
  if (!existsSync(statePath)) return undefined;
  const db = new Database(statePath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT id, step, status, lease_owner FROM replacements WHERE old_instance_id = ?').get(oldId) as never;
  } finally {
    db.close();
  }
}

describe('replacements side by side', () => {
  let s: Scenario;
  const tainted: Launched[] = [];
  let crowded: Launched[];
  let report: Awaited<ReturnType<Scenario['cycle']>>['report'];
  let started: number;
  let finished: number;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(policy('maxPerCycle: 10, maxConcurrent: 10, maxUnavailable: 50%, minAge: 0s, healthTimeout: 2m'));
    const image = await s.image('web');
    // Five target groups, each with one tainted instance of two.
    for (let n = 0; n < 5; n++) {
      const pair = await s.launch(image, { role: 'web' }, { count: 2 });
      await s.targetGroup(`web-${n}`, pair.map((p) => p.instanceId), 80, { deregistrationDelaySeconds: DRAIN_SECONDS });
      tainted.push(pair[0]!);
    }
    // A sixth holding two tainted of two: 50% of two is one at a time.
    crowded = await s.launch(image, { role: 'web' }, { count: 2 });
    await s.targetGroup('web-crowded', crowded.map((p) => p.instanceId), 80, { deregistrationDelaySeconds: DRAIN_SECONDS });
    for (const l of [...tainted, ...crowded]) s.trail('ssm-start-session', l.instanceId, l.launchTime + 1000, MALLORY);
    await after(Math.max(...[...tainted, ...crowded].map((l) => l.launchTime)) + 1500);
    s.fake.calls.length = 0;
    started = Date.now();
    report = (await s.cycle([], {})).report;
    finished = Date.now();
  });
  afterAll(() => s?.stop());

  it('replaces the five at once, in about the time of one, and holds the second of a group at its maxUnavailable', () => {
    const done = report.replacements.filter((r) => r.status === 'done').map((r) => r.oldInstanceId);
    expect(done).toHaveLength(6);
    expect(done).toEqual(expect.arrayContaining(tainted.map((t) => t.instanceId)));
    const heldCrowded = report.actions.filter((a) => crowded.some((c) => c.instanceId === a.instanceId) && a.action.kind === 'hold');
    expect(heldCrowded).toEqual([expect.objectContaining({ action: { kind: 'hold', reason: expect.stringMatching(/^maxUnavailable reached in .*web-crowded/) } })]);
    // Six drains of 20 s one after another would take two minutes.
    const deregistered = s.fake.callsTo('DeregisterTargets').map((c) => c.at);
    expect(deregistered).toHaveLength(6);
    expect(Math.max(...deregistered) - Math.min(...deregistered)).toBeLessThan(DRAIN_SECONDS * 1000);
    expect(finished - started).toBeLessThan(2 * DRAIN_SECONDS * 1000 + 60_000);
  });

  it('terminates each old instance only once its group drained, and polls them together', () => {
    for (const t of s.fake.callsTo('TerminateInstances')) {
      const id = new URLSearchParams(t.body).get('InstanceId.1');
      const dereg = s.fake.callsTo('DeregisterTargets').find((c) => new URLSearchParams(c.body).get('Targets.member.1.Id') === id);
      expect(dereg, `no DeregisterTargets for ${id}`).toBeDefined();
      expect(t.at - dereg!.at).toBeGreaterThanOrEqual(DRAIN_SECONDS * 1000);
    }
    // One DescribeInstanceStatus for the fresh instances waiting together, not one each.
    expect(s.fake.callsTo('DescribeInstanceStatus').some((c) => new URLSearchParams(c.body).has('InstanceId.2'))).toBe(true);
  });
});

describe('a daemon whose replacement drains', () => {
  let s: Scenario;
  let web: Launched[];
  let queueUrl: string;
  let daemon: Daemon;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(policy('maxUnavailable: 50%, minAge: 0s, healthTimeout: 2m'));
    web = await s.launch(await s.image('web'), { role: 'web' }, { count: 3 });
    await s.targetGroup('web', web.map((w) => w.instanceId), 80, { deregistrationDelaySeconds: DRAIN_SECONDS });
    queueUrl = await s.queue('pristine-events');
    await s.writeConfig(`sources:\n  queues: ["${queueUrl}"]\n`);
    s.trail('ssm-start-session', web[0]!.instanceId, web[0]!.launchTime + 1000, MALLORY);
    await after(Math.max(...web.map((w) => w.launchTime)) + 1500);
  });
  afterAll(async () => {
    await daemon?.kill();
    await s?.stop();
  });

  it('alerts a new taint and answers /healthz 200 while the replacement waits on the drain', async () => {
    const args = ['--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', s.statePath, '--schedule', '0 0 1 1 *', '--listen', '127.0.0.1:0'];
    daemon = new Daemon(args, s.env(s.slackEnv()), s.dir);
    const url = await daemon.url();
    await daemon.waitFor('cycle finished', 60_000);
    await until('the replacement waits on the drain', () => replacementOf(s.statePath, web[0]!.instanceId)?.step === 'wait-drained', 60_000);

    const record = s.trail('ssm-start-session', web[1]!.instanceId, web[1]!.launchTime + 1000, MALLORY);
    s.fake.cloudtrail.records.pop();
    const envelope = { ...readFixtureJson<Record<string, unknown>>('eventbridge/ssm-start-session.json'), account: ACCOUNT, region: REGION, detail: record };
    await s.send(queueUrl, envelope);
    const alert = await s.slack.waitFor((m) => m.thread_ts === null && (m.text ?? '').includes(web[1]!.instanceId), 15_000);
    expect(alert.channel).toBe('#web');
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(replacementOf(s.statePath, web[0]!.instanceId)).toMatchObject({ step: 'wait-drained', status: 'in-progress' });

    await until('the replacement is done', () => replacementOf(s.statePath, web[0]!.instanceId)?.status === 'done', 90_000);
    expect((await daemon.stop(30_000)).code).toBe(0);
  });
});

describe('two drivers on one state file', () => {
  let s: Scenario;
  let web: Launched[];

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(policy('maxUnavailable: 50%, minAge: 0s, healthTimeout: 2m'));
    await s.writeConfig('leaseTtl: 3s\n');
    web = await s.launch(await s.image('web'), { role: 'web' }, { count: 2 });
    await s.targetGroup('web', web.map((w) => w.instanceId), 80, { deregistrationDelaySeconds: 30 });
    s.trail('ssm-start-session', web[0]!.instanceId, web[0]!.launchTime + 1000, MALLORY);
    await after(Math.max(...web.map((w) => w.launchTime)) + 1500);
  });
  afterAll(() => s?.stop());

  it('never drive the same replacement: the second sees the lease; when the first stops renewing it, another takes over', async () => {
    const old = web[0]!.instanceId;
    const args = ['run', '--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', s.statePath];
    const first = spawn(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), ...args], { env: s.env(), cwd: s.dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let firstErr = '';
    first.stderr.on('data', (d: Buffer) => (firstErr += d.toString()));
    const firstExit = new Promise<number | null>((resolve) => first.on('exit', (code) => resolve(code)));
    try {
      await until('the first driver waits on the drain', () => replacementOf(s.statePath, old)?.step === 'wait-drained', 90_000);
      const owner = replacementOf(s.statePath, old)!.lease_owner;
      expect(owner).toMatch(new RegExp(`:${first.pid}:`));

      const second = await s.run(['replace', old, '--yes', '--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', s.statePath]);
      expect(second.code).toBe(2);
      expect(second.stdout).toContain(`is driven by ${owner}`);
      const status = await s.run(['status', '--state', s.statePath]);
      expect(status.stdout).toContain(`driven by ${owner}`);
      expect(status.stdout).toMatch(new RegExp(`waits for ${old} to drain`));

      // The first driver hangs (alive, but renewing nothing): after the lease's 3 s another driver takes over.
      first.kill('SIGSTOP');
      const third = await s.cycle([], {});
      expect(third.report.replacements.find((r) => r.oldInstanceId === old)).toMatchObject({ status: 'done' });
      expect(replacementOf(s.statePath, old)?.lease_owner).toBeNull();
      // Woken up, the first finds nothing left to drive: it writes nothing more, and ends as its audit says.
      first.kill('SIGCONT');
      expect(await firstExit).toBe(1);
      expect(firstErr).not.toMatch(/failed:/);
      const fresh = await s.instances([{ Name: 'tag:pristine:replaces', Values: [old] }]);
      expect(fresh.map((i) => i.State?.Name)).toEqual(['running']);
      expect(await s.state(old)).toBe('terminated');
    } finally {
      first.kill('SIGKILL');
    }
  });
});

describe('an Auto Scaling group that scales out during a replacement', () => {
  let s: Scenario;
  let members: string[];
  const GROUP = 'core';

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(policy('maxUnavailable: 50%, minAge: 0s, healthTimeout: 2m'));
    const image = await s.image('core');
    members = await s.autoScalingGroup(GROUP, image, { role: 'web' }, { desired: 2 });
    const [first] = await s.instances([{ Name: 'instance-id', Values: [members[0]!] }]);
    s.trail('ssm-start-session', members[0]!, first!.LaunchTime!.getTime() + 1000, MALLORY);
    await after(first!.LaunchTime!.getTime() + 2500);
  });
  afterAll(() => s?.stop());

  it('keeps the size it scaled out to: the surge and its undoing are relative', async () => {
    const desired = async () => (await s.autoscaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [GROUP] }))).AutoScalingGroups![0]!.DesiredCapacity;
    // Drive it one turn at a time until the surge is done.
    for (let n = 0; n < 6 && !['surge', 'wait-new'].includes(replacementOf(s.statePath, members[0]!)?.step ?? ''); n++) await s.cycle(['--wait', '0s'], {});
    await until('the surge', async () => (await desired()) === 3, 10_000);
    // Meanwhile the group scales out by one.
    await s.autoscaling.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: GROUP, DesiredCapacity: 4 }));
    const { report } = await s.cycle([], {});
    expect(report.replacements.find((r) => r.oldInstanceId === members[0])).toMatchObject({ status: 'done' });
    expect(await desired()).toBe(3);
  });
});
