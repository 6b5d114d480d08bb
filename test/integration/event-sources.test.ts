// Evidence pushed by AWS: EventBridge envelopes and trail files announced on an SQS queue, and
// CloudTrail's digest files in S3. The real CLI and daemon against moto (SQS, S3) and the fakes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allDeclaredActions } from '../../src/permissions.js';
import Database from 'better-sqlite3';
import { Daemon } from '../support/daemon.js';
import { readFixtureJson } from '../support/fixtures.js';
import { ACCOUNT, MALLORY, REGION, Scenario, after, type Launched } from '../support/scenario.js';
import { until } from '../support/until.js';
import type { CloudTrailRecord } from '../support/aws-fake.js';
import type { FakeMessage } from '../support/slack-fake.js';

const POLICY = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {}, remote-command: {}, instance-modified: {} }
    respond: { mode: observe, notify: { slack: { channel: "#sec" } } }
`;

/** A CloudTrail record as the fake's LookupEvents would give it, taken back out of the fake (it is pushed by other paths). */
function withdraw(s: Scenario, record: CloudTrailRecord): CloudTrailRecord {
  const list = s.fake.cloudtrail.records;
  list.splice(list.indexOf(record), 1);
  return record;
}

function envelope(record: CloudTrailRecord): Record<string, unknown> {
  const e = readFixtureJson<Record<string, unknown>>('eventbridge/ssm-start-session.json');
  return { ...e, id: `eb-${String(record['eventID'])}`, account: ACCOUNT, region: REGION, time: record['eventTime'], detail: record };
}

function s3Notification(bucket: string, key: string): Record<string, unknown> {
  const n = readFixtureJson<{ Records: Array<{ s3: { bucket: { name: string }; object: { key: string } } }> }>('notifications/s3-object-created.json');
  const r = n.Records[0]!;
  return { Records: [{ ...r, s3: { ...r.s3, bucket: { ...r.s3.bucket, name: bucket }, object: { ...r.s3.object, key } } }] };
}

describe('event queues: EventBridge envelopes and trail files', () => {
  let s: Scenario;
  let fleet: Launched[];
  let queueUrl: string;
  let bucket: string;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    fleet = await s.launch(await s.image('web'), { role: 'web' }, { count: 3 });
    queueUrl = await s.queue('pristine-events');
    bucket = await s.bucket('org-trail-logs');
    await s.writeConfig(`sources:\n  queues: ["${queueUrl}"]\n`);
    await after(Math.max(...fleet.map((l) => l.launchTime)) + 1500);
  });
  afterAll(() => s?.stop());

  it('taints from one receive: an EventBridge envelope and a trail file announced by S3, before CloudTrail shows either', async () => {
    const [a, b] = fleet;
    const session = withdraw(s, s.trail('ssm-start-session', a!.instanceId, a!.launchTime + 1000, MALLORY));
    const key = withdraw(s, s.trail('ec2-modify-instance-attribute-type', b!.instanceId, b!.launchTime + 1000, MALLORY));
    const file = await s.putTrailFile(bucket, [key, readFixtureJson<CloudTrailRecord>('cloudtrail/ec2-describe-instances-noise.json')]);
    await s.send(queueUrl, envelope(session));
    await s.send(queueUrl, s3Notification(bucket, file.key));

    const { code, report } = await s.cycle();
    const verdict = (id: string) => report.instances.find((i) => i.instanceId === id)?.verdict;
    expect(code).toBe(1);
    expect(verdict(a!.instanceId)).toBe('tainted');
    expect(verdict(b!.instanceId)).toBe('tainted');
    expect(verdict(fleet[2]!.instanceId)).toBe('pristine');
    // One receive brought both messages (the second found the queue empty); both deleted once read.
    expect(s.fake.callsTo('ReceiveMessage')).toHaveLength(2);
    expect(s.fake.callsTo('DeleteMessage')).toHaveLength(2);
    expect(s.fake.calls.filter((c) => c.service === 's3' && c.operation === `GET /${bucket}/${file.key}`)).toHaveLength(1);
    // Every call declared for `pristine policy iam` (S3 speaks REST: object reads are s3:GetObject).
    const declared = allDeclaredActions();
    const called = [...new Set(s.fake.calls.filter((c) => c.service !== 's3').map((c) => `${c.service}:${c.operation}`))];
    expect(called.filter((a) => !declared.has(a))).toEqual([]);
    expect(s.fake.calls.filter((c) => c.service === 's3').every((c) => c.operation.startsWith('GET /'))).toBe(true);
    expect(declared.has('s3:GetObject')).toBe(true);
    expect(s.slack.topLevel('#sec')).toHaveLength(2);
  });

  it('counts the same event once, whether EventBridge, a trail file or LookupEvents brought it, redelivered or not', async () => {
    const c = fleet[2]!;
    const record = s.trail('ssm-send-command-instance-ids', c.instanceId, c.launchTime + 1000, MALLORY);
    const file = await s.putTrailFile(bucket, [record]);
    await s.send(queueUrl, envelope(record));
    await s.send(queueUrl, envelope(record)); // redelivered
    await s.send(queueUrl, s3Notification(bucket, file.key));
    const before = s.slack.messages.length;

    const first = await s.cycle();
    const findings = first.report.instances.find((i) => i.instanceId === c.instanceId)?.findings ?? [];
    expect(findings).toHaveLength(1);
    expect(findings[0]).toMatchObject({ detector: 'remote-command', evidence: expect.objectContaining({ eventId: record['eventID'] }) });
    expect(s.slack.messages.length - before).toBe(1);

    const second = await s.cycle();
    expect(second.report.instances.find((i) => i.instanceId === c.instanceId)?.findings).toHaveLength(1);
    expect(s.slack.messages.length - before).toBe(1);
  });

  it('leaves a message it cannot read on the queue, for its redrive policy, and goes on', async () => {
    await s.send(queueUrl, 'this is not an event');
    const r = await s.run(['run', '--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', s.statePath, '--log-level', 'warn']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/a message could not be read: it stays on the queue/);
  });
});

/** Enforcing, but nothing here is old enough to replace (and one instance of one is no storm): every decision is a hold. */
const ENFORCE_HELD = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {}, remote-command: {}, instance-modified: {} }
    respond: { mode: enforce, replace: { minAge: 30d }, breaker: { taintedShare: 100% }, notify: { slack: { channel: "#sec" } } }
`;

