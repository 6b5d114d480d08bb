// The ways an insider who knows pristine could get a changed server reported `pristine`, each closed:
// stop/start resetting the clock, records that cannot be read, the catalog's blind spots, a tunnel
// matched by address alone, a command SSM cannot place, finding keys that change with the text.
import { describe, expect, it } from 'vitest';
import { activityFromRecord } from '../../src/core/cloudtrail-record.js';
import { TRACKED_EVENT_NAMES } from '../../src/core/event-catalog.js';
import { evaluateScope, ScopeJudge, type InstanceResult } from '../../src/core/evaluate.js';
import type { Activity, ScopeFacts } from '../../src/core/facts.js';
import { firstLaunchOf } from '../../src/collect/instances.js';
import { addEvidence, noEvidence, recordsToEvidence } from '../../src/evidence/records.js';
import { readFixtureJson } from '../support/fixtures.js';
import {
  FIXTURE_ACCOUNT,
  FIXTURE_INSTANCE,
  FIXTURE_LAUNCH,
  FIXTURE_NOW,
  REGION,
  WEB_POLICY,
  cleanInventory,
  facts,
  instance,
  manifest,
  manifests,
  policies,
  tagChange,
  trailActivity,
} from '../support/facts.js';

const baked = manifest();
const SCOPE = { accountId: FIXTURE_ACCOUNT, region: REGION };

function judge(over: Partial<ScopeFacts> = {}, policyYaml = WEB_POLICY): InstanceResult {
  const f = facts({ inventory: new Map([[FIXTURE_INSTANCE, cleanInventory(baked)]]), ...over });
  const r = evaluateScope(f, policies(policyYaml), manifests(baked), FIXTURE_NOW).results.find((x) => x.instance.instanceId === FIXTURE_INSTANCE);
  if (!r) throw new Error('instance not in scope');
  return r;
}

describe('the first launch, which a stop/start cannot move', () => {
  const attach = new Date('2026-11-19T00:00:00Z');
  const restarted = new Date('2026-11-21T10:30:00Z');

  it('is the attach time of the primary network interface, not LaunchTime', () => {
    expect(
      firstLaunchOf({
        LaunchTime: restarted,
        NetworkInterfaces: [
          { Attachment: { DeviceIndex: 1, AttachTime: new Date('2026-11-20T00:00:00Z') } },
          { Attachment: { DeviceIndex: 0, AttachTime: attach } },
        ],
      }),
    ).toBe(attach.getTime());
  });

  it('falls back to the earliest attach time pristine can see, LaunchTime included', () => {
    expect(firstLaunchOf({ LaunchTime: restarted, BlockDeviceMappings: [{ Ebs: { AttachTime: attach } }] })).toBe(attach.getTime());
    expect(firstLaunchOf({ LaunchTime: restarted })).toBe(restarted.getTime());
  });

  it('keeps activity before a restart in the evidence: a stop, a change and a start taint', () => {
    const events = ['ec2-stop-instances', 'ec2-modify-instance-attribute-userdata', 'ec2-start-instances'].map((n) => trailActivity(n));
    // LaunchTime after the restart; the first launch before every event.
    const moved = instance({ launchTime: restarted.getTime(), firstLaunch: FIXTURE_LAUNCH });
    const r = judge({ instances: [moved], activities: events });
    expect(r.verdict).toBe('tainted');
    expect(r.findings).toHaveLength(3);
    expect(r.findings.map((f) => f.summary)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^instance stopped by arn:aws:sts::111122223333:assumed-role\/Admin\/alice/),
        expect.stringMatching(/^instance attribute changed \(userData\)/),
        expect.stringMatching(/^instance started by/),
      ]),
    );
  });

  it('lets an allowed principal stop and start', () => {
    const policy = WEB_POLICY.replace('arn:aws:iam::*:role/Deployer*', 'arn:aws:iam::*:role/Admin');
    const events = ['ec2-stop-instances', 'ec2-start-instances'].map((n) => trailActivity(n));
    expect(judge({ activities: events }, policy).verdict).toBe('pristine');
  });

  it('keeps an exemption tag added before a stop/start a tampering, not an exemption set at launch', () => {
    const tagged = instance({ launchTime: restarted.getTime(), firstLaunch: FIXTURE_LAUNCH, tags: { role: 'web', Name: 'web-1', 'pristine:exempt': 'true' } });
    const r = judge({ instances: [tagged], activities: [trailActivity('ec2-create-tags-exempt')] });
    expect(r.verdict).toBe('tainted');
    expect(r.findings.map((f) => f.detector)).toContain('guard-tampered');
  });

  it('judges the window from the first launch: an instance first launched before it is unknown', () => {
    const r = judge({ instances: [instance({ launchTime: FIXTURE_NOW - 60_000, firstLaunch: FIXTURE_LAUNCH })], window: { from: FIXTURE_LAUNCH + 1, to: FIXTURE_NOW } });
    expect(r.verdict).toBe('unknown');
    expect(r.gaps[0]?.message).toMatch(/first launched 2026-11-19T00:00:00.000Z, before the evidence window/);
  });
});

