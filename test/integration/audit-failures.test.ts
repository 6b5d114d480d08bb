// Exit statuses and fail-safe behaviour of `pristine audit`, against moto and the fake.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Scenario, after, type Launched } from '../support/scenario.js';

const POLICY = `
policies:
  - name: web-immutable
    scope: { tags: { role: web } }
    detect:
      interactive-session: {}
      remote-command: {}
      package-drift: {}
`;

describe('pristine audit on a clean fleet, then with evidence it cannot read', () => {
  let s: Scenario;
  let fleet: Launched[];

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    const web = await s.image('web');
    fleet = await s.launch(web, { role: 'web' }, { count: 3 });
    await after(Math.max(...fleet.map((l) => l.launchTime)) + 1000);
  });
  afterAll(() => s?.stop());

  it('exits 0 and prints a table with every instance pristine', async () => {
    const r = await s.run(['audit', '--policies', s.policiesDir, '--manifests', s.manifestsDir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const l of fleet) expect(r.stdout).toMatch(new RegExp(`${l.instanceId}\\s+-\\s+us-east-1\\s+ami-\\w+\\s+web-immutable\\s+pristine`));
    expect(r.stdout).toContain('3 pristine, 0 tainted, 0 unknown (0 exempt, 0 out of scope)');
  });

  it('reads endpoints from AWS_ENDPOINT_URL as well as the per-service variables, and writes --output', async () => {
    const out = path.join(s.dir, 'reports', 'audit.json');
    const r = await s.run(['audit', '--policies', s.policiesDir, '--manifests', s.manifestsDir, '--format', 'json', '--output', out], {
      AWS_ENDPOINT_URL_EC2: '',
      AWS_ENDPOINT_URL_CLOUDTRAIL: '',
      AWS_ENDPOINT_URL_SSM: '',
      AWS_ENDPOINT_URL: s.fake.url,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    const { readFile } = await import('node:fs/promises');
    const report = JSON.parse(await readFile(out, 'utf8')) as { summary: { pristine: number } };
    expect(report.summary.pristine).toBe(3);
  });

  it('rides out LookupEvents throttling with retries', async () => {
    s.fake.fail('LookupEvents', { code: 'ThrottlingException', message: 'Rate exceeded', times: 3 });
    const { code, report } = await s.audit();
    s.fake.clearFailures();
    expect(code).toBe(0);
    expect(report.complete).toBe(true);
  });

  it('exits 3 with every instance unknown, not pristine, when SSM Inventory cannot be read; the report still prints', async () => {
    s.fake.fail('GetInventory', { status: 500, code: 'InternalServerError', message: 'boom' });
    const { code, report, stderr } = await s.audit();
    s.fake.clearFailures();
    expect(code).toBe(3);
    expect(report.complete).toBe(false);
    expect(report.summary).toMatchObject({ pristine: 0, unknown: 3 });
    expect(report.errors).toEqual([expect.objectContaining({ source: 'ssm-inventory:GetInventory', message: expect.stringMatching(/GetInventory failed: .*boom/) })]);
    for (const i of report.instances) expect(i.gaps[0]).toMatchObject({ source: 'ssm-inventory' });
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('exits 3 when CloudTrail refuses, and says why', async () => {
    s.fake.fail('LookupEvents', { code: 'AccessDeniedException', message: 'not authorized to perform cloudtrail:LookupEvents' });
    const { code, report } = await s.audit();
    s.fake.clearFailures();
    expect(code).toBe(3);
    expect(report.summary.unknown).toBe(3);
    expect(report.errors[0]?.message).toMatch(/AccessDeniedException.*cloudtrail:LookupEvents/);
  });

  it('marks instances launched before --since unknown: their earlier activity was not examined', async () => {
    const { code, report } = await s.audit(['--since', new Date(Date.now() - 500).toISOString()]);
    expect(code).toBe(3);
    expect(report.instances[0]?.gaps[0]?.message).toMatch(/before the evidence window/);
  });

  it('makes the instance a CloudTrail record of an unexpected shape names unknown (exit 3), never pristine, and does not crash', async () => {
    const target = fleet[0]!;
    const record = s.trail('ssm-start-session', target.instanceId, target.launchTime + 500);
    record['userIdentity'] = 'not an object';
    const { code, report, stderr } = await s.audit();
    s.fake.cloudtrail.records.length = 0;
    const message = `CloudTrail record ${String(record['eventID'])} (StartSession) from lookup-events could not be read: userIdentity: Invalid input: expected object, received string`;
    expect(code).toBe(3);
    expect(report.complete).toBe(false);
    expect(report.summary).toMatchObject({ pristine: 2, unknown: 1 });
    expect(report.instances.find((i) => i.instanceId === target.instanceId)?.gaps).toEqual([{ source: 'cloudtrail', message }]);
    expect(stderr).toContain('CloudTrail record skipped');
    expect(report.warnings).toEqual([{ source: 'cloudtrail', accountId: '123456789012', region: 'us-east-1', message }]);
  });
});

describe('pristine audit with bad input', () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await Scenario.start();
  });
  afterAll(() => s?.stop());

  it('exits 2 naming the file and the field of a bad policy, and calls no AWS API', async () => {
    await s.writePolicies(POLICY.replace('package-drift: {}', 'package-drift: { ignore: "linux-*" }'), 'web.yaml');
    const r = await s.run(['audit', '--policies', s.policiesDir, '--manifests', s.manifestsDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${path.join(s.policiesDir, 'web.yaml')}: policies[0].detect.package-drift.ignore: `);
    expect(r.stderr).toMatch(/expected array/);
    expect(r.stdout).toBe('');
    expect(s.fake.calls).toEqual([]);
  });

  it('exits 2 on an unknown detector, a bad glob and malformed YAML', async () => {
    const cases: Array<[string, RegExp]> = [
      [POLICY.replace('package-drift: {}', 'packet-sniffer: {}'), /unknown detector "packet-sniffer"/],
      [POLICY.replace('package-drift: {}', 'package-drift: { ignore: ["linux-[image"] }'), /invalid glob "linux-\[image"/],
      ['policies:\n  - name: [unclosed\n', /invalid YAML/],
    ];
    for (const [yaml, message] of cases) {
      await s.writePolicies(yaml, 'web.yaml');
      const r = await s.run(['audit', '--policies', s.policiesDir, '--manifests', s.manifestsDir]);
      expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(message)]);
    }
  });

  it('exits 2 on a manifest without imageId, naming the file', async () => {
    await s.writePolicies(POLICY, 'web.yaml');
    await writeFile(path.join(s.manifestsDir, 'broken.json'), JSON.stringify({ region: 'us-east-1', name: 'x', builtAt: '2026-11-18T10:00:00Z', packageManager: 'dpkg', packages: [{ name: 'a', version: '1', arch: 'all' }] }));
    const r = await s.run(['audit', '--policies', s.policiesDir, '--manifests', s.manifestsDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/broken\.json: imageId/);
  });

  it('exits 2 on a bad pristine.yaml, naming the file and the field, or a --config that is not there; and calls no AWS API', async () => {
    await s.writePolicies(POLICY, 'web.yaml');
    const bad = path.join(s.dir, 'bad.yaml');
    await writeFile(bad, 'accounts:\n  - id: "1234"\n');
    s.fake.calls.length = 0;
    const r = await s.run(['audit', '--config', bad, '--policies', s.policiesDir, '--manifests', s.manifestsDir]);
    expect([r.code, r.stderr]).toEqual([2, `pristine: ${bad}: accounts[0].id: expected a 12-digit AWS account id\n`]);
    const missing = await s.run(['run', '--config', path.join(s.dir, 'nope.yaml'), '--policies', s.policiesDir, '--manifests', s.manifestsDir]);
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringMatching(/--config: cannot read .*nope\.yaml: ENOENT/)]);
    expect(s.fake.calls).toEqual([]);
  });

  it('exits 2 on a bad flag or --since', async () => {
    expect((await s.run(['audit', '--format', 'xml'])).code).toBe(2);
    expect((await s.run(['audit', '--since', 'last tuesday'])).stderr).toMatch(/--since: expected a duration/);
    expect((await s.run(['audit', '--bogus'])).code).toBe(2);
  });
});
