// An insider who knows pristine tries to get a changed server reported `pristine`: a stop/start to
// reset the clock, an exemption tag hidden behind a restart, a record CloudTrail holds but pristine
// cannot read, an event CloudTrail delivers late. The real CLI against moto and the fakes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MALLORY, Scenario, after, type Launched } from '../support/scenario.js';

const POLICY = `
policies:
  - name: web
    scope:
      tags: { role: web }
      exclude: { tags: { "pristine:exempt": "true" } }
    detect: { interactive-session: {}, remote-command: {}, instance-modified: {}, guard-tampered: {} }
    respond: { mode: observe, notify: { slack: { channel: "#sec" } } }
`;

describe('a stop/start does not reset what pristine examines', () => {
  let s: Scenario;
  let changed: Launched;
  let exempted: Launched;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    const image = await s.image('web');
    changed = await s.launchOne(image, { role: 'web' });
    exempted = await s.launchOne(image, { role: 'web', 'pristine:exempt': 'true' });
    // Stop, change the user data (it needs a stopped instance), start: AWS moves LaunchTime to the start.
    s.trail('ec2-stop-instances', changed.instanceId, changed.launchTime + 1000, MALLORY);
    s.trail('ec2-modify-instance-attribute-userdata', changed.instanceId, changed.launchTime + 2000, MALLORY);
    s.trail('ec2-start-instances', changed.instanceId, changed.launchTime + 3000, MALLORY);
    s.fake.ec2.launchTimes.set(changed.instanceId, new Date(changed.launchTime + 4000));
    // An exemption tag added by hand, then a restart so that it looks set at launch.
    s.trail('ec2-create-tags-exempt', exempted.instanceId, exempted.launchTime + 1000, MALLORY);
    s.trail('ec2-stop-instances', exempted.instanceId, exempted.launchTime + 2000, MALLORY);
    s.trail('ec2-start-instances', exempted.instanceId, exempted.launchTime + 2500, MALLORY);
    s.fake.ec2.launchTimes.set(exempted.instanceId, new Date(exempted.launchTime + 3000));
    await after(Math.max(changed.launchTime, exempted.launchTime) + 5000);
  });
  afterAll(() => s?.stop());

  it('taints the stopped, changed and restarted instance, judged from its first launch', async () => {
    const { code, report } = await s.audit();
    const i = report.instances.find((x) => x.instanceId === changed.instanceId) as (typeof report.instances)[number] & { launchTime: string; firstLaunchTime: string };
    expect(code).toBe(1);
    expect(i.verdict).toBe('tainted');
    expect(Date.parse(i.launchTime)).toBe(changed.launchTime + 4000);
    expect(Math.abs(Date.parse(i.firstLaunchTime) - changed.launchTime)).toBeLessThan(1000);
    expect(i.findings.map((f) => f.summary)).toEqual([
      expect.stringMatching(/^instance stopped by arn:aws:sts::123456789012:assumed-role\/Developer\/mallory/),
      expect.stringMatching(/^instance attribute changed \(userData\)/),
      expect.stringMatching(/^instance started/),
    ]);
  });

  it('keeps an exemption added before the restart guard-tampered, not exempt', async () => {
    const { report } = await s.audit();
    const i = report.instances.find((x) => x.instanceId === exempted.instanceId);
    expect(report.summary.exempt).toBe(0);
    expect(i?.verdict).toBe('tainted');
    expect(i?.findings.map((f) => f.detector)).toContain('guard-tampered');
  });
});

describe('a tracked record pristine cannot read', () => {
  let s: Scenario;
  let fleet: Launched[];
  let bad: Record<string, unknown>;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    // Settle fast, so that what was read counts as proven in a test's time.
    await s.writeConfig('sources:\n  lookupEvents: { settle: 1s }\n');
    const image = await s.image('web');
    fleet = await s.launch(image, { role: 'web' }, { count: 2 });
    bad = s.trail('ssm-start-session', fleet[0]!.instanceId, fleet[0]!.launchTime + 1000, MALLORY);
    bad['userIdentity'] = 'not an object';
    await after(Math.max(...fleet.map((l) => l.launchTime)) + 3000);
  });
  afterAll(() => s?.stop());

  it('makes the instance it names unknown, the report incomplete (exit 3), and says why', async () => {
    const { code, report } = await s.audit();
    const byId = new Map(report.instances.map((i) => [i.instanceId, i]));
    expect(code).toBe(3);
    expect(report.complete).toBe(false);
    expect(byId.get(fleet[0]!.instanceId)?.verdict).toBe('unknown');
    expect(byId.get(fleet[0]!.instanceId)?.gaps).toEqual([
      { source: 'cloudtrail', message: `CloudTrail record ${String(bad['eventID'])} (StartSession) from lookup-events could not be read: userIdentity: Invalid input: expected object, received string` },
    ]);
    expect(byId.get(fleet[1]!.instanceId)?.verdict).toBe('pristine');
    expect(report.warnings).toEqual([expect.objectContaining({ source: 'cloudtrail', region: 'us-east-1', message: expect.stringMatching(/could not be read/) })]);
  });

  it('is read again by the next cycle, which takes it in once it can be read', async () => {
    const first = await s.cycle([], {});
    expect(first.report.instances.find((i) => i.instanceId === fleet[0]!.instanceId)?.verdict).toBe('unknown');
    const calls = s.fake.callsTo('LookupEvents').length;
    // CloudTrail (or a fix to pristine) makes the record readable: the same event id.
    bad['userIdentity'] = { type: 'AssumedRole', arn: MALLORY.arn, accountId: '123456789012', sessionContext: { sessionIssuer: { type: 'Role', arn: MALLORY.roleArn } } };
    const second = await s.cycle([], {});
    const startSessionQueries = s.fake.calls.slice(calls).filter((c) => c.operation === 'LookupEvents');
    expect(startSessionQueries.length).toBeGreaterThan(0);
    expect(second.report.instances.find((i) => i.instanceId === fleet[0]!.instanceId)?.verdict).toBe('tainted');
    expect(second.code).toBe(1);
  });
});