describe('the catalog: every event that can change an instance in place is tracked', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['ec2-stop-instances', 'instance-modified', /instance stopped/],
    ['ec2-start-instances', 'instance-modified', /instance started/],
    ['ec2-attach-network-interface', 'instance-modified', /network interface attached/],
    ['ec2-associate-address', 'instance-modified', /Elastic IP address associated/],
    ['ssm-create-association', 'remote-command', /State Manager association hotfix-nginx created to run AWS-RunShellScript \(matched by its targets\)/],
    ['ssm-update-association', 'remote-command', /State Manager association hotfix-nginx updated to run AWS-RunShellScript \(matched by its targets\)/],
  ];
  for (const [fixture, detector, summary] of cases) {
    it(`${fixture}: ${detector}`, () => {
      const a = trailActivity(fixture);
      expect(TRACKED_EVENT_NAMES).toContain(a.eventName);
      const r = judge({ activities: [a] });
      expect(r.verdict).toBe('tainted');
      expect(r.findings[0]).toMatchObject({ detector, summary: expect.stringMatching(summary), key: `${detector}:${a.id}` });
    });
  }

  it('ModifyNetworkInterfaceAttribute: joined to the instance that holds the interface', () => {
    const a = trailActivity('ec2-modify-network-interface-attribute');
    expect(a.instanceIds).toEqual([]);
    expect(a.refs?.networkInterfaceIds).toEqual(['eni-0f1e2d3c4b5a69780']);
    expect(judge({ activities: [a] }).findings[0]?.summary).toMatch(/network interface attribute changed \(sourceDestCheck\) eni-0f1e2d3c4b5a69780/);
    // An interface no running instance holds (a load balancer's, a Lambda's) is not pristine's business.
    expect(judge({ activities: [a], instances: [instance({ networkInterfaceIds: ['eni-0000000000000000a'] })] }).verdict).toBe('pristine');
  });

  it('ModifyVolume: joined to the instance the volume is attached to', () => {
    const a = trailActivity('ec2-modify-volume');
    expect(a.refs?.volumeIds).toEqual(['vol-0fedcba9876543210']);
    expect(judge({ activities: [a] }).findings[0]?.summary).toMatch(/volume modified vol-0fedcba9876543210/);
  });

  it('StartAssociationsOnce: joined through the association targets DescribeAssociation gives', () => {
    const a = trailActivity('ssm-start-associations-once');
    expect(a.associationIds).toEqual(['8f1e2d3c-4b5a-4698-8776-5a4b3c2d1e0f']);
    const targets = new Map([['8f1e2d3c-4b5a-4698-8776-5a4b3c2d1e0f', [{ key: 'tag:role', values: ['web'] }]]]);
    expect(judge({ activities: [a], associationTargets: targets }).findings[0]?.summary).toMatch(/association 8f1e2d3c-4b5a-4698-8776-5a4b3c2d1e0f run on demand/);
    // Its targets unknown: every instance that lived then is unknown, none is pristine.
    const blind = judge({ activities: [a] });
    expect(blind.verdict).toBe('unknown');
    expect(blind.gaps[0]).toMatchObject({ source: 'ssm-commands', message: expect.stringMatching(/targets of association 8f1e2d3c.* could not be resolved/) });
  });

  it('CreateAssociationBatch: by instance id, tied to it; with an entry by targets, every association it made is resolved by id', () => {
    const byId = trailActivity('ssm-create-association-batch', (r) => {
      const req = r['requestParameters'] as { entries: unknown[] };
      const res = r['responseElements'] as { successful: unknown[] };
      req.entries = req.entries.slice(0, 1);
      res.successful = res.successful.slice(0, 1);
    });
    expect(TRACKED_EVENT_NAMES).toContain('CreateAssociationBatch');
    expect(byId.instanceIds).toEqual([FIXTURE_INSTANCE]);
    const r = judge({ activities: [byId] });
    expect(r.verdict).toBe('tainted');
    expect(r.findings[0]).toMatchObject({ detector: 'remote-command', summary: expect.stringMatching(/State Manager associations 3c4d5e6f-.* created to run AWS-RunShellScript by arn:aws:sts::111122223333:assumed-role\/Admin\/alice/) });

    const mixed = trailActivity('ssm-create-association-batch');
    expect(mixed.associationIds).toEqual(['3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f', '4d5e6f7a-8b9c-4dae-9f01-2b3c4d5e6f7a']);
    const targets = new Map([
      ['3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f', [{ key: 'InstanceIds', values: ['i-0fedcba9876543210'] }]],
      ['4d5e6f7a-8b9c-4dae-9f01-2b3c4d5e6f7a', [{ key: 'tag:role', values: ['web'] }]],
    ]);
    expect(judge({ activities: [mixed], associationTargets: targets }).verdict).toBe('tainted');
    // Their targets unknown: every instance that lived then is unknown.
    expect(judge({ activities: [mixed] })).toMatchObject({ verdict: 'unknown', gaps: [{ source: 'ssm-commands', message: expect.stringMatching(/targets of association .* could not be resolved/) }] });
    // Every entry failed: no association was made.
    const none = activityFromRecord({ ...readFixtureJson<Record<string, unknown>>('cloudtrail/ssm-create-association-batch.json'), responseElements: { successful: [], failed: [{ entry: {}, message: 'Document not found', fault: 'Client' }] } });
    expect(none.kind).toBe('ignored');
  });

  describe('a changed SSM document: it runs wherever an association runs it, with no event there', () => {
    const DOC = 'Acme-HardenWeb';
    const OTHER = 'i-0fedcba9876543210';
    const fleet = [instance(), instance({ instanceId: OTHER, tags: { role: 'web' } })];
    const judgeAll = (over: Partial<ScopeFacts>) => {
      const f = facts({ instances: fleet, inventory: new Map(fleet.map((i) => [i.instanceId, cleanInventory(baked, i.instanceId)])), ...over });
      return new Map(evaluateScope(f, policies(WEB_POLICY), manifests(baked), FIXTURE_NOW).results.map((r) => [r.instance.instanceId, r]));
    };
    // Three associations run the document: at its default version (naming none), at $LATEST, pinned to version 3.
    const running = new Map([[DOC, [
      { associationId: 'assoc-default', documentVersion: '$DEFAULT' },
      { associationId: 'assoc-latest', documentVersion: '$LATEST' },
      { associationId: 'assoc-pinned', documentVersion: '3' },
    ]]]);
    const targets = (of: Record<string, string>) => new Map(Object.entries(of).map(([id, instanceId]) => [id, [{ key: 'InstanceIds', values: [instanceId] }]]));

    it('UpdateDocumentDefaultVersion taints the instances of the associations at $DEFAULT, not those pinned to a version', () => {
      const a = trailActivity('ssm-update-document-default-version');
      expect(TRACKED_EVENT_NAMES).toEqual(expect.arrayContaining(['UpdateDocument', 'UpdateDocumentDefaultVersion']));
      expect(a).toMatchObject({ kind: 'remote-command', instanceIds: [], documentUpdate: { name: DOC, versions: ['$DEFAULT'] } });
      const r = judgeAll({ activities: [a], documentAssociations: running, associationTargets: targets({ 'assoc-default': FIXTURE_INSTANCE, 'assoc-pinned': OTHER }) });
      expect(r.get(FIXTURE_INSTANCE)).toMatchObject({ verdict: 'tainted', findings: [{ detector: 'remote-command', summary: expect.stringMatching(/document Acme-HardenWeb given another default version, which State Manager association assoc-default runs here \(matched by its targets\) by arn:aws:sts::111122223333:assumed-role\/Admin\/alice/) }] });
      expect(r.get(OTHER)?.verdict).toBe('pristine');
    });

    it('UpdateDocument taints the instances of the associations at $LATEST and at the new version', () => {
      const a = trailActivity('ssm-update-document');
      expect(a.documentUpdate).toEqual({ name: DOC, versions: ['$LATEST', '4'] });
      const r = judgeAll({ activities: [a], documentAssociations: running, associationTargets: targets({ 'assoc-latest': OTHER, 'assoc-default': FIXTURE_INSTANCE }) });
      expect(r.get(OTHER)?.verdict).toBe('tainted');
      expect(r.get(FIXTURE_INSTANCE)?.verdict).toBe('pristine');
      const pinned = judgeAll({ activities: [a], documentAssociations: new Map([[DOC, [{ associationId: 'assoc-v4', documentVersion: '4' }]]]), associationTargets: targets({ 'assoc-v4': FIXTURE_INSTANCE }) });
      expect(pinned.get(FIXTURE_INSTANCE)?.verdict).toBe('tainted');
    });

    describe('an association deleted since the change (ListAssociations lists it no more)', () => {
      const GONE = 'a1b2c3d4-0000-4000-8000-00000000000d';
      const change = () => trailActivity('ssm-update-document-default-version');
      const deletion = (edit?: (r: Record<string, unknown>) => void) => trailActivity('ssm-delete-association', edit);
      // The pipeline made it, to run another document: its deletion cannot hide the changed one.
      const madeForOther = () =>
        trailActivity('ssm-create-association', (r) => {
          r['userIdentity'] = { type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Deployer-ci/pipeline', accountId: FIXTURE_ACCOUNT, sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::111122223333:role/Deployer-ci' } } };
          (r['requestParameters'] as Record<string, unknown>)['name'] = 'Acme-Other';
          const d = (r['responseElements'] as { associationDescription: Record<string, unknown> }).associationDescription;
          d['associationId'] = GONE;
          d['name'] = 'Acme-Other';
        });
      const listed = new Map([[DOC, [{ associationId: 'assoc-default', documentVersion: '$DEFAULT' }]]]);
      const ran = targets({ 'assoc-default': FIXTURE_INSTANCE });

      it('may have run it anywhere it could reach: those instances are unknown, not pristine', () => {
        const d = deletion();
        expect(TRACKED_EVENT_NAMES).toContain('DeleteAssociation');
        expect(d).toMatchObject({ kind: 'association-deleted', instanceIds: [], deletedAssociation: { associationId: GONE, documentName: null } });
        const r = judgeAll({ activities: [change(), d], documentAssociations: listed, associationTargets: ran });
        expect(r.get(FIXTURE_INSTANCE)?.verdict).toBe('tainted');
        expect(r.get(OTHER)).toMatchObject({ verdict: 'unknown', gaps: [{ source: 'ssm-commands', message: expect.stringMatching(new RegExp(`association ${GONE} was deleted since \\(DeleteAssociation\\), so where it ran the changed document is not known`)) }] });
        // A deletion by document and instance (an association by instance id) reaches that instance only.
        const byInstance = deletion((rec) => {
          rec['requestParameters'] = { name: DOC, instanceId: OTHER };
        });
        expect(byInstance).toMatchObject({ instanceIds: [OTHER], deletedAssociation: { associationId: null, documentName: DOC } });
        expect(judgeAll({ activities: [change(), byInstance], documentAssociations: new Map([[DOC, []]]) }).get(OTHER)?.verdict).toBe('unknown');
        expect(judgeAll({ activities: [change(), byInstance], documentAssociations: new Map([[DOC, []]]) }).get(FIXTURE_INSTANCE)?.verdict).toBe('pristine');
      });

      it('changes nothing when it ran another document, was deleted before the change, or the change was allowed', () => {
        const other = judgeAll({ activities: [madeForOther(), change(), deletion()], documentAssociations: listed, associationTargets: ran });
        expect(other.get(OTHER)?.verdict).toBe('pristine');
        const before = deletion((rec) => {
          rec['eventTime'] = '2026-11-21T10:30:00Z';
        });
        expect(judgeAll({ activities: [before, change()], documentAssociations: listed, associationTargets: ran }).get(OTHER)?.verdict).toBe('pristine');
        const allowed = trailActivity('ssm-update-document-default-version', (rec) => {
          rec['userIdentity'] = { type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Deployer-ci/pipeline', accountId: FIXTURE_ACCOUNT, sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::111122223333:role/Deployer-ci' } } };
        });
        expect([...judgeAll({ activities: [allowed, deletion()], documentAssociations: listed, associationTargets: ran }).values()].map((r) => r.verdict)).toEqual(['pristine', 'pristine']);
      });

      it('pushed after the change was judged, makes the judgement what a fresh one gives', () => {
        const f = (activities: Activity[]) =>
          facts({ instances: fleet, activities, documentAssociations: listed, associationTargets: ran, inventory: new Map(fleet.map((i) => [i.instanceId, cleanInventory(baked, i.instanceId)])) });
        const c = change();
        const d = deletion();
        const judge = new ScopeJudge(f([c]), policies(WEB_POLICY), manifests(baked));
        expect(judge.judgeAll(FIXTURE_NOW).results.find((r) => r.instance.instanceId === OTHER)?.verdict).toBe('pristine');
        judge.add([d]);
        const carried = judge.judgeAll(FIXTURE_NOW).results.map((r) => [r.instance.instanceId, r.verdict, r.gaps.length]);
        const fresh = evaluateScope(f([c, d]), policies(WEB_POLICY), manifests(baked), FIXTURE_NOW).results.map((r) => [r.instance.instanceId, r.verdict, r.gaps.length]);
        expect(carried).toEqual(fresh);
        expect(carried).toContainEqual([OTHER, 'unknown', 1]);
      });
    });

    it('is unknown on every instance that lived then when the associations could not be listed; harmless when none runs it or an allowed principal changed it', () => {
      const a = trailActivity('ssm-update-document-default-version');
      const blind = judgeAll({ activities: [a] });
      for (const id of [FIXTURE_INSTANCE, OTHER]) {
        expect(blind.get(id)).toMatchObject({ verdict: 'unknown', gaps: [{ source: 'ssm-commands', message: expect.stringMatching(/UpdateDocumentDefaultVersion .* of document Acme-HardenWeb: the associations that run it could not be listed/) }] });
      }
      expect([...judgeAll({ activities: [a], documentAssociations: new Map([[DOC, []]]) }).values()].map((r) => r.verdict)).toEqual(['pristine', 'pristine']);
      const byPipeline = trailActivity('ssm-update-document-default-version', (rec) => {
        rec['userIdentity'] = { type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Deployer-ci/pipeline', accountId: FIXTURE_ACCOUNT, sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::111122223333:role/Deployer-ci' } } };
      });
      expect([...judgeAll({ activities: [byPipeline] }).values()].map((r) => r.verdict)).toEqual(['pristine', 'pristine']);
    });
  });

  it('an inventory association (AWS-GatherSoftwareInventory) never taints', () => {
    const a = trailActivity('ssm-create-association', (r) => {
      (r['requestParameters'] as Record<string, unknown>)['name'] = 'AWS-GatherSoftwareInventory';
    });
    expect(judge({ activities: [a] }).verdict).toBe('pristine');
  });
});

