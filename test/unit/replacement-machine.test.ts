// The replacement state machine, turn by turn, against stubbed AWS clients and each store (SQLite in
// memory, and a fresh PostgreSQL database where its server binaries are): which step follows which,
// what a poll that is not ready does, what a transient error, a failure before and after the point of
// no return, and a lost lease do.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ScopeClients } from '../../src/collect/clients.js';
import { PollCache } from '../../src/respond/polls.js';
import { Replacer, type Candidate } from '../../src/respond/replacement.js';
import { openStateStore } from '../../src/state/open.js';
import { LeaseLostError, type Fence, type ReplacementRow, type StateStore } from '../../src/state/ports.js';
import { freshStore, STORE_BACKENDS, type StoreBackend } from '../support/postgres.js';

const logger = pino({ level: 'silent' });
const TG = 'arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/web/1';
const OLD = 'i-0000000000000old0';
const NEW = 'i-0000000000000new0';

type Handler = (input: Record<string, unknown>) => unknown;

/** Clients whose `send` answers by command name; `calls` records every one. */
function stubClients(handlers: Record<string, Handler>) {
  const calls: string[] = [];
  const client = {
    send: async (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
      const name = command.constructor.name.replace(/Command$/, '');
      calls.push(name);
      const h = handlers[name];
      if (!h) throw new Error(`unexpected call ${name}`);
      return h(command.input);
    },
  };
  const clients = { accountId: '111122223333', region: 'us-east-1', ec2: client, elbv2: client, elb: client, autoscaling: client, cloudtrail: client, ssm: client } as unknown as ScopeClients;
  return { clients, calls };
}

function world(over: Record<string, Handler> = {}) {
  const targets = new Map<string, string>([[`${OLD}:80`, 'healthy']]);
  let launched = false;
  const handlers: Record<string, Handler> = {
    DescribeInstances: (input) => {
      if (Array.isArray(input['Filters'])) return { Reservations: launched ? [{ Instances: [{ InstanceId: NEW, LaunchTime: new Date() }] }] : [] };
      return { Reservations: [{ Instances: [{ InstanceId: OLD, State: { Name: 'running' }, InstanceType: 'm5.large', Tags: [{ Key: 'role', Value: 'web' }], SubnetId: 'subnet-1' }] }] };
    },
    DescribeInstanceAttribute: () => ({ UserData: { Value: 'IyEvYmluL3No' } }),
    RunInstances: () => {
      launched = true;
      return { Instances: [{ InstanceId: NEW }] };
    },
    DescribeInstanceStatus: () => ({ InstanceStatuses: [{ InstanceId: NEW, InstanceState: { Name: 'running' }, InstanceStatus: { Status: 'ok' }, SystemStatus: { Status: 'ok' } }] }),
    RegisterTargets: () => {
      targets.set(`${NEW}:80`, 'healthy');
      return {};
    },
    DescribeTargetHealth: () => ({ TargetHealthDescriptions: [...targets].map(([k, State]) => ({ Target: { Id: k.split(':')[0], Port: 80 }, TargetHealth: { State } })) }),
    DescribeTargetGroupAttributes: () => ({ Attributes: [{ Key: 'deregistration_delay.timeout_seconds', Value: '0' }] }),
    DeregisterTargets: (input) => {
      for (const t of input['Targets'] as Array<{ Id: string }>) targets.delete(`${t.Id}:80`);
      return {};
    },
    TerminateInstances: () => ({}),
    ...over,
  };
  return { ...stubClients(handlers), targets };
}


const stores: StateStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

/** The old instance as the cycle hands it to the replacer. */
function candidateOf(over: Partial<Candidate>): Candidate {
  return {
    instanceId: OLD,
    accountId: '111122223333',
    region: 'us-east-1',
    imageId: 'ami-0c0ffee1234567890',
    policy: 'web',
    healthTimeoutMs: 60_000,
    channel: '#web',
    alertOutboxId: null,
    placement: undefined,
    guardTagKeys: [],
    holds: [],
    moveElasticIp: false,
    ...over,
  };
}

