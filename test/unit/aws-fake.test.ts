// Drives the AWS fake with the real SDK clients, so the wire format (targets, timestamps, paging,
// error shapes) is checked against the same code pristine uses against AWS.
import { readdirSync } from 'node:fs';

import {
  CloudTrailClient,
  LookupEventsCommand,
  paginateLookupEvents,
  type Event as TrailEvent,
  type LookupEventsCommandInput,
} from '@aws-sdk/client-cloudtrail';
import { DescribeInstancesCommand, EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';
import {
  DescribeInstanceInformationCommand,
  DescribeSessionsCommand,
  GetInventoryCommand,
  GetParameterCommand,
  ListInventoryEntriesCommand,
  PutParameterCommand,
  SSMClient,
  paginateDescribeSessions,
  paginateGetInventory,
  paginateListCommandInvocations,
  type InventoryResultEntity,
  type SessionState,
} from '@aws-sdk/client-ssm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { AwsFake, type CloudTrailRecord, type FakeSession } from '../support/aws-fake.js';
import { fixturePath, readFixtureJson, readFixtureJsonl } from '../support/fixtures.js';
import { motoForThisWorker, resetMoto, type MotoServer } from '../support/moto.js';

const REGION = 'us-east-1';
const INSTANCE = 'i-0a1b2c3d4e5f60718';
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };

/** The single-record CloudTrail fixtures the recorded LookupEvents pages hold (those files are responses, not records). */
function fixtureRecords(): CloudTrailRecord[] {
  const paged = new Set(
    ['cloudtrail/lookup-events-page1.json', 'cloudtrail/lookup-events-page2.json'].flatMap((f) => readFixtureJson<{ Events: Array<{ EventId: string }> }>(f).Events.map((e) => e.EventId)),
  );
  return readdirSync(fixturePath('cloudtrail'))
    .filter((name) => name.endsWith('.json') && !name.startsWith('lookup-events-page'))
    .sort()
    .map((name) => readFixtureJson<CloudTrailRecord>(`cloudtrail/${name}`))
    .filter((r) => paged.has(String(r['eventID'])));
}

/** A StartSession record at `base + i minutes`, for volume tests. */
function syntheticRecord(i: number, region = REGION): CloudTrailRecord {
  const record = structuredClone(readFixtureJson<CloudTrailRecord>('cloudtrail/ssm-start-session.json'));
  record.eventID = `synthetic-${String(i).padStart(4, '0')}`;
  record.eventTime = new Date(Date.parse('2026-11-22T00:00:00Z') + i * 60_000).toISOString().replace('.000Z', 'Z');
  record.awsRegion = region;
  return record;
}

const epoch = (iso: string): number => Date.parse(iso) / 1000;