describe('the daemon consumes the queue between cycles', () => {
  let s: Scenario;
  let web: Launched;
  let queueUrl: string;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(ENFORCE_HELD);
    web = await s.launchOne(await s.image('web'), { role: 'web' });
    queueUrl = await s.queue('pristine-events');
    await s.writeConfig(`sources:\n  queues: ["${queueUrl}"]\n`);
    await after(web.launchTime + 1500);
  });
  afterAll(() => s?.stop());

  /** A daemon whose schedule never comes: the start-up cycle, then only the queue. */
  const startDaemon = () =>
    new Daemon(['--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', s.statePath, '--schedule', '0 0 1 1 *', '--listen', '127.0.0.1:0'], s.env(s.slackEnv()), s.dir);

  it('alerts an event put on the queue within seconds, with no cycle in between; the next cycle replies with its decision', async () => {
    const daemon = startDaemon();
    let alert: FakeMessage;
    let record: CloudTrailRecord;
    try {
      await daemon.waitFor('cycle finished', 60_000);
      record = withdraw(s, s.trail('ssm-start-session', web.instanceId, web.launchTime + 1000, MALLORY));
      const sent = Date.now();
      await s.send(queueUrl, envelope(record));
      alert = await s.slack.waitFor((m) => m.channel === '#sec', 15_000);
      expect(Date.now() - sent).toBeLessThan(10_000);
      expect(alert.text).toContain(web.instanceId);
      expect(alert.text).toMatch(/next scheduled cycle decides/);
      expect(daemon.withMsg('cycle finished')).toHaveLength(1);
      expect(daemon.withMsg('pushed events judged')).toEqual([expect.objectContaining({ alerted: [web.instanceId] })]);
      expect((await daemon.stop(30_000)).code).toBe(0);
    } finally {
      await daemon.kill();
    }
    // The alert promised a decision: the next cycle (the event is now in CloudTrail too) says it in the thread, once.
    s.fake.cloudtrail.records.push(record);
    expect((await s.cycle()).code).toBe(1);
    const replies = s.slack.replies(alert.ts);
    expect(replies).toHaveLength(1);
    expect(replies[0]?.text).toMatch(/\*decision\*: held — The scheduled cycle does not replace it now: younger than minAge 43200m/);
    expect(s.slack.topLevel('#sec')).toHaveLength(1);
    // Said once: no longer owed (a later cycle has nothing to reply).
    const db = new Database(s.statePath, { readonly: true, fileMustExist: true });
    try {
      expect(db.prepare("SELECT key FROM meta WHERE key LIKE 'decision-due:%'").all()).toEqual([]);
    } finally {
      db.close();
    }
  });

  it("keeps taking in a member account's events when the organisation could not be listed", async () => {
    // Listing the organisation fails: the cycle knows no account at all.
    await s.writeConfig(`organization: { role: PristineAudit }\nsources:\n  queues: ["${queueUrl}"]\n`);
    s.fake.fail('ListAccounts', { code: 'AccessDeniedException', status: 400, message: 'not authorized to list the organization' });
    const daemon = startDaemon();
    try {
      await daemon.waitFor('cycle finished', 60_000);
      const member = (at: number) => withdraw(s, s.trail('ssm-start-session', 'i-0444455556666aaaa', at, MALLORY, { account: '444455556666' }));
      const db = new Database(s.statePath, { readonly: true, fileMustExist: true });
      const logged = (r: CloudTrailRecord) => db.prepare('SELECT 1 FROM activities WHERE id = ?').get(r['eventID']) !== undefined;
      try {
        // The first ends the long poll that began before the cycle finished; the second is read after it.
        for (const record of [member(web.launchTime + 1000), member(web.launchTime + 2000)]) {
          await s.send(queueUrl, { ...envelope(record), account: '444455556666' });
          // In the log for the cycle that can list the account, not deleted from the queue unread.
          // (moto answers a long poll at its end: a message sent during one can wait for the next, 20 s on.)
          await until("the member account's event is in the log", () => logged(record), 60_000);
        }
      } finally {
        db.close();
      }
      expect((await daemon.stop(30_000)).code).toBe(0);
    } finally {
      await daemon.kill();
      s.fake.clearFailures();
      await s.writeConfig(`sources:\n  queues: ["${queueUrl}"]\n`);
    }
  });
});

