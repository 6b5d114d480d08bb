import { describe, expect, it } from 'vitest';
import { activityFromRecord } from '../../src/core/cloudtrail-record.js';
import { readFixtureJson } from '../support/fixtures.js';
import { FIXTURE_INSTANCE, trailActivity } from '../support/facts.js';

describe('activityFromRecord', () => {
  it('attributes an SSM shell session to its target, with the session id and the caller', () => {
    const a = trailActivity('ssm-start-session');
    expect(a).toMatchObject({
      kind: 'interactive-session',
      eventName: 'StartSession',
      instanceIds: [FIXTURE_INSTANCE],
      sessionId: 'alice-0f1e2d3c4b5a69788',
      at: Date.parse('2026-11-20T14:03:11Z'),
      region: 'us-east-1',
    });
    expect(a.actor.arn).toBe('arn:aws:sts::111122223333:assumed-role/Admin/alice');
    expect(a.actor.identities).toContain('arn:aws:iam::111122223333:role/Admin');
  });

  it('keeps the document of a port-forwarding session', () => {
    expect(trailActivity('ssm-start-session-port-forward').detail['documentName']).toBe('AWS-StartPortForwardingSession');
  });

  it('leaves ResumeSession to be joined by session id', () => {
    const a = trailActivity('ssm-resume-session');
    expect(a.instanceIds).toEqual([]);
    expect(a.sessionId).toBe('alice-0f1e2d3c4b5a69788');
  });

  it('takes every instance of a SendCommand by instance ids', () => {
    const a = trailActivity('ssm-send-command-instance-ids');
    expect(a.kind).toBe('remote-command');
    expect(a.instanceIds.sort()).toEqual([FIXTURE_INSTANCE, 'i-0ffeeddccbbaa9988'].sort());
    expect(a.detail['documentName']).toBe('AWS-RunShellScript');
  });

  it('keeps the targets and command id of a SendCommand by tags, which names no instance', () => {
    const a = trailActivity('ssm-send-command-tag-targets');
    expect(a.instanceIds).toEqual([]);
    expect(a.commandTargets).toEqual({
      commandId: '7a9b8c7d-2222-4e3f-8a1b-abcdefabcdef',
      targets: [{ key: 'tag:role', values: ['web'] }],
    });
  });

  it('reads EC2 Instance Connect key pushes with the OS user', () => {
    const ssh = trailActivity('ec2ic-send-ssh-public-key');
    expect(ssh).toMatchObject({ kind: 'interactive-session', instanceIds: [FIXTURE_INSTANCE] });
    expect(ssh.detail['osUser']).toBe('ec2-user');
    expect(trailActivity('ec2ic-send-serial-console-key').instanceIds).toEqual([FIXTURE_INSTANCE]);
  });

  it('names the attributes a ModifyInstanceAttribute changed', () => {
    expect(trailActivity('ec2-modify-instance-attribute-userdata').detail['attributes']).toEqual(['userData']);
    expect(trailActivity('ec2-modify-instance-attribute-type').detail['attributes']).toEqual(['instanceType']);
  });

  it('attributes a volume attachment', () => {
    const a = trailActivity('ec2-attach-volume');
    expect(a).toMatchObject({ kind: 'instance-modified', instanceIds: [FIXTURE_INSTANCE] });
    expect(a.detail['volumeId']).toBe('vol-0123456789abcdef0');
  });

  it('reads which tags CreateTags added to which instance', () => {
    const a = trailActivity('ec2-create-tags-exempt');
    expect(a.kind).toBe('tag-change');
    expect(a.instanceIds).toEqual([FIXTURE_INSTANCE]);
    expect(a.tagChanges).toEqual([{ op: 'add', key: 'pristine:exempt', value: 'true' }]);
  });

  it('finds instance ids nested in request shapes of other EC2 APIs', () => {
    const record = readFixtureJson<Record<string, unknown>>('cloudtrail/ec2-attach-volume.json');
    const r = activityFromRecord({
      ...record,
      eventName: 'ModifyInstanceMetadataOptions',
      requestParameters: { ModifyInstanceMetadataOptionsRequest: { InstanceId: FIXTURE_INSTANCE, HttpTokens: 'optional' } },
      responseElements: null,
    });
    expect(r.kind === 'activity' && r.activity.instanceIds).toEqual([FIXTURE_INSTANCE]);
  });

  it('takes as an id only i-, eni- or vol- and 8 to 17 lower-case hex digits, under a key that names one', () => {
    const record = readFixtureJson<Record<string, unknown>>('cloudtrail/ec2-attach-volume.json');
    const ids = {
      instanceIds: ['i-12345678', 'i-0123456789abcdef0', 'i-1234567', 'i-0123456789abcdef01', 'i-0123456789ABCDEF', 'ix12345678', 'i-1234567g', ' i-12345678'],
      Target: 'i-abcdef01',
      other: 'i-0fedcba987654321',
      networkInterfaceId: 'eni-0a1b2c3d',
      VolumeId: 'vol-0a1b2c3d4e5f60718',
      volumeIdx: 'vol-0a1b2c3d4e5f60719',
    };
    const r = activityFromRecord({ ...record, eventName: 'ModifyInstanceMetadataOptions', requestParameters: ids, responseElements: { volumeId: 'vol-0A1B2C3D' } });
    if (r.kind !== 'activity') throw new Error(JSON.stringify(r));
    expect(r.activity.instanceIds).toEqual(['i-12345678', 'i-0123456789abcdef0', 'i-abcdef01']);
    expect(r.activity.refs).toEqual({ networkInterfaceIds: ['eni-0a1b2c3d'], volumeIds: ['vol-0a1b2c3d4e5f60718'] });
  });

  it('ignores read-only and unrelated noise', () => {
    expect(activityFromRecord(readFixtureJson('cloudtrail/ec2-describe-instances-noise.json')).kind).toBe('ignored');
    expect(activityFromRecord(readFixtureJson('cloudtrail/ec2-run-instances-noise.json')).kind).toBe('ignored');
    expect(activityFromRecord(readFixtureJson('cloudtrail/ssm-terminate-session.json')).kind).toBe('ignored');
  });

  it('ignores a call that failed: it changed nothing', () => {
    const record = readFixtureJson<Record<string, unknown>>('cloudtrail/ssm-start-session.json');
    expect(activityFromRecord({ ...record, errorCode: 'AccessDenied' }).kind).toBe('ignored');
  });

  it('ignores tags on resources that are not instances', () => {
    const record = readFixtureJson<Record<string, unknown>>('cloudtrail/ec2-create-tags-exempt.json');
    const r = activityFromRecord({ ...record, requestParameters: { resourcesSet: { items: [{ resourceId: 'vol-0123456789abcdef0' }] }, tagSet: { items: [{ key: 'a', value: 'b' }] } } });
    expect(r.kind).toBe('ignored');
  });

  it('ignores an event of the same name from another service', () => {
    const record = readFixtureJson<Record<string, unknown>>('cloudtrail/ssm-send-command-instance-ids.json');
    expect(activityFromRecord({ ...record, eventSource: 'qldb.amazonaws.com' }).kind).toBe('ignored');
  });

  it('reports a tracked record of an unexpected shape as malformed, with why, instead of throwing', () => {
    const record = readFixtureJson<Record<string, unknown>>('cloudtrail/ssm-start-session.json');
    const noTime = activityFromRecord({ ...record, eventTime: 'yesterday' });
    expect(noTime).toMatchObject({ kind: 'malformed', eventId: 'a1b2c3d4-0001-4e5f-8a9b-0000000a0001' });
    expect(noTime.kind === 'malformed' && noTime.reason).toMatch(/eventTime/);
    const noTarget = activityFromRecord({ ...record, requestParameters: { target: 'not-an-instance' }, responseElements: null });
    expect(noTarget).toMatchObject({ kind: 'malformed', reason: 'StartSession names no instance' });
    expect(activityFromRecord({ ...record, requestParameters: 'oops' }).kind).toBe('malformed');
    expect(activityFromRecord(null).kind).toBe('malformed');
    expect(activityFromRecord([1, 2]).kind).toBe('malformed');
  });
});
