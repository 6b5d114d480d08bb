import { describe, expect, it } from 'vitest';
import { DRIFTS_KEPT, packageDrift } from '../../src/core/detectors/package-drift.js';
import { evaluateScope, type InstanceResult } from '../../src/core/evaluate.js';
import type { Activity, ScopeFacts } from '../../src/core/facts.js';
import type { ManifestIndex } from '../../src/manifest/types.js';
import {
  FIXTURE_INSTANCE,
  FIXTURE_NOW,
  WEB_POLICY,
  cleanInventory,
  driftedInventory,
  facts,
  instance,
  inventorySnapshot,
  manifest,
  manifests,
  policies,
  trailActivity,
} from '../support/facts.js';

const baked = manifest();

/** Evaluate one instance (the fixtures' web server) under WEB_POLICY with a clean inventory by default. */
function judge(over: Partial<ScopeFacts> = {}, policyYaml = WEB_POLICY, index: ManifestIndex = manifests(baked)): InstanceResult {
  const f = facts({ inventory: new Map([[FIXTURE_INSTANCE, cleanInventory(baked)]]), ...over });
  const result = evaluateScope(f, policies(policyYaml), index, FIXTURE_NOW);
  const r = result.results.find((x) => x.instance.instanceId === FIXTURE_INSTANCE);
  if (!r) throw new Error('instance not in scope');
  return r;
}

const detectorsOf = (r: InstanceResult) => r.findings.map((f) => f.detector);

describe('a clean instance', () => {
  it('is pristine when every source was read and shows nothing', () => {
    const r = judge();
    expect(r.verdict).toBe('pristine');
    expect(r.findings).toEqual([]);
    expect(r.gaps).toEqual([]);
  });
});

