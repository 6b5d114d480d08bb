// Cycles with state read only what is new, and judge remembered activity as the first read did.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, Scenario, after, type Launched } from '../support/scenario.js';

const POLICY = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { remote-command: {}, interactive-session: {} }
    respond: { mode: observe }
`;

describe('pristine run, cycle after cycle', () => {
  let s: Scenario;
  let fleet: Launched[];

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    // Settle fast, so that what a cycle read counts as proven within a test's time.
    await s.writeConfig('sources:\n  lookupEvents: { settle: 1s }\n');
    const image = await s.image('web');
    fleet = await s.launch(image, { role: 'web' }, { count: 2 });
    // A command sent to every `role=web` instance, which SSM says ran on the first one only.
    const record = s.trail('ssm-send-command-tag-targets', fleet[0]!.instanceId, fleet[0]!.launchTime + 1000, ALICE);
    s.fake.ssm.commandInvocations.set((record['responseElements'] as { command: { commandId: string } }).command.commandId, [fleet[0]!.instanceId]);
    await after(Math.max(...fleet.map((f) => f.launchTime)) + 1500);
  });
  afterAll(() => s?.stop());

  it('reads from where the last cycle stopped, and keeps a command on the instances SSM said it ran on', async () => {
    const verdicts = async () => Object.fromEntries((await s.cycle([], {})).report.instances.map((i) => [i.instanceId, i.verdict]));
    const expected = { [fleet[0]!.instanceId]: 'tainted', [fleet[1]!.instanceId]: 'pristine' };
    expect(await verdicts()).toEqual(expected);

    // Queries, not the SDK's retries: the two cycles are two processes, each pacing its own calls, so
    // the second's first calls can land in the same second as the first's last and be throttled once.
    const queries = () => s.fake.callsTo('LookupEvents').filter((c) => c.errorCode !== 'ThrottlingException');
    const firstLookup = queries();
    s.fake.ssm.commandInvocations.clear(); // expired from SSM by now: the second cycle must not need it
    expect(await verdicts()).toEqual(expected);
    // As many queries (all writes, a quiet span: one), but over the new stretch only: from where the
    // first cycle's proof ended (its read less the settle time).
    const second = queries().slice(firstLookup.length);
    expect(second).toHaveLength(firstLookup.length);
    const startOf = (c: { body: string }) => (JSON.parse(c.body) as { StartTime: number }).StartTime;
    expect(Math.min(...second.map(startOf))).toBeGreaterThan(Math.max(...firstLookup.map(startOf)));
    // The command's instances were written into the evidence log: SSM is not asked again.
    expect(s.fake.callsTo('ListCommandInvocations')).toHaveLength(1);
  });
});

describe('pristine run, while a command sent by targets is still going out', () => {
  let s: Scenario;
  let fleet: Launched[];
  let commandId: string;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    await s.writeConfig('sources:\n  lookupEvents: { settle: 1s }\n');
    fleet = await s.launch(await s.image('web'), { role: 'web' }, { count: 2 });
    const record = s.trail('ssm-send-command-tag-targets', fleet[0]!.instanceId, fleet[0]!.launchTime + 1000, ALICE);
    commandId = (record['responseElements'] as { command: { commandId: string } }).command.commandId;
    // Rate-controlled: running on the first instance, not sent to the second yet.
    s.fake.ssm.commandInvocations.set(commandId, [{ instanceId: fleet[0]!.instanceId, status: 'InProgress' }]);
    await after(Math.max(...fleet.map((f) => f.launchTime)) + 1500);
  });
  afterAll(() => s?.stop());

  it('asks SSM again next cycle, and keeps the answer once every invocation has finished', async () => {
    const verdicts = async () => Object.fromEntries((await s.cycle([], {})).report.instances.map((i) => [i.instanceId, i.verdict]));
    const [first, second] = [fleet[0]!.instanceId, fleet[1]!.instanceId];
    expect(await verdicts()).toEqual({ [first]: 'tainted', [second]: 'pristine' });

    // The next batch went out and both finished.
    s.fake.ssm.commandInvocations.set(commandId, [first, second]);
    expect(await verdicts()).toEqual({ [first]: 'tainted', [second]: 'tainted' });
    expect(s.fake.callsTo('ListCommandInvocations')).toHaveLength(2);

    // Final now: written into the evidence log, and not asked for again.
    s.fake.ssm.commandInvocations.clear();
    expect(await verdicts()).toEqual({ [first]: 'tainted', [second]: 'tainted' });
    expect(s.fake.callsTo('ListCommandInvocations')).toHaveLength(2);
  });
});