/** Trail files proven by their digests, and no LookupEvents: the digests are the only proof. */
const trailOnly = (bucket: string) => `sources:\n  lookupEvents: { enabled: false, settle: 1s }\n  s3: { requireDigests: true, bucket: ${bucket} }\n`;

describe("CloudTrail's digest files", () => {
  let s: Scenario;
  let web: Launched;
  let bucket: string;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    web = await s.launchOne(await s.image('web'), { role: 'web' });
    bucket = await s.bucket('org-trail-logs');
    await after(web.launchTime + 2500);
  });
  afterAll(() => s?.stop());

  const span = () => ({ from: web.launchTime - 3_600_000, to: Date.now() + 60_000 });

  it('prove an hour when every log file they list was read with a matching SHA-256', async () => {
    await s.writeConfig(trailOnly(bucket));
    const file = await s.putTrailFile(bucket, [readFixtureJson<CloudTrailRecord>('cloudtrail/ec2-describe-instances-noise.json')]);
    await s.putDigest(bucket, span(), [file]);
    const { code, report } = await s.audit();
    expect(report.instances[0]?.verdict).toBe('pristine');
    expect(code).toBe(0);
    expect(s.fake.callsTo('LookupEvents')).toHaveLength(0);
  });

  it('report a listed file whose hash differs as tampering, and vouch for nothing', async () => {
    const tampered = await s.bucket('tampered-trail-logs');
    await s.writeConfig(trailOnly(tampered));
    const file = await s.putTrailFile(tampered, []);
    await s.putDigest(tampered, span(), [{ key: file.key, sha256: '0'.repeat(64) }]);
    const { code, report } = await s.audit();
    expect(code).toBe(3);
    expect(report.instances[0]?.verdict).toBe('unknown');
    expect(report.warnings).toEqual([expect.objectContaining({ source: 'cloudtrail:s3-digest', message: expect.stringMatching(/^TAMPERING: trail log file .* does not match its digest/) })]);
    expect(report.instances[0]?.gaps.map((g) => g.message).join('\n')).toMatch(/TAMPERING/);
  });
});