async function setup(over: Record<string, Handler> = {}, pollMs = { first: 10, max: 20, retry: 50 }, backend: StoreBackend = 'sqlite') {
  const store = await openStateStore(await freshStore(backend, ':memory:'));
  stores.push(store);
  const w = world(over);
  const replacer = new Replacer({ store, clientsFor: () => w.clients, logger, pollMs });
  const row = (await replacer.create(candidateOf({ placement: { groups: new Map([[TG, 2]]), targetGroups: [{ arn: TG, port: 80 }], autoScalingGroup: null, classicLoadBalancers: [], ipTargetGroups: [], elasticIp: null, instanceStore: false } }))) as ReplacementRow;
  const fence = (await store.claimReplacement(row.id, 'test:1:a', 60_000)) as Fence;
  const turn = async () => replacer.turn((await store.replacement(row.id)) as ReplacementRow, fence, new PollCache(() => w.clients));
  return { store, replacer, row, fence, turn, ...w };
}

describe.each(STORE_BACKENDS)('the replacement state machine on $backend', ({ backend, missing }) => {
  if (missing) {
    it.skip(`skipped: ${missing}`, () => undefined);
    return;
  }
  const setupOn = (over: Record<string, Handler> = {}, pollMs?: { first: number; max: number; retry: number }) => setup(over, pollMs, backend);

  it('advances one step a turn, from prepare to done, and ends with the old instance terminated', async () => {
    const { store, row, turn, calls } = await setupOn();
    const steps: string[] = [];
    for (let n = 0; n < 20 && (await store.replacement(row.id))?.status === 'in-progress'; n++) steps.push((await turn()).step);
    expect(steps).toEqual(['prepare', 'launch', 'wait-running', 'register', 'wait-healthy', 'move-address', 'deregister-old', 'wait-drained', 'terminate-old', 'done']);
    expect(await store.replacement(row.id)).toMatchObject({ status: 'done', newInstanceId: NEW, leaseOwner: null });
    expect(calls.indexOf('TerminateInstances')).toBeGreaterThan(calls.indexOf('DeregisterTargets'));
    expect((await store.pending()).map((m) => m.notice && m.notice.type === 'progress' && m.notice.outcome)).toEqual(['started', 'progress', 'progress', 'done']);
  });

  it('polls a wait step that is not ready once a turn, and schedules the next poll, without a new journal entry', async () => {
    let ready = false;
    const { store, row, turn } = await setupOn({
      DescribeInstanceStatus: () => ({ InstanceStatuses: [{ InstanceId: NEW, InstanceState: { Name: ready ? 'running' : 'pending' } , InstanceStatus: { Status: ready ? 'ok' : 'initializing' }, SystemStatus: { Status: 'ok' } }] }),
    });
    await turn(); // prepare
    await turn(); // launch
    const waiting = await turn();
    const again = await turn();
    expect(waiting).toMatchObject({ step: 'wait-running', waitingFor: `${NEW} to run with status checks ok` });
    expect(again.nextPollAt).toBeGreaterThan(Date.now() - 1000);
    expect((await store.journalOf(row.id)).filter((j) => j.step === 'wait-running').map((j) => j.phase)).toEqual(['begin']);
    ready = true;
    await new Promise((r) => setTimeout(r, 30));
    expect((await turn()).step).toBe('wait-running');
    expect((await store.journalOf(row.id)).filter((j) => j.step === 'wait-running').map((j) => j.phase)).toEqual(['begin', 'end']);
  });

  it('backs off between polls of a wait step by half again each time, to the whole millisecond, up to the longest pause', async () => {
    const { store, turn } = await setupOn(
      { DescribeInstanceStatus: () => ({ InstanceStatuses: [{ InstanceId: NEW, InstanceState: { Name: 'pending' }, InstanceStatus: { Status: 'initializing' }, SystemStatus: { Status: 'ok' } }] }) },
      { first: 10, max: 60, retry: 50 },
    );
    // The pause is `at` less the moment the replacer read the clock: after its turn began, before it scheduled.
    const polls: Array<{ at: number; pause: { least: number; most: number } }> = [];
    let turnBegan = 0;
    const schedule = store.schedule.bind(store);
    store.schedule = async (id, at, waitingFor, fence, data) => {
      if (waitingFor !== null) polls.push({ at, pause: { least: at - Date.now(), most: at - turnBegan } });
      return schedule(id, at, waitingFor, fence, data);
    };
    const timedTurn = () => {
      turnBegan = Date.now();
      return turn();
    };
    await timedTurn(); // prepare
    await timedTurn(); // launch
    for (let n = 0; n < 7; n++) await timedTurn();
    // 10, 15, 22.5, 33.75, 50.625, then the longest: PostgreSQL's BIGINT takes no fraction of a millisecond.
    expect(polls.every((p) => Number.isInteger(p.at)), polls.map((p) => p.at).join(', ')).toBe(true);
    const expected = [10, 15, 23, 34, 51, 60, 60];
    const said = polls.map((p) => `${p.pause.least}..${p.pause.most}`).join(', ');
    expect(polls.map((p, i) => p.pause.least <= expected[i]! && expected[i]! <= p.pause.most), said).toEqual(expected.map(() => true));
  });

  it('tries a step again after a transient error, and rolls back on one that will not go away, before the old instance left', async () => {
    let throttled = 1;
    const { store, row, turn, calls, targets } = await setupOn({
      RegisterTargets: () => {
        if (throttled-- > 0) throw Object.assign(new Error('Rate exceeded'), { name: 'Throttling', $metadata: { httpStatusCode: 400 } });
        throw Object.assign(new Error('not allowed'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
      },
    });
    for (let n = 0; n < 4; n++) await turn(); // prepare, launch, wait-running, register (throttled)
    expect(await store.replacement(row.id)).toMatchObject({ status: 'in-progress', step: 'register', waitingFor: 'a retry of register after a transient error' });
    expect((await store.journalOf(row.id)).some((j) => j.phase === 'fail')).toBe(false);
    await new Promise((r) => setTimeout(r, 20));
    const back = await turn(); // register fails for good
    expect(back).toMatchObject({ status: 'rolled-back', error: expect.stringMatching(/^register: .*not allowed/) });
    expect(calls).toContain('TerminateInstances'); // the fresh one
    expect(targets.get(`${OLD}:80`)).toBe('healthy'); // the old one never left
  });

  it('past the point of no return, retries a failing step later instead of rolling back, and says so once', async () => {
    let fail = 2;
    const { store, row, turn } = await setupOn({
      TerminateInstances: () => {
        if (fail-- > 0) throw Object.assign(new Error('nope'), { name: 'UnauthorizedOperation', $metadata: { httpStatusCode: 403 } });
        return {};
      },
    });
    for (let n = 0; n < 9; n++) await turn();
    expect(await store.replacement(row.id)).toMatchObject({ status: 'in-progress', step: 'terminate-old', waitingFor: 'a retry of terminate-old' });
    for (let n = 0; n < 5 && (await store.replacement(row.id))?.status === 'in-progress'; n++) {
      await new Promise((r) => setTimeout(r, 60));
      await turn();
    }
    expect((await store.replacement(row.id))?.status).toBe('done');
    const failed = (await store.pending()).filter((m) => m.notice?.type === 'progress' && m.notice.outcome === 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]?.notice).toMatchObject({ oldInstance: 'drained' });
  });

  it('stops at once when another driver took the lease: nothing more is journaled', async () => {
    const { store, row, turn } = await setupOn();
    await turn();
    await store.releaseLeases('test:1:a');
    await store.claimReplacement(row.id, 'other:2:b', 60_000);
    const before = (await store.journalOf(row.id)).length;
    await expect(turn()).rejects.toThrow(LeaseLostError);
    expect(await store.journalOf(row.id)).toHaveLength(before);
  });
});

describe.each(STORE_BACKENDS)('an Auto Scaling group member replaced on $backend', ({ backend, missing }) => {
  if (missing) {
    it.skip(`skipped: ${missing}`, () => undefined);
    return;
  }

  it('surges once when its driver died right after AWS took the surge: the next driver sees it and adds none', async () => {
    const group = { desired: 3, max: 3 };
    const asked: number[] = [];
    let die = true;
    const { clients } = stubClients({
      DescribeInstances: () => ({ Reservations: [{ Instances: [{ InstanceId: OLD, State: { Name: 'running' }, Tags: [{ Key: 'aws:autoscaling:groupName', Value: 'web-asg' }] }] }] }),
      DescribeAutoScalingGroups: () => ({
        AutoScalingGroups: [{ AutoScalingGroupName: 'web-asg', DesiredCapacity: group.desired, MaxSize: group.max, Instances: [{ InstanceId: OLD, LifecycleState: 'InService', HealthStatus: 'Healthy' }], TargetGroupARNs: [], SuspendedProcesses: [] }],
      }),
      SuspendProcesses: () => ({}),
      UpdateAutoScalingGroup: (input) => {
        group.max = input['MaxSize'] as number;
        return {};
      },
      SetDesiredCapacity: (input) => {
        group.desired = input['DesiredCapacity'] as number;
        asked.push(group.desired);
        if (!die) return {};
        die = false;
        return new Promise(() => undefined); // AWS took it; the driver dies before it hears back
      },
    });
    const store = await openStateStore(await freshStore(backend, ':memory:'));
    stores.push(store);
    const replacer = new Replacer({ store, clientsFor: () => clients, logger, pollMs: { first: 10, max: 20, retry: 50 } });
    const asg = { AutoScalingGroupName: 'web-asg' } as NonNullable<Candidate['placement']>['autoScalingGroup'];
    const row = (await replacer.create(candidateOf({ channel: null, placement: { groups: new Map(), targetGroups: [], autoScalingGroup: asg, classicLoadBalancers: [], ipTargetGroups: [], elasticIp: null, instanceStore: false } }))) as ReplacementRow;
    const polls = new PollCache(() => clients);
    const first = (await store.claimReplacement(row.id, 'a:1:a', 200)) as Fence;
    const turnOf = async (fence: Fence) => replacer.turn((await store.replacement(row.id)) as ReplacementRow, fence, polls);
    await turnOf(first); // prepare
    await turnOf(first); // suspend
    void turnOf(first); // surge: never returns
    await new Promise((r) => setTimeout(r, 300));
    const second = (await store.claimReplacement(row.id, 'b:2:b', 60_000, 'a:1:a')) as Fence;
    expect(second).toBeTruthy();
    const after = await turnOf(second);
    expect(asked).toEqual([4]);
    expect(group).toEqual({ desired: 4, max: 4 });
    expect(after.step).toBe('surge');
  });
});

describe('an Auto Scaling group that replaced a member of its own between planning and the surge', () => {
  it("waits for the instance its surge launched, not the group's own replacement of another member", async () => {
    const OTHER = 'i-00000000000other0';
    // At prepare the group holds the old instance; before the surge it replaced a failed member with
    // OTHER (in service, healthy); the surge's instance comes later.
    const members: Array<{ InstanceId: string; LifecycleState: string; HealthStatus: string }> = [{ InstanceId: OLD, LifecycleState: 'InService', HealthStatus: 'Healthy' }];
    const group = { desired: 2, max: 3 };
    const { clients, calls } = stubClients({
      DescribeInstances: (input) => {
        const ids = (input['InstanceIds'] as string[] | undefined) ?? [];
        if (ids.includes(OLD)) return { Reservations: [{ Instances: [{ InstanceId: OLD, State: { Name: 'running' }, Tags: [{ Key: 'aws:autoscaling:groupName', Value: 'web-asg' }] }] }] };
        // Launch times as EC2 tells them: OTHER a few seconds before the surge, NEW after it.
        return { Reservations: [{ Instances: ids.map((id) => ({ InstanceId: id, LaunchTime: new Date(Date.now() - (id === OTHER ? 5_000 : 0)) })) }] };
      },
      DescribeAutoScalingGroups: () => ({
        AutoScalingGroups: [{ AutoScalingGroupName: 'web-asg', DesiredCapacity: group.desired, MaxSize: group.max, Instances: members.map((m) => ({ ...m })), TargetGroupARNs: [], SuspendedProcesses: [] }],
      }),
      SuspendProcesses: () => ({}),
      SetDesiredCapacity: (input) => {
        group.desired = input['DesiredCapacity'] as number;
        return {};
      },
    });
    const store = await openStateStore(await freshStore('sqlite', ':memory:'));
    stores.push(store);
    const replacer = new Replacer({ store, clientsFor: () => clients, logger, pollMs: { first: 10, max: 20, retry: 50 } });
    const asg = { AutoScalingGroupName: 'web-asg' } as NonNullable<Candidate['placement']>['autoScalingGroup'];
    const row = (await replacer.create(candidateOf({ channel: null, placement: { groups: new Map(), targetGroups: [], autoScalingGroup: asg, classicLoadBalancers: [], ipTargetGroups: [], elasticIp: null, instanceStore: false } }))) as ReplacementRow;
    const fence = (await store.claimReplacement(row.id, 'a:1:a', 60_000)) as Fence;
    const turn = async () => replacer.turn((await store.replacement(row.id)) as ReplacementRow, fence, new PollCache(() => clients));
    await turn(); // prepare
    members.push({ InstanceId: OTHER, LifecycleState: 'InService', HealthStatus: 'Healthy' });
    await turn(); // suspend
    await turn(); // surge
    expect(group.desired).toBe(3);
    // The surge's instance has not joined yet: the group's own replacement is not it.
    expect(await turn()).toMatchObject({ step: 'wait-new', newInstanceId: null });
    members.push({ InstanceId: NEW, LifecycleState: 'InService', HealthStatus: 'Healthy' });
    await new Promise((r) => setTimeout(r, 30));
    expect(await turn()).toMatchObject({ step: 'wait-new', newInstanceId: NEW });
    expect((await store.journalOf(row.id)).filter((j) => j.step === 'wait-new').map((j) => j.phase)).toEqual(['begin', 'end']);
    expect(calls).not.toContain('TerminateInstanceInAutoScalingGroup');
  });
});

describe('a replacement an older pristine started', () => {
  it('finds the fresh instance it tagged with its row id, and launches no second one', async () => {
    const seen: unknown[] = [];
    const { store, row, turn, calls } = await setup({
      DescribeInstances: (input) => {
        if (Array.isArray(input['Filters'])) {
          seen.push(input['Filters']);
          const tag = (input['Filters'] as Array<{ Name: string; Values: string[] }>).find((f) => f.Name === 'tag:pristine:replacement');
          return { Reservations: tag?.Values.includes(String(row.id)) ? [{ Instances: [{ InstanceId: NEW, LaunchTime: new Date() }] }] : [] };
        }
        return { Reservations: [{ Instances: [{ InstanceId: OLD, State: { Name: 'running' }, InstanceType: 'm5.large', SubnetId: 'subnet-1' }] }] };
      },
    });
    // As the schema migration leaves it: a UUID of its own, and the row id its instance carries.
    const migrated = (await store.replacement(row.id))!;
    (store as unknown as { db: { prepare(sql: string): { run(...a: unknown[]): void } } }).db
      .prepare('UPDATE replacements SET data = ? WHERE id = ?')
      .run(JSON.stringify({ ...migrated.data, legacyTag: String(row.id) }), row.id);
    await turn(); // prepare
    await turn(); // launch: finds it
    expect(calls).not.toContain('RunInstances');
    expect(await store.replacement(row.id)).toMatchObject({ step: 'launch', newInstanceId: NEW });
    expect(seen[0]).toEqual(expect.arrayContaining([{ Name: 'tag:pristine:replacement', Values: [migrated.uuid, String(row.id)] }, { Name: 'tag:pristine:replaces', Values: [OLD] }]));
  });
});