describe('an instance retagged out of its policy', () => {
  const DEPLOYER = { type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Deployer-ci/pipeline', accountId: '111122223333' };
  // mallory (Developer) changes the tag the web policy selects by; then alice opens a shell.
  const retag = (op: 'CreateTags' | 'DeleteTags', value: string | null, by?: Record<string, unknown>, at = '2026-11-21T11:00:00Z') =>
    tagChange({ op, id: `retag-${op}-${value}-${at}`, at, tags: [value === null ? { key: 'role' } : { key: 'role', value }], by });
  const shell = () => trailActivity('ssm-start-session');
  const run = (activities: Activity[], tags: Record<string, string>, yaml = WEB_POLICY) => {
    const f = facts({ instances: [instance({ tags })], activities, inventory: new Map([[FIXTURE_INSTANCE, cleanInventory(baked)]]) });
    return evaluateScope(f, policies(yaml), manifests(baked), FIXTURE_NOW);
  };

  it('is still judged by the policy it left, and the retagging taints', () => {
    const r = run([retag('DeleteTags', null), shell()], { Name: 'web-1' });
    expect(r.outOfScope).toBe(0);
    expect(r.results[0]).toMatchObject({ policy: 'web-immutable', verdict: 'tainted' });
    expect(r.results[0]?.findings.map((f) => f.detector)).toEqual(expect.arrayContaining(['guard-tampered', 'interactive-session']));
    expect(r.results[0]?.findings.find((f) => f.detector === 'guard-tampered')?.summary).toMatch(/guard tag removed role by arn:aws:sts::111122223333:assumed-role\/Developer\/mallory/);
  });

  it('moved into a laxer policy, the retagging taints there, whether or not that policy asks for guard-tampered', () => {
    const lax = `${WEB_POLICY}
  - name: fleet-baseline
    scope: { tags: {} }
    detect:
      package-drift: {}
`;
    const r = run([retag('CreateTags', 'web-old')], { role: 'web-old', Name: 'web-1' }, lax);
    expect(r.results[0]).toMatchObject({ policy: 'fleet-baseline', verdict: 'tainted' });
    expect(r.results[0]?.findings.map((f) => f.detector)).toEqual(['guard-tampered']);
  });

  it("by Auto Scaling's service-linked role, tagging what it launched, is no tampering (nor is an exemption it sets)", () => {
    const asg = {
      type: 'AssumedRole',
      arn: 'arn:aws:sts::111122223333:assumed-role/AWSServiceRoleForAutoScaling/AutoScaling',
      accountId: '111122223333',
      sessionContext: { sessionIssuer: { arn: 'arn:aws:iam::111122223333:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling' } },
      invokedBy: 'autoscaling.amazonaws.com',
    };
    expect(run([retag('CreateTags', 'web', asg)], { role: 'web', Name: 'web-1' }).results[0]?.verdict).toBe('pristine');
    const exempt = trailActivity('ec2-create-tags-exempt', (r) => {
      r['userIdentity'] = asg;
    });
    expect(run([exempt], { role: 'web', Name: 'web-1', 'pristine:exempt': 'true' }).exempt).toBe(1);
  });

  it('on an instance exempt from launch, leaves it exempt: only pristine:* and exemption tags guard an exemption', () => {
    expect(run([retag('CreateTags', 'web')], { role: 'web', Name: 'web-1', 'pristine:exempt': 'true' }).exempt).toBe(1);
  });

  it('by an allowed principal, or before launch, is a retagging like any other', () => {
    expect(run([retag('DeleteTags', null, DEPLOYER), shell()], { Name: 'web-1' }).outOfScope).toBe(1);
    expect(run([retag('DeleteTags', null, undefined, '2026-11-18T00:00:00Z'), shell()], { Name: 'web-1' }).outOfScope).toBe(1);
    // A tag no policy selects by changes nothing.
    const other = trailActivity('ec2-create-tags-exempt', (r) => {
      r['eventID'] = 'owner-tag';
      (r['requestParameters'] as Record<string, unknown>)['tagSet'] = { items: [{ key: 'Owner', value: 'team-x' }] };
    });
    expect(run([other], { role: 'web', Name: 'web-1', Owner: 'team-x' }).results[0]?.verdict).toBe('pristine');
  });
});

describe('a command SSM cannot place', () => {
  const sent = () => trailActivity('ssm-send-command-tag-targets');
  const other = instance({ instanceId: 'i-0123456789abcdef0', tags: { role: 'db', Name: 'db-1' } });
  const policy = WEB_POLICY.replace('scope:\n      tags: { role: web }', 'scope:\n      tags: {}');

  it('gaps the instances its targets could reach, not the whole scope', () => {
    const a = sent();
    const f = facts({ instances: [instance(), other], activities: [a], unresolvedCommands: new Map([[a.commandTargets!.commandId, 'ListCommandInvocations failed: ThrottlingException']]), inventory: new Map([[FIXTURE_INSTANCE, cleanInventory(baked)], [other.instanceId, cleanInventory(baked, other.instanceId)]]) });
    const results = evaluateScope(f, policies(policy), manifests(baked), FIXTURE_NOW).results;
    const byId = new Map(results.map((r) => [r.instance.instanceId, r]));
    expect(byId.get(FIXTURE_INSTANCE)?.verdict).toBe('unknown');
    expect(byId.get(FIXTURE_INSTANCE)?.gaps[0]?.message).toMatch(/where it ran could not be read \(ListCommandInvocations failed: ThrottlingException\)/);
    expect(byId.get(other.instanceId)?.verdict).toBe('pristine');
  });

  // The command (2026-11-20T16:00Z) targets tag:role=web. `other` says role=db now, but was retagged afterwards
  // (or before): targets matched against the tags of now cannot tell whether it ran there.
  const retag = (at: string, key = 'role') => tagChange({ id: `retag-${at}-${key}`, at, instanceId: other.instanceId, tags: [{ key, value: 'db' }] });
  const untouched = instance({ instanceId: 'i-0fedcba9876543210', tags: { role: 'db', Name: 'db-2' } });
  const run = (over: Partial<ScopeFacts>) => {
    const all = [instance(), other, untouched];
    const f = facts({ instances: all, inventory: new Map(all.map((i) => [i.instanceId, cleanInventory(baked, i.instanceId)])), ...over });
    return new Map(evaluateScope(f, policies(policy), manifests(baked), FIXTURE_NOW).results.map((r) => [r.instance.instanceId, r]));
  };

  it('placed by the tags of now, is unknown on an instance whose targeted tag changed since, not pristine', () => {
    const a = sent();
    const byId = run({ activities: [a, retag('2026-11-20T17:00:00Z')] });
    expect(byId.get(FIXTURE_INSTANCE)?.verdict).toBe('tainted');
    expect(byId.get(other.instanceId)?.verdict).toBe('unknown');
    expect(byId.get(other.instanceId)?.gaps[0]).toMatchObject({
      source: 'ssm-commands',
      message: expect.stringMatching(/SendCommand .* by targets .*tag:role.*: the tags it targets changed on this instance since, so whether it ran here is unknown/),
    });
    expect(byId.get(untouched.instanceId)?.verdict).toBe('pristine');
  });

  it('whose invocations cannot be read, gaps an instance whose targeted tag changed since too', () => {
    const a = sent();
    const byId = run({ activities: [a, retag('2026-11-20T17:00:00Z')], unresolvedCommands: new Map([[a.commandTargets!.commandId, 'ListCommandInvocations failed: ThrottlingException']]) });
    expect(byId.get(other.instanceId)?.verdict).toBe('unknown');
    expect(byId.get(other.instanceId)?.gaps[0]?.message).toMatch(/where it ran could not be read/);
    expect(byId.get(untouched.instanceId)?.verdict).toBe('pristine');
  });

  it('leaves alone an instance retagged before it, or on a key it does not target, or when an allowed caller sent it', () => {
    const byId = run({ activities: [sent(), retag('2026-11-20T15:00:00Z'), retag('2026-11-20T17:00:00Z', 'team')] });
    expect(byId.get(other.instanceId)?.verdict).toBe('pristine');
    expect(byId.get(FIXTURE_INSTANCE)?.verdict).toBe('tainted');
    const deploy = trailActivity('ssm-send-command-tag-targets', (r) => {
      r['userIdentity'] = { type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Deployer-ci/pipeline', accountId: '111122223333' };
    });
    expect([...run({ activities: [deploy, retag('2026-11-20T17:00:00Z')] }).values()].map((r) => r.verdict)).toEqual(['pristine', 'pristine', 'pristine']);
  });

  it('where SSM says it ran, tags do not matter', () => {
    const a = sent();
    const byId = run({ activities: [a, retag('2026-11-20T17:00:00Z')], commandTargets: new Map([[a.commandTargets!.commandId, [FIXTURE_INSTANCE]]]) });
    expect(byId.get(other.instanceId)?.verdict).toBe('pristine');
    expect(byId.get(FIXTURE_INSTANCE)?.verdict).toBe('tainted');
  });

  it('run by an association updated since, is unknown on every instance that lived then: its targets of now are not those it ran with', () => {
    const ASSOCIATION = '8f1e2d3c-4b5a-4698-8776-5a4b3c2d1e0f';
    const run1 = trailActivity('ssm-start-associations-once'); // by alice, 10:44
    // Pointed at web-1 alone afterwards, by the deploy pipeline (allowed: not itself a finding).
    const update = (at: string) =>
      trailActivity('ssm-update-association', (r) => {
        r['eventID'] = `update-${at}`;
        r['eventTime'] = at;
        r['userIdentity'] = { type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Deployer-ci/pipeline', accountId: '111122223333', sessionContext: { sessionIssuer: { arn: 'arn:aws:iam::111122223333:role/Deployer-ci' } } };
      });
    const now = new Map([[ASSOCIATION, [{ key: 'tag:Name', values: ['web-1'] }]]]);
    const after = run({ activities: [run1, update('2026-11-21T10:50:00Z')], associationTargets: now });
    expect(after.get(FIXTURE_INSTANCE)?.verdict).toBe('tainted');
    for (const id of [other.instanceId, untouched.instanceId]) {
      expect(after.get(id)?.verdict).toBe('unknown');
      expect(after.get(id)?.gaps[0]?.message).toMatch(/StartAssociationsOnce .*: association 8f1e2d3c.* was updated since, so the targets it ran with are not known/);
    }
    // Updated before it ran: its targets of now are the ones it ran with.
    const before = run({ activities: [update('2026-11-21T10:43:00Z'), run1], associationTargets: now });
    expect([...before.values()].map((r) => r.verdict)).toEqual(['tainted', 'pristine', 'pristine']);
    // Run by the pipeline itself: no verdict depends on where it ran.
    const allowed = trailActivity('ssm-start-associations-once', (r) => {
      r['userIdentity'] = { type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Deployer-ci/pipeline', accountId: '111122223333' };
    });
    expect([...run({ activities: [allowed, update('2026-11-21T10:50:00Z')], associationTargets: now }).values()].map((r) => r.verdict)).toEqual(['pristine', 'pristine', 'pristine']);
  });

  it('placed by the targets of an association, is unknown on an instance retagged since', () => {
    const a = trailActivity('ssm-start-associations-once');
    const targets = new Map([['8f1e2d3c-4b5a-4698-8776-5a4b3c2d1e0f', [{ key: 'tag:role', values: ['web'] }]]]);
    const at = new Date(a.at + 60_000).toISOString().replace('.000Z', 'Z');
    const byId = run({ activities: [a, retag(at)], associationTargets: targets });
    expect(byId.get(FIXTURE_INSTANCE)?.verdict).toBe('tainted');
    expect(byId.get(other.instanceId)?.verdict).toBe('unknown');
    expect(byId.get(other.instanceId)?.gaps[0]?.message).toMatch(/by the targets of association 8f1e2d3c.*changed on this instance since/);
  });
});

describe('a tracked record that cannot be read', () => {
  const raw = () => readFixtureJson<Record<string, unknown>>('cloudtrail/ec2-attach-volume.json');

  it('is a gap on the instances it names, wherever they appear in it', () => {
    const record = raw();
    record['userIdentity'] = 'not an object';
    const evidence = recordsToEvidence([{ raw: record }], SCOPE, 'lookup-events');
    expect(evidence.activities).toEqual([]);
    expect(evidence.gaps).toEqual([
      {
        source: 'cloudtrail',
        ...SCOPE,
        instanceIds: [FIXTURE_INSTANCE],
        message: 'CloudTrail record a1b2c3d4-000c-4e5f-8a9b-0000000a000c (AttachVolume) from lookup-events could not be read: userIdentity: Invalid input: expected object, received string',
      },
    ]);
    expect(evidence.oldestUnreadable).toBe(Date.parse('2026-11-21T10:10:00Z'));
    const r = judge({ gaps: evidence.gaps });
    expect(r.verdict).toBe('unknown');
  });

  it('naming no instance, is a gap on its whole scope, for the instances that lived then', () => {
    const record = raw();
    record['requestParameters'] = { volumeId: 17 };
    record['responseElements'] = null;
    const evidence = recordsToEvidence([{ raw: JSON.stringify(record) }], SCOPE, 'lookup-events');
    expect(evidence.gaps[0]).toMatchObject({ before: Date.parse('2026-11-21T10:10:00Z'), message: expect.stringMatching(/AttachVolume names no instance/) });
    expect(evidence.gaps[0]?.instanceIds).toBeUndefined();
    expect(judge({ gaps: evidence.gaps }).verdict).toBe('unknown');
    // Launched after the record: it cannot concern it.
    const young = instance({ launchTime: Date.parse('2026-11-21T11:00:00Z') });
    expect(judge({ instances: [young], gaps: evidence.gaps, activities: [] }).verdict).toBe('pristine');
  });

  it('that is not even JSON is a gap on its whole scope whose time is unknown, whatever ids its text holds', () => {
    const evidence = recordsToEvidence([{ eventId: 'e-1', raw: `{"eventName": "SendCommand", "comment": "like i-0123456789abcdef0"` }], SCOPE, 'lookup-events');
    expect(evidence.gaps[0]).toMatchObject({ message: expect.stringMatching(/e-1 from lookup-events could not be read: not valid JSON/) });
    expect(evidence.gaps[0]?.instanceIds).toBeUndefined();
    expect(evidence.gaps[0]?.before).toBeUndefined();
    expect(evidence.oldestUnreadable).toBeNull();
    expect(judge({ gaps: evidence.gaps }).verdict).toBe('unknown');
  });

  it('of a command by tags is a gap on every instance that lived then, not on the ids its text holds (a comment)', () => {
    const record = readFixtureJson<Record<string, unknown>>('cloudtrail/ssm-send-command-tag-targets.json');
    record['userIdentity'] = 'not an object';
    (record['requestParameters'] as Record<string, unknown>)['comment'] = 'same as i-0123456789abcdef0';
    const evidence = recordsToEvidence([{ raw: record }], SCOPE, 'lookup-events');
    expect(evidence.activities).toEqual([]);
    expect(evidence.gaps[0]?.instanceIds).toBeUndefined();
    expect(evidence.gaps[0]?.before).toBe(Date.parse(String(record['eventTime'])));
    expect(judge({ gaps: evidence.gaps }).verdict).toBe('unknown'); // a web instance its tags reached
  });

  it('whose time has no zone has no time: not read in the local zone of whoever runs pristine', () => {
    const record = raw();
    record['eventTime'] = '2026-11-21T10:10:00';
    const evidence = recordsToEvidence([{ raw: record }], SCOPE, 'lookup-events');
    expect(evidence.gaps[0]).toMatchObject({ instanceIds: [FIXTURE_INSTANCE], message: expect.stringMatching(/eventTime/) });
    expect(evidence.oldestUnreadable).toBeNull();
  });

  it('of an untracked event, or a failed call, is no gap', () => {
    const noise = readFixtureJson('cloudtrail/ec2-describe-instances-noise.json');
    const failed = { ...raw(), errorCode: 'Client.UnauthorizedOperation' };
    expect(recordsToEvidence([{ raw: noise }, { raw: failed }], SCOPE, 's3')).toMatchObject({ activities: [], gaps: [], unreadable: 0 });
  });

  it('read a page at a time (as LookupEvents gives them) leaves the same evidence as read at once: the oldest time, or none when one has none', () => {
    const good = { raw: JSON.stringify(raw()) };
    const at = (eventTime: string) => ({ raw: JSON.stringify({ ...raw(), eventTime, userIdentity: 'not an object' }) });
    const older = at('2026-11-21T09:00:00Z');
    const newer = at('2026-11-21T10:00:00Z');
    const timeless = { eventId: 'e-1', raw: '{' };
    for (const records of [
      [good, newer, good, older, good],
      [good, good, good],
      [newer, good, timeless, good, older],
      [timeless, good, newer],
      [older, newer, good],
    ]) {
      const atOnce = recordsToEvidence(records, SCOPE, 'lookup-events');
      for (const size of [1, 2]) {
        const paged = noEvidence();
        for (let k = 0; k < records.length; k += size) addEvidence(paged, recordsToEvidence(records.slice(k, k + size), SCOPE, 'lookup-events'));
        expect(paged).toEqual(atOnce);
      }
    }
    // The case the loop must get right: a first page with nothing unreadable, then a timeless one.
    const mixed = noEvidence();
    addEvidence(mixed, recordsToEvidence([good, older], SCOPE, 'lookup-events'));
    addEvidence(mixed, recordsToEvidence([timeless], SCOPE, 'lookup-events'));
    expect(mixed).toMatchObject({ unreadable: 2, oldestUnreadable: null });
  });

  it('an activity carries the account and region of the channel that read it, and the channel', () => {
    const record = { ...raw(), recipientAccountId: '999999999999', awsRegion: 'eu-west-3' };
    const [viaTrail] = recordsToEvidence([{ raw: record }], SCOPE, 's3').activities;
    const [viaQueue] = recordsToEvidence([{ raw: JSON.stringify(record) }], SCOPE, 'eventbridge').activities;
    expect(viaTrail).toMatchObject({ ...SCOPE, via: ['s3'] });
    expect(viaQueue).toMatchObject({ ...SCOPE, via: ['eventbridge'] });
    const own = activityFromRecord(record);
    expect(own).toMatchObject({ kind: 'activity', activity: { accountId: '999999999999', region: 'eu-west-3' } });
    expect(own.kind === 'activity' && own.activity.via).toBeUndefined();
  });
});

describe('finding keys: the same evidence is never news twice', () => {
  it('are the session id for every record of one SSM session', () => {
    const start = trailActivity('ssm-start-session');
    const history: Activity = { ...start, id: `session:${start.sessionId}`, source: 'ssm-sessions' };
    const viaTrail = judge({ activities: [start] }).findings[0]?.key;
    const viaHistory = judge({ activities: [history] }).findings[0]?.key;
    expect(viaTrail).toBe('interactive-session:alice-0f1e2d3c4b5a69788');
    expect(viaHistory).toBe(viaTrail);
  });

  it('are the detector and kind for a condition, whatever the summary says as time goes by', () => {
    const inventory = (age: number) => new Map([[FIXTURE_INSTANCE, { ...cleanInventory(baked), captureTime: FIXTURE_NOW - age }]]);
    const a = judge({ inventory: inventory(50 * 3_600_000) }).findings[0];
    const b = judge({ inventory: inventory(60 * 3_600_000) }).findings[0];
    expect(a?.summary).not.toBe(b?.summary);
    expect(a?.key).toBe('package-drift:stale-inventory');
    expect(b?.key).toBe(a?.key);
  });
});

describe('CloudTrail record parsing for the catalog additions', () => {
  it('reads StopInstances instance ids from instancesSet', () => {
    expect(activityFromRecord(readFixtureJson('cloudtrail/ec2-stop-instances.json'))).toMatchObject({ kind: 'activity', activity: { instanceIds: [FIXTURE_INSTANCE], accountId: FIXTURE_ACCOUNT } });
  });

  it('reads an OpenTunnel by its endpoint and address, naming no instance', () => {
    expect(activityFromRecord(readFixtureJson('cloudtrail/ec2ic-open-tunnel.json'))).toMatchObject({
      kind: 'activity',
      activity: { instanceIds: [], refs: { privateIpAddress: '10.0.1.15', endpointId: 'eice-0123456789abcdef0' } },
    });
  });
});

describe('a replacement does not inherit what made its predecessor suspect', () => {
  it("drops pristine's own tags and the policy's exemption tags, keeps the rest, and marks whom it replaces", async () => {
    const { userTags } = await import('../../src/respond/replacement.js');
    const tags = userTags(
      { Tags: [{ Key: 'Name', Value: 'web-1' }, { Key: 'pristine:exempt', Value: 'true' }, { Key: 'break-glass', Value: 'yes' }, { Key: 'aws:cloudformation:stack-name', Value: 's' }, { Key: 'team', Value: 'core' }] },
      'i-0old',
      '1f0e2d3c-4b5a-4697-8888-a1b2c3d4e5f6',
      ['break-glass'],
    );
    expect(tags).toEqual([
      { Key: 'Name', Value: 'web-1' },
      { Key: 'team', Value: 'core' },
      { Key: 'pristine:replaces', Value: 'i-0old' },
      { Key: 'pristine:replacement', Value: '1f0e2d3c-4b5a-4697-8888-a1b2c3d4e5f6' },
    ]);
  });
});