describe("CloudTrail's digest files, and what is delivered late", () => {
  let s: Scenario;
  let web: Launched;
  const SETTLE = 8_000;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    web = await s.launchOne(await s.image('web'), { role: 'web' });
  });
  afterAll(() => s?.stop());

  it('prove what happened up to `settle` before the end of the deliveries they list, not up to their end', async () => {
    const bucket = await s.bucket('late-trail-logs');
    await s.writeConfig(`sources:\n  lookupEvents: { enabled: false, settle: ${SETTLE / 1000}s }\n  s3: { requireDigests: true, bucket: ${bucket} }\n`);
    // The files delivered up to now, and a session just before now that CloudTrail delivers later.
    await after(web.launchTime + SETTLE - 2_000);
    const delivered = Math.floor(Date.now() / 1000) * 1000;
    const session = s.trail('ssm-start-session', web.instanceId, delivered - 1_000, MALLORY);
    await s.putDigest(bucket, { from: web.launchTime - 3_600_000, to: delivered }, [await s.putTrailFile(bucket, [])]);
    await after(Math.max(delivered, web.launchTime + SETTLE) + 500);
    const early = await s.audit();
    expect(early.report.instances[0]?.verdict).toBe('unknown');
    expect(early.report.instances[0]?.gaps.map((g) => g.message).join('\n')).toMatch(/CloudTrail is not proven complete for .*: no source read it in full/);
    // The next hour's digest lists the file that holds it.
    await s.putDigest(bucket, { from: delivered, to: Date.now() }, [await s.putTrailFile(bucket, [session])]);
    const later = await s.audit();
    expect(later.report.instances[0]?.verdict).toBe('tainted');
    expect(later.report.instances[0]?.findings.map((f) => f.detector)).toContain('interactive-session');
  });
});

describe("CloudTrail's digest files, when a log file cannot be read", () => {
  let s: Scenario;
  let web: Launched;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    web = await s.launchOne(await s.image('web'), { role: 'web' });
    await after(web.launchTime + 2500);
  });
  afterAll(() => s?.stop());

  it('vouch for no instance launched after an older unreadable record: the unproven hour is a gap on it', async () => {
    const bucket = await s.bucket('half-read-trail-logs');
    await s.writeConfig(trailOnly(bucket));
    // Before the instance was launched, a record of an unexpected shape: a gap on the instances that lived then.
    const odd = readFixtureJson<CloudTrailRecord>('cloudtrail/ec2-attach-volume.json');
    Object.assign(odd, { eventName: 'ModifyVolume', eventTime: new Date(web.launchTime - 1_800_000).toISOString(), userIdentity: 'not an object', requestParameters: { volumeId: 'vol-0fedcba9876543210' } });
    const read = await s.putTrailFile(bucket, [odd]);
    await s.putDigest(bucket, { from: web.launchTime - 3_600_000, to: web.launchTime - 600_000 }, [read]);
    // The next digest lists a file that cannot be read: nothing proves the hour the instance lived in.
    const missing = { key: read.key.replace(/\.json\.gz$/, '-gone.json.gz'), sha256: 'ab'.repeat(32) };
    await s.putDigest(bucket, { from: web.launchTime - 600_000, to: Date.now() + 60_000 }, [missing]);
    const { code, report } = await s.audit();
    expect(code).toBe(3);
    expect(report.instances[0]?.verdict).toBe('unknown');
    expect(report.instances[0]?.gaps.map((g) => g.message).join('\n')).toMatch(/CloudTrail is not proven complete/);
  });
  it('read a log file with an unreadable record again every cycle, and never take its digest as proof', async () => {
    const bucket = await s.bucket('odd-trail-logs');
    await s.writeConfig(trailOnly(bucket));
    const odd = readFixtureJson<CloudTrailRecord>('cloudtrail/ssm-start-session.json');
    Object.assign(odd, { eventTime: new Date(web.launchTime + 1000).toISOString(), userIdentity: 'not an object', requestParameters: { target: web.instanceId } });
    const file = await s.putTrailFile(bucket, [odd]);
    await s.putDigest(bucket, { from: web.launchTime - 3_600_000, to: Date.now() + 60_000 }, [file]);
    // Cycles of one daemon's state: what the first read is remembered by the second.
    for (const cycle of [1, 2]) {
      const { code, report } = await s.cycle();
      expect(code, `cycle ${cycle}`).toBe(3);
      expect(report.instances[0]?.verdict, `cycle ${cycle}`).toBe('unknown');
      expect(report.instances[0]?.gaps.map((g) => g.message).join('\n'), `cycle ${cycle}`).toMatch(/could not be read: userIdentity/);
    }
  });
});
