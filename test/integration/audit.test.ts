// The real `pristine audit` command against moto (EC2) and the CloudTrail/SSM fake.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEB_POLICY } from '../support/facts.js';
import { readFixtureJsonl } from '../support/fixtures.js';
import { ALICE, MALLORY, DEPLOYER, Scenario, after, type AuditReport, type Launched } from '../support/scenario.js';


const POLICY = `${WEB_POLICY}    respond:
      mode: observe
`;

function byId(report: AuditReport, id: string) {
  const found = report.instances.find((i) => i.instanceId === id);
  if (!found) throw new Error(`${id} is not in the report`);
  return found;
}

describe('pristine audit: a fleet with one instance changed each way', () => {
  let s: Scenario;
  const fleet: Record<string, Launched> = {};
  let result: Awaited<ReturnType<Scenario['audit']>>;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    const web = await s.image('web');
    const unrecorded = await s.image('hand-made', { manifest: false });
    const names = ['clean', 'session', 'command', 'tagCommand', 'ssh', 'modified', 'drift', 'tampered', 'allowed', 'beforeLaunch', 'historyOnly'];
    for (const name of names) {
      const tags: Record<string, string> = { role: 'web', Name: name };
      if (name === 'tampered') tags['pristine:exempt'] = 'true';
      fleet[name] = await s.launchOne(web, tags);
    }
    fleet['exempt'] = await s.launchOne(web, { role: 'web', Name: 'exempt', 'pristine:exempt': 'true' });
    fleet['unrecorded'] = await s.launchOne(unrecorded, { role: 'web', Name: 'unrecorded' });
    fleet['db'] = await s.launchOne(web, { role: 'db', Name: 'db' });
    const id = (n: string) => fleet[n]!.instanceId;
    const at = (n: string, offset = 1000) => fleet[n]!.launchTime + offset;

    s.trail('ssm-start-session', id('session'), at('session'), ALICE);
    s.trail('ssm-send-command-instance-ids', id('command'), at('command'), ALICE);
    const tagged = s.trail('ssm-send-command-tag-targets', id('tagCommand'), at('tagCommand'), ALICE);
    const commandId = ((tagged['responseElements'] as { command: { commandId: string } }).command.commandId);
    s.fake.ssm.commandInvocations.set(commandId, [id('tagCommand')]);
    s.trail('ec2ic-send-ssh-public-key', id('ssh'), at('ssh'), MALLORY);
    s.trail('ec2-modify-instance-attribute-userdata', id('modified'), at('modified'), ALICE);
    s.fake.ssm.inventory.set(id('drift'), { captureTime: new Date().toISOString(), content: readFixtureJsonl('ssm/inventory-drifted.jsonl') });
    s.trail('ec2-create-tags-exempt', id('tampered'), at('tampered'), MALLORY);
    s.trail('ssm-start-session', id('exempt'), at('exempt'), ALICE);
    s.trail('ssm-start-session', id('allowed'), at('allowed'), DEPLOYER);
    s.trail('ssm-start-session', id('beforeLaunch'), at('beforeLaunch', -3_600_000), ALICE);
    s.trail('ssm-start-session', id('db'), at('db'), ALICE);
    // Noise that must change nothing: inventory gathering by SSM, read-only calls.
    s.trail('ssm-send-command-inventory-allowlisted', id('clean'), at('clean'));
    s.trail('ec2-describe-instances-noise', id('clean'), at('clean'));
    s.fake.ssm.sessions.push({
      SessionId: 'bob-history-only',
      Target: id('historyOnly'),
      Status: 'Terminated',
      StartDate: Math.floor(at('historyOnly') / 1000),
      EndDate: Math.floor(at('historyOnly') / 1000) + 60,
      DocumentName: 'SSM-SessionManagerRunShell',
      Owner: 'arn:aws:sts::123456789012:assumed-role/Developer/bob',
      Reason: 'quick fix',
      state: 'History',
    });
    await after(Math.max(...Object.values(fleet).map((l) => l.launchTime)) + 1000);
    result = await s.audit();
  });
  afterAll(() => s?.stop());

  it('exits 1: at least one instance is tainted', () => {
    expect(result.code).toBe(1);
    expect(result.report.version).toBe(1);
  });

  it('leaves the clean instance, the one touched by an allowed principal and the one touched before launch pristine', () => {
    for (const name of ['clean', 'allowed', 'beforeLaunch']) {
      const i = byId(result.report, fleet[name]!.instanceId);
      expect([name, i.verdict, i.findings]).toEqual([name, 'pristine', []]);
    }
  });

  it.each([
    ['session', 'interactive-session', ALICE.arn],
    ['command', 'remote-command', ALICE.arn],
    ['tagCommand', 'remote-command', ALICE.arn],
    ['ssh', 'interactive-session', MALLORY.arn],
    ['modified', 'instance-modified', ALICE.arn],
    ['tampered', 'guard-tampered', MALLORY.arn],
    ['historyOnly', 'interactive-session', 'arn:aws:sts::123456789012:assumed-role/Developer/bob'],
  ])('taints the %s instance with %s, naming who', (name, detector, actor) => {
    const i = byId(result.report, fleet[name]!.instanceId);
    expect(i.verdict).toBe('tainted');
    expect(i.policy).toBe('web-immutable');
    expect(i.findings.map((f) => [f.detector, f.actor])).toEqual([[detector, actor]]);
    expect(i.findings[0]?.at).toMatch(/^\d{4}-\d{2}-\d{2}T/);
  });

  it('reports the drifted instance with what was added and changed', () => {
    const i = byId(result.report, fleet['drift']!.instanceId);
    expect(i.verdict).toBe('tainted');
    expect(i.findings[0]?.detector).toBe('package-drift');
    expect(i.findings[0]?.evidence['added']).toEqual([
      { name: 'netcat-openbsd', version: '1.219-1' },
      { name: 'tcpdump', version: '4.99.3-1' },
    ]);
    expect(i.findings[0]?.evidence['changed']).toEqual([{ name: 'openssl', from: '3.0.19-1~deb12u2', to: '3.0.19-1~deb12u2+hotfix1' }]);
  });

  it('calls an instance of an unrecorded image unknown, not pristine', () => {
    const i = byId(result.report, fleet['unrecorded']!.instanceId);
    expect(i.verdict).toBe('unknown');
    expect(i.findings.map((f) => f.detector)).toEqual(['unrecorded-image']);
  });

  it('leaves exempt and out-of-scope instances out, and counts them', () => {
    const ids = result.report.instances.map((i) => i.instanceId);
    expect(ids).not.toContain(fleet['exempt']!.instanceId);
    expect(ids).not.toContain(fleet['db']!.instanceId);
    expect(result.report.summary).toEqual({ pristine: 3, tainted: 8, unknown: 1, exempt: 1, outOfScope: 1 });
    expect(result.report.complete).toBe(true);
    expect(result.report.errors).toEqual([]);
  });

  it('reads evidence fleet-wide: one query for all of a quiet account\'s writes, never per instance, and no per-instance inventory', () => {
    const ops = s.fake.calls.map((c) => c.operation);
    expect(ops.filter((o) => o === 'DescribeInstances')).toHaveLength(1);
    expect(ops.filter((o) => o === 'LookupEvents')).toHaveLength(1);
    expect(ops.filter((o) => o === 'GetInventory')).toHaveLength(1);
    expect(ops.filter((o) => o === 'ListInventoryEntries')).toHaveLength(0);
    expect(ops.filter((o) => o === 'ListCommandInvocations')).toHaveLength(1);
    expect(s.fake.throttled).toBe(0);
  });
});