/** Resolves to the error a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error & { $metadata?: { httpStatusCode?: number } }> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof Error) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

describe('AwsFake (CloudTrail/SSM without upstream)', () => {
  let fake: AwsFake;
  const clients: Array<{ destroy(): void }> = [];

  const cloudTrail = (region = REGION): CloudTrailClient => {
    const client = new CloudTrailClient({ region, endpoint: fake.url, credentials, maxAttempts: 1 });
    clients.push(client);
    return client;
  };
  const ssm = (region = REGION): SSMClient => {
    const client = new SSMClient({ region, endpoint: fake.url, credentials, maxAttempts: 1 });
    clients.push(client);
    return client;
  };

  async function lookupAll(input: LookupEventsCommandInput, region = REGION): Promise<{ events: TrailEvent[]; pages: number[] }> {
    const events: TrailEvent[] = [];
    const pages: number[] = [];
    for await (const page of paginateLookupEvents({ client: cloudTrail(region) }, input)) {
      pages.push(page.Events?.length ?? 0);
      events.push(...(page.Events ?? []));
    }
    return { events, pages };
  }

  beforeEach(async () => {
    fake = new AwsFake();
    await fake.start();
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await fake.stop();
  });

  describe('CloudTrail LookupEvents', () => {
    it('pages newest first over more than 50 records, only from the signed region', async () => {
      fake.lookupEventsPerSecond = Number.POSITIVE_INFINITY;
      fake.cloudtrail.records.push(...Array.from({ length: 120 }, (_, i) => syntheticRecord(i)));
      fake.cloudtrail.records.push(syntheticRecord(500, 'eu-west-1'));

      const { events, pages } = await lookupAll({});

      expect(pages).toEqual([50, 50, 20]);
      expect(events.map((e) => e.EventId)).toEqual(
        Array.from({ length: 120 }, (_, i) => `synthetic-${String(119 - i).padStart(4, '0')}`),
      );
      expect(events[0]?.EventTime).toEqual(new Date('2026-11-22T01:59:00Z'));

      const { events: eu } = await lookupAll({}, 'eu-west-1');
      expect(eu.map((e) => e.EventId)).toEqual(['synthetic-0500']);
    });

    it('honours MaxResults and rejects a token replayed against another query', async () => {
      fake.lookupEventsPerSecond = Number.POSITIVE_INFINITY;
      fake.cloudtrail.records.push(...Array.from({ length: 12 }, (_, i) => syntheticRecord(i)));
      const client = cloudTrail();

      const first = await client.send(new LookupEventsCommand({ MaxResults: 5 }));
      expect(first.Events).toHaveLength(5);
      expect(first.NextToken).toBeTruthy();

      const replayed = await rejection(
        client.send(
          new LookupEventsCommand({
            NextToken: first.NextToken,
            LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'StartSession' }],
          }),
        ),
      );
      expect(replayed.name).toBe('InvalidNextTokenException');
      expect((await rejection(client.send(new LookupEventsCommand({ NextToken: 'garbage' })))).name).toBe(
        'InvalidNextTokenException',
      );
      expect((await rejection(client.send(new LookupEventsCommand({ MaxResults: 51 })))).name).toBe(
        'InvalidMaxResultsException',
      );
    });

    it('filters by EventName and time range, returning the record as CloudTrailEvent', async () => {
      fake.lookupEventsPerSecond = Number.POSITIVE_INFINITY;
      fake.cloudtrail.records.push(...fixtureRecords());

      const { events } = await lookupAll({
        LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'SendCommand' }],
        StartTime: new Date('2026-11-20T14:00:00Z'),
        EndTime: new Date('2026-11-20T16:15:00Z'),
      });

      // 16:30 (the inventory command) is outside the window; newest first.
      expect(events.map((e) => e.EventTime?.toISOString())).toEqual([
        '2026-11-20T16:00:00.000Z',
        '2026-11-20T14:10:00.000Z',
      ]);
      const tagTargets = readFixtureJson<CloudTrailRecord>('cloudtrail/ssm-send-command-tag-targets.json');
      expect(JSON.parse(events[0]?.CloudTrailEvent ?? '')).toEqual(tagTargets);
      expect(events[0]).toMatchObject({ EventName: 'SendCommand', Username: 'deploy-bot', ReadOnly: 'false' });
    });

    it('produces the same event summaries as the recorded LookupEvents pages', async () => {
      fake.lookupEventsPerSecond = Number.POSITIVE_INFINITY;
      fake.cloudtrail.records.push(...fixtureRecords());
      type Page = { Events: Array<Record<string, unknown> & { EventId: string; CloudTrailEvent: string }> };
      const recorded = [
        ...readFixtureJson<Page>('cloudtrail/lookup-events-page1.json').Events,
        ...readFixtureJson<Page>('cloudtrail/lookup-events-page2.json').Events,
      ];

      const { events } = await lookupAll({});

      expect(events).toHaveLength(recorded.length);
      for (const want of recorded) {
        const got = events.find((e) => e.EventId === want.EventId);
        expect(got, want.EventId).toBeDefined();
        expect(got).toMatchObject({
          EventName: want.EventName,
          ReadOnly: want.ReadOnly,
          AccessKeyId: want.AccessKeyId,
          EventSource: want.EventSource,
          Username: want.Username,
          EventTime: new Date(Number(want.EventTime) * 1000),
        });
        expect(JSON.parse(got?.CloudTrailEvent ?? '')).toEqual(JSON.parse(want.CloudTrailEvent));
      }
    });

    it('looks up by ResourceName (instance ids in the record) and rejects two attributes', async () => {
      fake.lookupEventsPerSecond = Number.POSITIVE_INFINITY;
      fake.cloudtrail.records.push(...fixtureRecords());

      const { events } = await lookupAll({
        LookupAttributes: [{ AttributeKey: 'ResourceName', AttributeValue: 'i-0ffeeddccbbaa9988' }],
      });
      expect(events.map((e) => e.EventName).sort()).toEqual(['RunInstances', 'SendCommand']);

      const err = await rejection(
        cloudTrail().send(
          new LookupEventsCommand({
            LookupAttributes: [
              { AttributeKey: 'EventName', AttributeValue: 'SendCommand' },
              { AttributeKey: 'Username', AttributeValue: 'alice' },
            ],
          }),
        ),
      );
      expect(err.name).toBe('InvalidLookupAttributesException');
    });

    it('throttles above 2 requests a second per region, and records the throttled calls', async () => {
      fake.cloudtrail.records.push(...fixtureRecords());
      const client = cloudTrail();

      await client.send(new LookupEventsCommand({}));
      await client.send(new LookupEventsCommand({}));
      const err = await rejection(client.send(new LookupEventsCommand({})));
      expect(err.name).toBe('ThrottlingException');
      expect(err.$metadata?.httpStatusCode).toBe(400);
      expect(fake.throttled).toBe(1);

      // Another region has its own allowance.
      await cloudTrail('us-west-2').send(new LookupEventsCommand({}));

      const lookups = fake.callsTo('LookupEvents', 'cloudtrail');
      expect(lookups.map((c) => [c.region, c.outcome, c.errorCode])).toEqual([
        [REGION, 'ok', undefined],
        [REGION, 'ok', undefined],
        [REGION, 'error', 'ThrottlingException'],
        ['us-west-2', 'ok', undefined],
      ]);

      // The window slides: a second later the region is admitted again.
      await new Promise((r) => setTimeout(r, 1_050));
      await expect(client.send(new LookupEventsCommand({}))).resolves.toBeDefined();
    });
  });

  describe('SSM DescribeSessions', () => {
    function seedSessions(): void {
      type Recorded = { Sessions: Array<Omit<FakeSession, 'state'>> };
      const history = readFixtureJson<Recorded>('ssm/describe-sessions-history.json').Sessions;
      fake.ssm.sessions.push(...history.map((s) => ({ ...s, state: 'History' as const })));
      fake.ssm.sessions.push({
        SessionId: 'carol-0aaaabbbbccccdddd',
        Target: 'i-0ffeeddccbbaa9988',
        Status: 'Connected',
        StartDate: epoch('2026-11-21T09:00:00Z'),
        DocumentName: 'SSM-SessionManagerRunShell',
        Owner: 'arn:aws:sts::111122223333:assumed-role/Developer/carol',
        state: 'Active',
      });
    }

    it('lists History and Active separately, newest first, with epoch dates', async () => {
      seedSessions();
      const client = ssm();

      const history = await client.send(new DescribeSessionsCommand({ State: 'History' }));
      expect(history.Sessions?.map((s) => s.SessionId)).toEqual(['bob-0123456789abcdef0', 'alice-0f1e2d3c4b5a69788']);
      expect(history.Sessions?.[1]).toMatchObject({
        Target: INSTANCE,
        Status: 'Terminated',
        StartDate: new Date('2026-11-20T14:03:11Z'),
        EndDate: new Date(1795185062 * 1000),
        Reason: 'INC-4411 nginx hotfix',
      });

      const active = await client.send(new DescribeSessionsCommand({ State: 'Active' }));
      expect(active.Sessions?.map((s) => s.SessionId)).toEqual(['carol-0aaaabbbbccccdddd']);
    });

    it('filters by InvokedAfter and Target', async () => {
      seedSessions();
      const client = ssm();

      const after = await client.send(
        new DescribeSessionsCommand({ State: 'History', Filters: [{ key: 'InvokedAfter', value: '2026-11-20T15:00:00Z' }] }),
      );
      expect(after.Sessions?.map((s) => s.SessionId)).toEqual(['bob-0123456789abcdef0']);

      const none = await client.send(
        new DescribeSessionsCommand({ State: 'History', Filters: [{ key: 'Target', value: 'i-0ffeeddccbbaa9988' }] }),
      );
      expect(none.Sessions).toEqual([]);
    });

    it('pages with MaxResults and requires a valid State', async () => {
      fake.ssm.sessions.push(
        ...Array.from({ length: 45 }, (_, i) => ({
          SessionId: `user-${String(i).padStart(17, '0')}`,
          Target: INSTANCE,
          Status: 'Terminated',
          StartDate: epoch('2026-11-20T00:00:00Z') + i * 60,
          EndDate: epoch('2026-11-20T00:00:30Z') + i * 60,
          state: 'History' as const,
        })),
      );
      const client = ssm();

      const pages: number[] = [];
      for await (const page of paginateDescribeSessions({ client }, { State: 'History', MaxResults: 20 })) {
        pages.push(page.Sessions?.length ?? 0);
      }
      expect(pages).toEqual([20, 20, 5]);

      const err = await rejection(client.send(new DescribeSessionsCommand({ State: 'Bogus' as SessionState })));
      expect(err.name).toBe('ValidationException');
    });
  });

  describe('SSM inventory and commands', () => {
    it('GetInventory pages at 50 in a stable order and rejects MaxResults over 50', async () => {
      const drifted = readFixtureJsonl<Record<string, string>>('ssm/inventory-drifted.jsonl');
      for (let i = 0; i < 120; i++) {
        const id = `i-${i.toString(16).padStart(17, '0')}`;
        fake.ssm.inventory.set(id, { captureTime: '2026-11-21T06:00:00Z', content: [{ Name: 'adduser', Version: '3.134' }] });
      }
      fake.ssm.inventory.set(INSTANCE, { captureTime: '2026-11-21T06:00:00Z', content: drifted });
      const client = ssm();

      const entities: InventoryResultEntity[] = [];
      const pages: number[] = [];
      for await (const page of paginateGetInventory({ client }, { MaxResults: 50 })) {
        pages.push(page.Entities?.length ?? 0);
        entities.push(...(page.Entities ?? []));
      }
      expect(pages).toEqual([50, 50, 21]);
      const ids = entities.map((e) => e.Id ?? '');
      expect(ids).toEqual([...ids].sort());

      const mine = entities.find((e) => e.Id === INSTANCE);
      expect(mine?.Data?.['AWS:Application']).toMatchObject({
        TypeName: 'AWS:Application',
        SchemaVersion: '1.1',
        CaptureTime: '2026-11-21T06:00:00Z',
      });
      expect(mine?.Data?.['AWS:Application']?.Content).toEqual(drifted);

      const one = await client.send(
        new GetInventoryCommand({
          Filters: [{ Key: 'AWS:InstanceInformation.InstanceId', Values: [INSTANCE], Type: 'Equal' }],
        }),
      );
      expect(one.Entities?.map((e) => e.Id)).toEqual([INSTANCE]);

      const err = await rejection(client.send(new GetInventoryCommand({ MaxResults: 51 })));
      expect(err.name).toBe('ValidationException');
    });

    it('ListInventoryEntries pages one instance and is recorded', async () => {
      const drifted = readFixtureJsonl<Record<string, string>>('ssm/inventory-drifted.jsonl');
      fake.ssm.inventory.set(INSTANCE, { captureTime: '2026-11-21T06:00:00Z', content: drifted });
      const client = ssm();

      const first = await client.send(
        new ListInventoryEntriesCommand({ InstanceId: INSTANCE, TypeName: 'AWS:Application', MaxResults: 50 }),
      );
      expect(first).toMatchObject({ InstanceId: INSTANCE, TypeName: 'AWS:Application', CaptureTime: '2026-11-21T06:00:00Z' });
      expect(first.Entries).toEqual(drifted.slice(0, 50));
      expect(first.NextToken).toBeTruthy();
      expect(fake.callsTo('ListInventoryEntries')).toHaveLength(1);
    });

    it('ListCommandInvocations lists instances per command, 50 a page', async () => {
      const many = Array.from({ length: 60 }, (_, i) => `i-${i.toString(16).padStart(17, '0')}`);
      fake.ssm.commandInvocations.set('5f0e7c2a-1111-4d2b-9c3a-0123456789ab', [INSTANCE, 'i-0ffeeddccbbaa9988']);
      fake.ssm.commandInvocations.set('7a9b8c7d-2222-4e3f-8a1b-abcdefabcdef', many);
      const client = ssm();

      const pages: string[][] = [];
      for await (const page of paginateListCommandInvocations(
        { client },
        { CommandId: '7a9b8c7d-2222-4e3f-8a1b-abcdefabcdef' },
      )) {
        pages.push((page.CommandInvocations ?? []).map((c) => c.InstanceId ?? ''));
      }
      expect(pages.map((p) => p.length)).toEqual([50, 10]);
      expect(pages.flat()).toEqual(many);

      const small: unknown[] = [];
      for await (const page of paginateListCommandInvocations(
        { client },
        { CommandId: '5f0e7c2a-1111-4d2b-9c3a-0123456789ab' },
      )) {
        small.push(...(page.CommandInvocations ?? []));
      }
      expect(small).toEqual(
        [INSTANCE, 'i-0ffeeddccbbaa9988'].map((InstanceId) => ({
          CommandId: '5f0e7c2a-1111-4d2b-9c3a-0123456789ab',
          InstanceId,
          Status: 'Success',
          DocumentName: 'AWS-RunShellScript',
        })),
      );
    });
  });

  describe('error injection and unknown operations', () => {
    it('fail() makes an operation fail the given number of times', async () => {
      fake.ssm.inventory.set(INSTANCE, { captureTime: '2026-11-21T06:00:00Z', content: [] });
      const client = ssm();

      fake.fail('GetInventory', { code: 'InternalServerError', status: 500, times: 1 });
      const err = await rejection(client.send(new GetInventoryCommand({})));
      expect(err.name).toBe('InternalServerError');
      expect(err.$metadata?.httpStatusCode).toBe(500);
      await expect(client.send(new GetInventoryCommand({}))).resolves.toMatchObject({ Entities: [{ Id: INSTANCE }] });

      fake.fail('DescribeSessions', { code: 'AccessDeniedException', message: 'no ssm:DescribeSessions' });
      for (let i = 0; i < 3; i++) {
        const denied = await rejection(client.send(new DescribeSessionsCommand({ State: 'History' })));
        expect(denied.name).toBe('AccessDeniedException');
        expect(denied.message).toBe('no ssm:DescribeSessions');
      }
      fake.clearFailures();
      await expect(client.send(new DescribeSessionsCommand({ State: 'History' }))).resolves.toMatchObject({ Sessions: [] });

      expect(fake.callsTo('GetInventory').map((c) => [c.outcome, c.status, c.errorCode])).toEqual([
        ['error', 500, 'InternalServerError'],
        ['ok', 200, undefined],
      ]);
    });

    it('answers operations it does not fake with UnknownOperationException when there is no upstream', async () => {
      const err = await rejection(ssm().send(new DescribeInstanceInformationCommand({})));
      expect(err.name).toBe('UnknownOperationException');
      expect(fake.calls).toMatchObject([
        { service: 'ssm', operation: 'DescribeInstanceInformation', region: REGION, handledBy: 'none', outcome: 'error' },
      ]);
    });
  });
});

describe('AwsFake in front of moto', () => {
  let moto: MotoServer;
  let fake: AwsFake;
  let ec2: EC2Client;
  let ssm: SSMClient;

  beforeAll(async () => {
    moto = await motoForThisWorker();
    fake = new AwsFake({ upstream: moto.url });
    const url = await fake.start();
    ec2 = new EC2Client({ region: REGION, endpoint: url, credentials, maxAttempts: 1 });
    ssm = new SSMClient({ region: REGION, endpoint: url, credentials, maxAttempts: 1 });
  });

  afterAll(async () => {
    ec2?.destroy();
    ssm?.destroy();
    await fake?.stop();
    await moto?.stop();
  });

  beforeEach(async () => {
    fake.reset();
    await resetMoto(moto.url);
  });

  it('proxies EC2 Query calls to moto and records them', async () => {
    const run = await ec2.send(
      new RunInstancesCommand({ ImageId: 'ami-12c6146b', MinCount: 1, MaxCount: 1, InstanceType: 't3.micro' }),
    );
    const id = run.Instances?.[0]?.InstanceId;
    expect(id).toMatch(/^i-/);

    const described = await ec2.send(new DescribeInstancesCommand({}));
    expect(described.Reservations?.flatMap((r) => r.Instances ?? []).map((i) => i.InstanceId)).toEqual([id]);

    expect(fake.calls).toMatchObject([
      { service: 'ec2', operation: 'RunInstances', region: REGION, handledBy: 'upstream', outcome: 'ok' },
      { service: 'ec2', operation: 'DescribeInstances', region: REGION, handledBy: 'upstream', outcome: 'ok' },
    ]);
  });

  it('proxies SSM operations it does not fake, and still fakes the ones moto lacks', async () => {
    await ssm.send(new PutParameterCommand({ Name: '/pristine/test', Value: 'x', Type: 'String' }));
    const got = await ssm.send(new GetParameterCommand({ Name: '/pristine/test' }));
    expect(got.Parameter?.Value).toBe('x');

    await expect(ssm.send(new DescribeSessionsCommand({ State: 'Active' }))).resolves.toMatchObject({ Sessions: [] });
    expect(fake.calls.map((c) => [c.operation, c.handledBy])).toEqual([
      ['PutParameter', 'upstream'],
      ['GetParameter', 'upstream'],
      ['DescribeSessions', 'fake'],
    ]);
  });

  it('injects failures into proxied operations in the EC2 error format', async () => {
    fake.fail('DescribeInstances', { code: 'RequestLimitExceeded', status: 503, message: 'Request limit exceeded.', times: 1 });
    const err = await rejection(ec2.send(new DescribeInstancesCommand({})));
    expect(err.name).toBe('RequestLimitExceeded');
    expect(err.message).toBe('Request limit exceeded.');
    await expect(ec2.send(new DescribeInstancesCommand({}))).resolves.toMatchObject({ Reservations: [] });
  });

  it("records moto's own error codes", async () => {
    await expect(ssm.send(new GetParameterCommand({ Name: '/does/not/exist' }))).rejects.toMatchObject({
      name: 'ParameterNotFound',
    });
    expect(fake.calls[0]).toMatchObject({ operation: 'GetParameter', outcome: 'error', errorCode: 'ParameterNotFound' });
  });
});
