import { describe, expect, it } from 'vitest';
import { evaluateScope } from '../../src/core/evaluate.js';
import type { Gap, ScopeFacts } from '../../src/core/facts.js';
import {
  FIXTURE_INSTANCE,
  FIXTURE_LAUNCH,
  FIXTURE_NOW,
  WEB_POLICY,
  cleanInventory,
  facts,
  instance,
  manifest,
  manifests,
  policies,
  trailActivity,
} from '../support/facts.js';

const baked = manifest();
const clean = () => new Map([[FIXTURE_INSTANCE, cleanInventory(baked)]]);

function run(over: Partial<ScopeFacts>, yaml = WEB_POLICY) {
  return evaluateScope(facts({ inventory: clean(), ...over }), policies(yaml), manifests(baked), FIXTURE_NOW);
}
function only(over: Partial<ScopeFacts>, yaml = WEB_POLICY) {
  const r = run(over, yaml);
  expect(r.results).toHaveLength(1);
  return r.results[0]!;
}

describe('scope', () => {
  it('leaves instances no policy selects out of the verdicts and counts them', () => {
    const r = run({ instances: [instance(), instance({ instanceId: 'i-0fffffffffffffff0', tags: { role: 'db' } })] });
    expect(r.results.map((x) => x.instance.instanceId)).toEqual([FIXTURE_INSTANCE]);
    expect(r.outOfScope).toBe(1);
  });

  it('lets the first matching policy judge, and names it', () => {
    const yaml = `
policies:
  - name: first
    scope: { tags: { role: "w*" } }
    detect: { interactive-session: {} }
  - name: second
    scope: { tags: { role: web } }
    detect: { interactive-session: {} }
`;
    expect(only({}, yaml).policy).toBe('first');
  });

  it("applies a policy only in the regions it names", () => {
    const yaml = WEB_POLICY.replace('scope:', 'scope:\n      regions: [eu-west-1]');
    expect(run({}, yaml).results).toEqual([]);
  });
});

describe('what counts', () => {
  it('ignores activity before the instance was launched', () => {
    expect(only({ instances: [instance({ launchTime: Date.parse('2026-11-21T11:30:00Z') })], activities: [trailActivity('ssm-start-session')] }).verdict).toBe(
      'pristine',
    );
  });

  it('never taints on activity by an allowed principal, matched on the IAM role behind the session', () => {
    const deploy = trailActivity('ssm-send-command-instance-ids', (r) => {
      r['userIdentity'] = {
        type: 'AssumedRole',
        arn: 'arn:aws:sts::111122223333:assumed-role/Deployer-prod/ci-123',
        sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::111122223333:role/Deployer-prod' } },
      };
    });
    expect(only({ activities: [deploy] }).verdict).toBe('pristine');
    // A role whose name merely contains the word is not allowed.
    const lookalike = trailActivity('ssm-send-command-instance-ids', (r) => {
      r['userIdentity'] = { type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/NotDeployer/x' };
    });
    expect(only({ activities: [lookalike] }).verdict).toBe('tainted');
  });

  it('lists every finding, oldest first', () => {
    const r = only({ activities: [trailActivity('ec2-attach-volume'), trailActivity('ssm-start-session'), trailActivity('ec2ic-send-ssh-public-key')] });
    expect(r.findings.map((f) => f.evidence['eventName'])).toEqual(['StartSession', 'SendSSHPublicKey', 'AttachVolume']);
  });
});

describe('exemption', () => {
  const exempt = instance({ tags: { role: 'web', 'pristine:exempt': 'true' } });

  it('exempts an instance tagged at launch', () => {
    const r = run({ instances: [exempt], activities: [trailActivity('ssm-start-session')] });
    expect(r.results).toEqual([]);
    expect(r.exempt).toBe(1);
  });

  it('does not exempt when the tag was added after launch by a principal the policy does not allow', () => {
    const r = only({ instances: [exempt], activities: [trailActivity('ec2-create-tags-exempt'), trailActivity('ssm-start-session')] });
    expect(r.verdict).toBe('tainted');
    expect(r.findings.map((f) => f.detector).sort()).toEqual(['guard-tampered', 'interactive-session']);
  });

  it('flags the tampering even when the policy did not turn guard-tampered on', () => {
    const yaml = WEB_POLICY.replace('      guard-tampered: {}\n', '');
    const r = only({ instances: [exempt], activities: [trailActivity('ec2-create-tags-exempt')] }, yaml);
    expect(r.findings.map((f) => f.detector)).toEqual(['guard-tampered']);
  });

  it('honours an exemption an allowed principal added after launch', () => {
    const byDeployer = trailActivity('ec2-create-tags-exempt', (r) => {
      r['userIdentity'] = { type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Deployer/ci' };
    });
    expect(run({ instances: [exempt], activities: [byDeployer] }).exempt).toBe(1);
  });

  it('does not exempt when CloudTrail could not be read to check who set the tag', () => {
    const gap: Gap = { source: 'cloudtrail', accountId: '111122223333', region: 'us-east-1', message: 'LookupEvents failed: ThrottlingException' };
    const r = only({ instances: [exempt], gaps: [gap] });
    expect(r.verdict).toBe('unknown');
    expect(r.gaps[0]?.message).toMatch(/exempt by tag, but who set the tag could not be checked/);
  });
});

describe('missing evidence', () => {
  const trailGap: Gap = { source: 'cloudtrail', accountId: '111122223333', region: 'us-east-1', message: 'LookupEvents failed' };

  it('makes the verdict unknown, never pristine, when a source a detector needs failed', () => {
    const r = only({ gaps: [trailGap] });
    expect(r.verdict).toBe('unknown');
    expect(r.gaps).toEqual([trailGap]);
  });

  it('limits a gap to the instances it names', () => {
    const other = instance({ instanceId: 'i-0fffffffffffffff0' });
    const gap: Gap = { source: 'ssm-inventory', accountId: '111122223333', region: 'us-east-1', message: 'x', instanceIds: ['i-0fffffffffffffff0'] };
    const r = run({ instances: [instance(), other], gaps: [gap], inventory: new Map([...clean(), ['i-0fffffffffffffff0', cleanInventory(baked, 'i-0fffffffffffffff0')]]) });
    expect(Object.fromEntries(r.results.map((x) => [x.instance.instanceId, x.verdict]))).toEqual({ [FIXTURE_INSTANCE]: 'pristine', 'i-0fffffffffffffff0': 'unknown' });
  });

  it('ignores a gap in a source no enabled detector reads', () => {
    const yaml = WEB_POLICY.replace(/detect:[\s\S]*$/, 'detect:\n      package-drift: {}\n');
    expect(only({ gaps: [trailGap] }, yaml).verdict).toBe('pristine');
  });

  it('keeps a proven taint tainted, with the gap reported beside it', () => {
    const r = only({ gaps: [{ source: 'ssm-inventory', accountId: '111122223333', region: 'us-east-1', message: 'GetInventory failed' }], activities: [trailActivity('ssm-start-session')] });
    expect(r.verdict).toBe('tainted');
    expect(r.gaps).toHaveLength(1);
  });

  it('is unknown when the instance was launched before the evidence window', () => {
    const r = only({ window: { from: FIXTURE_LAUNCH + 1000, to: FIXTURE_NOW } });
    expect(r.verdict).toBe('unknown');
    expect(r.gaps[0]?.message).toMatch(/before the evidence window/);
  });
});