describe('an event CloudTrail delivers late', () => {
  let s: Scenario;
  let web: Launched;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    await s.writeConfig('sources:\n  lookupEvents: { settle: 1s, reconcile: { every: 1h, window: 24h } }\n');
    web = await s.launchOne(await s.image('web'), { role: 'web' });
    await after(web.launchTime + 2500);
  });
  afterAll(() => s?.stop());

  it('is missed by a cycle that reads only what is new, and found by the reconciler, then alerted', async () => {
    const first = await s.cycle();
    expect(first.report.summary).toMatchObject({ pristine: 1, tainted: 0 });
    // Delivered now, about a moment the first cycle already proved.
    s.trail('ssm-start-session', web.instanceId, web.launchTime + 1000, MALLORY);
    await after(Date.now() + 1100);
    const second = await s.cycle();
    expect(second.report.summary).toMatchObject({ pristine: 1, tainted: 0 });
    expect(s.slack.messages).toHaveLength(0);

    await s.writeConfig('sources:\n  lookupEvents: { settle: 1s, reconcile: { every: 1s, window: 24h } }\n');
    const third = await s.cycle();
    expect(third.report.summary).toMatchObject({ pristine: 0, tainted: 1 });
    expect(s.slack.topLevel('#sec')).toHaveLength(1);
    expect(s.slack.topLevel('#sec')[0]?.text).toContain(web.instanceId);
  });
});

describe('a changed SSM document that a scheduled association runs', () => {
  let s: Scenario;
  let fleet: Launched[];

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    fleet = await s.launch(await s.image('web'), { role: 'web' }, { count: 2 });
    // The nightly hardening association, set up by the platform team, runs the document's default
    // version on the web fleet; another runs version 3 of it on one instance only.
    s.fake.ssm.associations.set('a1b2c3d4-0000-4000-8000-00000000000a', { name: 'Acme-HardenWeb', targets: [{ Key: 'tag:role', Values: ['web'] }] });
    s.fake.ssm.associations.set('a1b2c3d4-0000-4000-8000-00000000000b', { name: 'Acme-HardenWeb', documentVersion: '3', targets: [{ Key: 'InstanceIds', Values: [fleet[1]!.instanceId] }] });
    s.fake.ssm.associations.set('a1b2c3d4-0000-4000-8000-00000000000c', { name: 'Acme-Other', targets: [{ Key: 'tag:role', Values: ['web'] }] });
    // mallory makes her own version the default: it runs on the fleet at the next schedule, with no event on any instance.
    s.trail('ssm-update-document-default-version', fleet[0]!.instanceId, Math.max(...fleet.map((l) => l.launchTime)) + 1000, MALLORY);
    await after(Math.max(...fleet.map((l) => l.launchTime)) + 2000);
  });
  afterAll(() => s?.stop());

  it('taints every instance of the associations that run the changed version, found with one ListAssociations by name', async () => {
    const { code, report } = await s.audit();
    expect(code).toBe(1);
    for (const l of fleet) {
      const i = report.instances.find((x) => x.instanceId === l.instanceId);
      expect(i?.verdict).toBe('tainted');
      expect(i?.findings[0]?.summary).toMatch(/document Acme-HardenWeb given another default version, which State Manager association a1b2c3d4-0000-4000-8000-00000000000a runs here .*mallory/);
    }
    const listed = s.fake.calls.filter((c) => c.service === 'ssm' && c.operation === 'ListAssociations');
    expect(listed).toHaveLength(1);
    // (When they cannot be listed, every instance that lived then is unknown: evidence-holes.test.ts.)
  });
});
