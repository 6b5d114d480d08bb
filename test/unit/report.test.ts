import { describe, expect, it } from 'vitest';
import { evaluateScope } from '../../src/core/evaluate.js';
import { buildReport, exitCodeOf, type Report } from '../../src/report/model.js';
import { renderTable } from '../../src/report/table.js';
import { FIXTURE_NOW, WEB_POLICY, cleanInventory, facts, instance, manifest, manifests, policies, trailActivity } from '../support/facts.js';

const baked = manifest();

function report(over: Parameters<typeof facts>[0] = {}, errors: Report['errors'] = []): Report {
  const f = facts({ inventory: new Map([['i-0a1b2c3d4e5f60718', cleanInventory(baked)]]), ...over });
  const region = evaluateScope(f, policies(WEB_POLICY), manifests(baked), FIXTURE_NOW);
  return buildReport({ startedAt: FIXTURE_NOW, finishedAt: FIXTURE_NOW + 1000, scopes: [{ ...region, window: f.window, complete: errors.length === 0 }], errors, warnings: [] });
}

describe('exit status', () => {
  it('is 0 when every in-scope instance is pristine', () => {
    expect(exitCodeOf(report())).toBe(0);
  });

  it('is 1 when one is tainted, even if evidence is missing elsewhere', () => {
    const r = report({ activities: [trailActivity('ssm-start-session')] }, [{ source: 'ssm-inventory:GetInventory', message: 'x' }]);
    expect(r.complete).toBe(false);
    expect(exitCodeOf(r)).toBe(1);
  });

  it('is 3 when evidence could not be read, or an instance is unknown', () => {
    expect(exitCodeOf(report({}, [{ source: 'ec2:DescribeInstances', message: 'AccessDenied' }]))).toBe(3);
    expect(exitCodeOf(report({ inventory: new Map() }))).toBe(3);
  });
});

describe('the JSON report', () => {
  it('has the version 1 fields, ISO times and the summary', () => {
    const r = report({ activities: [trailActivity('ssm-start-session')], instances: [instance(), instance({ instanceId: 'i-0fffffffffffffff0', tags: { role: 'db' } })] });
    expect(r).toMatchObject({ version: 1, startedAt: '2026-11-21T12:00:00.000Z', finishedAt: '2026-11-21T12:00:01.000Z', complete: true });
    expect(r.summary).toEqual({ pristine: 0, tainted: 1, unknown: 0, exempt: 0, outOfScope: 1 });
    expect(r.instances[0]).toMatchObject({
      instanceId: 'i-0a1b2c3d4e5f60718',
      region: 'us-east-1',
      name: 'web-1',
      imageId: 'ami-0c0ffee1234567890',
      launchTime: '2026-11-19T00:00:00.000Z',
      policy: 'web-immutable',
      verdict: 'tainted',
    });
    expect(r.instances[0]?.findings[0]).toMatchObject({
      detector: 'interactive-session',
      severity: 'high',
      at: '2026-11-20T14:03:11.000Z',
      actor: 'arn:aws:sts::111122223333:assumed-role/Admin/alice',
    });
  });
});

describe('the table', () => {
  it('shows one instance a row with its findings beneath, and the summary', () => {
    const text = renderTable(report({ activities: [trailActivity('ssm-start-session'), trailActivity('ec2-attach-volume')] }));
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^INSTANCE\s+NAME\s+REGION\s+IMAGE\s+POLICY\s+VERDICT$/);
    expect(lines[1]).toMatch(/^i-0a1b2c3d4e5f60718\s+web-1\s+us-east-1\s+ami-0c0ffee1234567890\s+web-immutable\s+TAINTED$/);
    expect(lines[2]).toMatch(/^ {2}├─ 2026-11-20T14:03:11.000Z {2}interactive-session \[high\] {2}SSM shell session/);
    expect(lines[3]).toMatch(/^ {2}└─ .*instance-modified \[medium\] {2}volume attached/);
    expect(text).toContain('0 pristine, 1 tainted, 0 unknown (0 exempt, 0 out of scope)');
  });

  it('says plainly when the evidence is incomplete and why', () => {
    const text = renderTable(report({ gaps: [{ source: 'cloudtrail', accountId: '111122223333', region: 'us-east-1', message: 'LookupEvents failed: AccessDenied' }] }, [{ source: 'cloudtrail:LookupEvents', region: 'us-east-1', message: 'LookupEvents failed: AccessDenied' }]));
    expect(text).toMatch(/UNKNOWN\n {2}└─ evidence missing \(cloudtrail\): LookupEvents failed: AccessDenied/);
    expect(text).toContain('evidence INCOMPLETE: unknown is not pristine');
    expect(text).toContain('us-east-1 cloudtrail:LookupEvents: LookupEvents failed: AccessDenied');
  });
});