describe('interactive-session', () => {
  it.each([
    ['ssm-start-session', /SSM shell session alice-0f1e2d3c4b5a69788 by arn:aws:sts::111122223333:assumed-role\/Admin\/alice/],
    ['ssm-start-session-port-forward', /SSM port-forwarding session bob-0123456789abcdef0/],
    ['ec2ic-send-ssh-public-key', /SSH key pushed with EC2 Instance Connect for OS user ec2-user by .*carol/],
    ['ec2ic-send-serial-console-key', /serial console SSH key pushed/],
  ])('taints on %s and says who, when and what', (fixture, summary) => {
    const a = trailActivity(fixture);
    const r = judge({ activities: [a] });
    expect(r.verdict).toBe('tainted');
    expect(r.findings).toHaveLength(1);
    expect(r.findings[0]).toMatchObject({ detector: 'interactive-session', severity: 'high', effect: 'taint', at: a.at, actor: a.actor.arn });
    expect(r.findings[0]?.summary).toMatch(summary);
    expect(r.findings[0]?.evidence).toMatchObject({ eventId: a.id, eventName: a.eventName });
  });

  it('ties a ResumeSession to the instance through its session id', () => {
    const start = trailActivity('ssm-start-session');
    const resume = trailActivity('ssm-resume-session');
    const r = judge({ activities: [start, resume] });
    expect(r.findings.map((f) => f.evidence['eventName'])).toEqual(['StartSession', 'ResumeSession']);
  });

  it('counts a session SSM remembers but CloudTrail does not, and one both know only once', () => {
    const fromHistory: Activity = {
      ...trailActivity('ssm-start-session'),
      id: 'session:alice-0f1e2d3c4b5a69788',
      source: 'ssm-sessions',
    };
    expect(judge({ activities: [fromHistory] }).findings).toHaveLength(1);
    expect(judge({ activities: [trailActivity('ssm-start-session'), fromHistory] }).findings).toHaveLength(1);
  });

  it("ties an Instance Connect Endpoint tunnel to the instance by the endpoint's VPC and the private IP", () => {
    const tunnel = trailActivity('ec2ic-open-tunnel');
    const endpointVpcs = new Map([['eice-0123456789abcdef0', 'vpc-0a1b2c3d4e5f60718']]);
    expect(judge({ activities: [tunnel], endpointVpcs }).findings[0]?.summary).toMatch(/Instance Connect Endpoint tunnel/);
    // The same address in another VPC is another machine.
    const elsewhere = new Map([['eice-0123456789abcdef0', 'vpc-0ffffffffffffffff']]);
    expect(judge({ activities: [tunnel], endpointVpcs: elsewhere }).verdict).toBe('pristine');
    // The endpoint's VPC unknown: the instance holding that address cannot be vouched for.
    const blind = judge({ activities: [tunnel] });
    expect(blind.verdict).toBe('unknown');
    expect(blind.gaps[0]?.message).toMatch(/endpoint's VPC could not be read/);
  });

  it('skips documents the policy ignores', () => {
    const policy = WEB_POLICY.replace('interactive-session: {}', 'interactive-session: { ignoreDocuments: ["AWS-StartPortForwarding*"] }');
    expect(judge({ activities: [trailActivity('ssm-start-session-port-forward')] }, policy).verdict).toBe('pristine');
    expect(judge({ activities: [trailActivity('ssm-start-session')] }, policy).verdict).toBe('tainted');
  });
});

describe('remote-command', () => {
  it('taints every instance a SendCommand names', () => {
    const r = judge({ activities: [trailActivity('ssm-send-command-instance-ids')] });
    expect(r.verdict).toBe('tainted');
    expect(r.findings[0]?.summary).toMatch(/command AWS-RunShellScript sent by .*alice/);
  });

  it('resolves a SendCommand by tag targets through ListCommandInvocations', () => {
    const a = trailActivity('ssm-send-command-tag-targets');
    const other = instance({ instanceId: 'i-0123456789abcdef0', tags: { role: 'web' } });
    const f = {
      instances: [instance(), other],
      activities: [a],
      commandTargets: new Map([['7a9b8c7d-2222-4e3f-8a1b-abcdefabcdef', [FIXTURE_INSTANCE]]]),
    };
    const result = evaluateScope(facts({ ...f, inventory: new Map([[FIXTURE_INSTANCE, cleanInventory(baked)], [other.instanceId, cleanInventory(baked, other.instanceId)]]) }), policies(WEB_POLICY), manifests(baked), FIXTURE_NOW);
    const verdicts = Object.fromEntries(result.results.map((r) => [r.instance.instanceId, r.verdict]));
    // The invocations say it ran on one instance only, though both carry the tag.
    expect(verdicts).toEqual({ [FIXTURE_INSTANCE]: 'tainted', [other.instanceId]: 'pristine' });
  });

  it('falls back to matching the targets against instance tags when SSM no longer lists the invocations', () => {
    const r = judge({ activities: [trailActivity('ssm-send-command-tag-targets')] });
    expect(r.verdict).toBe('tainted');
    expect(r.findings[0]?.summary).toMatch(/matched by its targets/);
  });

  it('makes instances unknown when the targets cannot be resolved at all', () => {
    const a = trailActivity('ssm-send-command-tag-targets', (rec) => {
      (rec['requestParameters'] as Record<string, unknown>)['targets'] = [{ key: 'resource-groups:Name', values: ['web-servers'] }];
    });
    const r = judge({ activities: [a] });
    expect(r.verdict).toBe('unknown');
    expect(r.gaps[0]).toMatchObject({ source: 'ssm-commands' });
  });

  it('does not taint on SSM inventory gathering', () => {
    expect(judge({ activities: [trailActivity('ssm-send-command-inventory-allowlisted')] }).verdict).toBe('pristine');
  });
});

describe('instance-modified', () => {
  it.each([
    ['ec2-modify-instance-attribute-userdata', /instance attribute changed \(userData\)/],
    ['ec2-modify-instance-attribute-type', /instance attribute changed \(instanceType\)/],
    ['ec2-attach-volume', /volume attached vol-0123456789abcdef0/],
  ])('taints on %s', (fixture, summary) => {
    const r = judge({ activities: [trailActivity(fixture)] });
    expect(r.verdict).toBe('tainted');
    expect(r.findings[0]).toMatchObject({ detector: 'instance-modified', severity: 'medium' });
    expect(r.findings[0]?.summary).toMatch(summary);
  });

  it('skips event names the policy ignores', () => {
    const policy = WEB_POLICY.replace('instance-modified: {}', 'instance-modified: { ignoreEvents: [AttachVolume] }');
    expect(judge({ activities: [trailActivity('ec2-attach-volume')] }, policy).verdict).toBe('pristine');
  });
});

describe('package-drift', () => {
  it('finds the packages added and changed on the drifted fixture instance', () => {
    const r = judge({ inventory: new Map([[FIXTURE_INSTANCE, driftedInventory()]]) });
    expect(r.verdict).toBe('tainted');
    const f = r.findings.find((x) => x.detector === 'package-drift');
    expect(f?.evidence['added']).toEqual([
      { name: 'netcat-openbsd', version: '1.219-1' },
      { name: 'tcpdump', version: '4.99.3-1' },
    ]);
    expect(f?.evidence['changed']).toEqual([{ name: 'openssl', from: '3.0.19-1~deb12u2', to: '3.0.19-1~deb12u2+hotfix1' }]);
    expect(f?.evidence['removed']).toEqual([]);
    expect(f?.summary).toMatch(/^3 packages differ from image ami-0c0ffee1234567890: added netcat-openbsd 1.219-1, tcpdump 4.99.3-1; changed openssl/);
  });

  it('finds a package removed since the bake', () => {
    const inv = cleanInventory(baked);
    inv.packages = inv.packages.filter((p) => p.name !== 'curl');
    const f = judge({ inventory: new Map([[FIXTURE_INSTANCE, inv]]) }).findings[0];
    expect(f?.evidence['removed']).toEqual([{ name: 'curl', version: baked.packages.find((p) => p.name === 'curl')?.version }]);
  });

  it('ignores packages matching the ignore globs', () => {
    const policy = WEB_POLICY.replace('ignore: ["linux-image-*"]', 'ignore: ["linux-image-*", "tcpdump", "netcat-*", "openssl"]');
    expect(judge({ inventory: new Map([[FIXTURE_INSTANCE, driftedInventory()]]) }, policy).verdict).toBe('pristine');
  });

  it('compares rpm versions split into Version, Release and Epoch with the baked list, kernels and all', () => {
    const rpm = manifest({
      packageManager: 'rpm',
      packages: [
        { name: 'openssl-libs', version: '1:3.0.8-1.amzn2023.0.18', arch: 'x86_64' },
        { name: 'kernel', version: '6.1.115-126.197.amzn2023', arch: 'x86_64' },
        { name: 'kernel', version: '6.1.119-129.201.amzn2023', arch: 'x86_64' },
      ],
    });
    const inventory = (kernels: string[][]) =>
      inventorySnapshot(FIXTURE_INSTANCE, FIXTURE_NOW - 60_000, [
        { name: 'openssl-libs', arch: 'x86_64', version: '1:3.0.8-1.amzn2023.0.18' },
        ...kernels.map(([v, rel]) => ({ name: 'kernel', arch: 'x86_64', version: `${v}-${rel}` })),
      ]);
    const same = inventory([['6.1.119', '129.201.amzn2023'], ['6.1.115', '126.197.amzn2023']]);
    expect(judge({ inventory: new Map([[FIXTURE_INSTANCE, same]]) }, WEB_POLICY, manifests(rpm)).verdict).toBe('pristine');
    const third = inventory([['6.1.119', '129.201.amzn2023'], ['6.1.115', '126.197.amzn2023'], ['6.1.120', '1.amzn2023']]);
    const f = judge({ inventory: new Map([[FIXTURE_INSTANCE, third]]) }, WEB_POLICY, manifests(rpm)).findings[0];
    expect(f?.evidence['changed']).toEqual([
      { name: 'kernel', from: '6.1.115-126.197.amzn2023, 6.1.119-129.201.amzn2023', to: '6.1.115-126.197.amzn2023, 6.1.119-129.201.amzn2023, 6.1.120-1.amzn2023' },
    ]);
  });

  it('diffs an inventory once across cycles, and forgets the least recently seen beyond DRIFTS_KEPT', () => {
    // Prepare: one image of two packages; inventories that add one package each, told apart by fingerprint
    const m = manifest({ packages: [{ name: 'curl', version: '7.88.1-10', arch: 'amd64' }, { name: 'openssl', version: '3.0.19-1', arch: 'amd64' }] });
    const options = packageDrift.options.parse({});
    const drift = (fp: string) => {
      const inventory = { ...inventorySnapshot(FIXTURE_INSTANCE, FIXTURE_NOW - 60_000, [...m.packages, { name: 'tcpdump', version: '4.99.3-1', arch: 'amd64' }]), fingerprint: fp };
      const findings = packageDrift.evaluate({ instance: instance(), activities: [], manifest: m, inventory, isGuardTag: () => false, now: FIXTURE_NOW }, options);
      return findings[0]!.evidence;
    };

    // Act
    const first = drift('fp-0');
    const sameCycle = drift('fp-0');
    const secondBefore = drift('fp-1');
    for (let n = 2; n < DRIFTS_KEPT; n++) drift(`fp-${n}`);
    const stillKept = drift('fp-0'); // seen again: the most recent now
    drift(`fp-${DRIFTS_KEPT}`); // one beyond: the least recently seen (fp-1) goes
    const afterOverflow = drift('fp-0');
    const forgotten = drift('fp-1');

    // Assess: the same evidence object while kept; a diff made again (equal, not the same) once forgotten
    expect(sameCycle).toBe(first);
    expect(stillKept).toBe(first);
    expect(afterOverflow).toBe(first);
    expect(forgotten).toEqual(secondBefore);
    expect(forgotten).not.toBe(secondBefore);
  });

  it('diffs a list right after one that held an image name twice, and lists a new name installed twice in version order', () => {
    // Prepare: one image of two packages; a list with curl twice, then one without openssl, then one with a new name twice
    const m = manifest({ packages: [{ name: 'curl', version: '7.88.1-10', arch: 'amd64' }, { name: 'openssl', version: '3.0.19-1', arch: 'amd64' }] });
    const options = packageDrift.options.parse({});
    const evidenceOf = (fp: string, packages: Array<{ name: string; version: string; arch: string }>) => {
      const inventory = { ...inventorySnapshot(FIXTURE_INSTANCE, FIXTURE_NOW - 60_000, packages), fingerprint: fp };
      return packageDrift.evaluate({ instance: instance(), activities: [], manifest: m, inventory, isGuardTag: () => false, now: FIXTURE_NOW }, options)[0]?.evidence;
    };
    const curl2 = { name: 'curl', version: '7.88.1-10+deb12u8', arch: 'amd64' };
    const kernel = (version: string) => ({ name: 'linux-image-amd64', version, arch: 'amd64' });

    // Act
    const twice = evidenceOf('curl-twice', [m.packages[0]!, curl2, m.packages[1]!]);
    const after = evidenceOf('no-openssl', [m.packages[0]!]);
    const newTwice = evidenceOf('new-twice', [...m.packages, kernel('6.1.129-1'), kernel('6.1.119-1')]);

    // Assess
    expect(twice).toMatchObject({ added: [], removed: [], changed: [{ name: 'curl', from: '7.88.1-10', to: '7.88.1-10, 7.88.1-10+deb12u8' }] });
    expect(after).toMatchObject({ added: [], changed: [], removed: [{ name: 'openssl', version: '3.0.19-1' }] });
    expect(newTwice).toMatchObject({ removed: [], changed: [], added: [{ name: 'linux-image-amd64', version: '6.1.119-1' }, { name: 'linux-image-amd64', version: '6.1.129-1' }] });
  });

  it('is unknown, not pristine, when SSM has no inventory for the instance', () => {
    const r = judge({ inventory: new Map() });
    expect(r.verdict).toBe('unknown');
    expect(r.findings[0]).toMatchObject({ detector: 'package-drift', effect: 'unknown' });
    expect(r.findings[0]?.summary).toMatch(/no SSM Inventory/);
  });

  it('is unknown when the inventory is older than maxInventoryAge', () => {
    const stale = cleanInventory(baked, FIXTURE_INSTANCE, FIXTURE_NOW - 3 * 86_400_000);
    const r = judge({ inventory: new Map([[FIXTURE_INSTANCE, stale]]) });
    expect(r.verdict).toBe('unknown');
    expect(r.findings[0]?.summary).toMatch(/72h old \(limit 48h\)/);
  });
});

describe('unrecorded-image', () => {
  it('makes an instance whose image has no manifest unknown, even with nothing else on', () => {
    const policy = WEB_POLICY.replace(/detect:[\s\S]*$/, 'detect:\n      interactive-session: {}\n');
    const r = judge({}, policy, manifests());
    expect(r.verdict).toBe('unknown');
    expect(detectorsOf(r)).toEqual(['unrecorded-image']);
    expect(r.findings[0]?.summary).toMatch(/image ami-0c0ffee1234567890 has no manifest in us-east-1/);
  });

  it('needs the manifest of the same region', () => {
    expect(judge({}, WEB_POLICY, manifests(manifest({ region: 'eu-west-1' }))).verdict).toBe('unknown');
  });
});

describe('guard-tampered', () => {
  it('taints when a pristine:* tag is added after launch', () => {
    const tag = trailActivity('ec2-create-tags-exempt', (r) => {
      (r['requestParameters'] as { tagSet: unknown })['tagSet'] = { items: [{ key: 'pristine:replaces', value: 'i-0000' }] };
    });
    const r = judge({ activities: [tag] });
    expect(r.verdict).toBe('tainted');
    expect(r.findings[0]).toMatchObject({ detector: 'guard-tampered', actor: 'arn:aws:sts::111122223333:assumed-role/Developer/mallory' });
    expect(r.findings[0]?.summary).toMatch(/guard tag added pristine:replaces=i-0000 by/);
  });

  it('taints when an exemption tag is removed', () => {
    const untag = trailActivity('ec2-create-tags-exempt', (r) => {
      r['eventName'] = 'DeleteTags';
    });
    expect(judge({ activities: [untag] }).findings[0]?.summary).toMatch(/removed pristine:exempt/);
  });

  it('leaves other tags alone', () => {
    const tag = trailActivity('ec2-create-tags-exempt', (r) => {
      (r['requestParameters'] as { tagSet: unknown })['tagSet'] = { items: [{ key: 'owner', value: 'team-a' }] };
    });
    expect(judge({ activities: [tag] }).verdict).toBe('pristine');
  });
});
