// The event-queue source's contract with SQS, with the SQS and S3 clients stubbed: delete only once the
// events are in the log, keep a message invisible while a large trail file is read, leave a message that
// keeps failing to the queue's redrive policy.
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { consumeOnce, REDRIVE_WARN_AFTER, type QueueContext } from '../../src/evidence/sources/event-queue/index.js';
import { SqliteStateStore } from '../../src/state/sqlite/store.js';
import { readFixtureJson } from '../support/fixtures.js';

const URL = 'https://sqs.us-east-1.amazonaws.com/111122223333/pristine-events';
const KEY = 'AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/21/111122223333_CloudTrail_us-east-1_20261121T1205Z_x.json.gz';

interface Sent {
  name: string;
  input: Record<string, unknown>;
}

function sqsStub(messages: Array<{ Body: string; receives?: number }>) {
  const sent: Sent[] = [];
  return {
    sent,
    client: {
      async send(command: { constructor: { name: string }; input: Record<string, unknown> }) {
        sent.push({ name: command.constructor.name, input: command.input });
        if (command.constructor.name === 'ReceiveMessageCommand') {
          return { Messages: messages.map((m, i) => ({ MessageId: `m-${i}`, ReceiptHandle: `rh-${i}`, Body: m.Body, Attributes: { ApproximateReceiveCount: String(m.receives ?? 1) } })) };
        }
        return {};
      },
    },
  };
}

function s3Stub(objects: Record<string, Buffer>, delayMs = 0) {
  return {
    async send(command: { input: { Key: string } }) {
      await new Promise((r) => setTimeout(r, delayMs));
      const body = objects[command.input.Key];
      if (!body) throw Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey' });
      return { Body: { transformToByteArray: async () => new Uint8Array(body) } };
    },
  };
}

const stores: SqliteStateStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

/** `visibilitySeconds`: a minute, as a real queue's, unless a test waits for the visibility to be extended. */
function context(sqs: unknown, s3: unknown, warnings: string[] = [], visibilitySeconds = 60): QueueContext & { store: SqliteStateStore } {
  const store = SqliteStateStore.open(':memory:');
  stores.push(store);
  const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push((JSON.parse(line) as { msg: string }).msg) });
  return {
    sqs: sqs as QueueContext['sqs'],
    s3For: () => s3 as ReturnType<QueueContext['s3For']>,
    store,
    logger,
    now: () => Date.parse('2026-11-21T12:10:00Z'),
    inScope: (s) => s.accountId === '111122223333',
    waitSeconds: 20,
    visibilitySeconds,
  };
}

const trailFile = () => gzipSync(Buffer.from(JSON.stringify({ Records: [readFixtureJson('cloudtrail/ssm-start-session.json')] })));
const s3Event = (key: string) => JSON.stringify({ Records: [{ eventName: 'ObjectCreated:Put', awsRegion: 'us-east-1', s3: { bucket: { name: 'trail' }, object: { key } } }] });

describe('consumeOnce', () => {
  it('long-polls, puts the events in the log, then deletes the message', async () => {
    const sqs = sqsStub([{ Body: s3Event(KEY) }]);
    const ctx = context(sqs.client, s3Stub({ [KEY]: trailFile() }));
    const r = await consumeOnce(ctx, URL);
    expect(sqs.sent[0]).toMatchObject({ name: 'ReceiveMessageCommand', input: { QueueUrl: URL, WaitTimeSeconds: 20, MaxNumberOfMessages: 10 } });
    expect(r).toMatchObject({ received: 1, deleted: 1, failed: 0 });
    expect(r.ingested.map((a) => [a.eventName, a.via])).toEqual([['StartSession', ['s3']]]);
    expect(await ctx.store.activities({ accountId: '111122223333', region: 'us-east-1' }, 0)).toHaveLength(1);
    expect(sqs.sent.map((c) => c.name)).toEqual(['ReceiveMessageCommand', 'DeleteMessageCommand']);
    expect(await ctx.store.trailFile('trail', KEY)).toMatchObject({ records: 1 });
  });

  it('keeps the message invisible while a large trail file is read', async () => {
    const sqs = sqsStub([{ Body: s3Event(KEY) }]);
    const ctx = context(sqs.client, s3Stub({ [KEY]: trailFile() }, 700), [], 0.3);
    await consumeOnce(ctx, URL);
    const extended = sqs.sent.filter((c) => c.name === 'ChangeMessageVisibilityCommand');
    expect(extended.length).toBeGreaterThanOrEqual(2);
    expect(extended[0]?.input).toMatchObject({ QueueUrl: URL, ReceiptHandle: 'rh-0', VisibilityTimeout: 0.3 });
    expect(sqs.sent[sqs.sent.length - 1]?.name).toBe('DeleteMessageCommand');
  });

  it('takes what it can of a trail file with a record it cannot read, and does not remember the file as read', async () => {
    const odd = { ...readFixtureJson<Record<string, unknown>>('cloudtrail/ssm-start-session.json'), eventID: 'odd-1', userIdentity: 'not an object' };
    const sqs = sqsStub([{ Body: s3Event(KEY) }]);
    const file = gzipSync(Buffer.from(JSON.stringify({ Records: [readFixtureJson('cloudtrail/ssm-start-session.json'), odd] })));
    const ctx = context(sqs.client, s3Stub({ [KEY]: file }));
    const r = await consumeOnce(ctx, URL);
    expect(r).toMatchObject({ received: 1, deleted: 1, failed: 0 });
    expect(r.ingested.map((a) => a.eventName)).toEqual(['StartSession']);
    // The digest check reads it again, and gives the gap of the record it cannot read.
    expect(await ctx.store.trailFile('trail', KEY)).toBeNull();
  });

  it('remembers a trail file as read only once its events are in the log: a message that failed half way reads it again', async () => {
    const OTHER_KEY = KEY.replace('_x.json.gz', '_y.json.gz');
    // CloudTrail's own SNS delivery notice, naming two files; the second cannot be read the first time.
    const notice = JSON.stringify({ s3Bucket: 'trail', s3ObjectKey: [KEY, OTHER_KEY] });
    const objects: Record<string, Buffer> = { [KEY]: trailFile() };
    const sqs = sqsStub([{ Body: notice }]);
    const ctx = context(sqs.client, s3Stub(objects));
    expect(await consumeOnce(ctx, URL)).toMatchObject({ received: 1, deleted: 0, failed: 1 });
    expect(await ctx.store.trailFile('trail', KEY)).toBeNull();
    // Received again, with both files there: the first file's session is in the log, and alerted now.
    objects[OTHER_KEY] = gzipSync(Buffer.from(JSON.stringify({ Records: [] })));
    const again = await consumeOnce(ctx, URL);
    expect(again).toMatchObject({ received: 1, deleted: 1, failed: 0 });
    expect(again.ingested.map((a) => a.eventName)).toEqual(['StartSession']);
    expect(await ctx.store.trailFile('trail', KEY)).toMatchObject({ records: 1 });
  });

  it('does not delete a message it could not read, and says when the redrive policy takes over', async () => {
    const warnings: string[] = [];
    const sqs = sqsStub([{ Body: s3Event('AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/21/missing.json.gz') }, { Body: '{"odd": true}', receives: REDRIVE_WARN_AFTER }]);
    const r = await consumeOnce(context(sqs.client, s3Stub({}), warnings), URL);
    expect(r).toMatchObject({ received: 2, deleted: 0, failed: 2 });
    expect(sqs.sent.some((c) => c.name === 'DeleteMessageCommand')).toBe(false);
    expect(warnings).toEqual(['a message could not be read: it stays on the queue', "a message keeps failing: it is left to the queue's redrive policy (dead-letter queue)"]);
  });

  it('skips digests, Insights files and accounts it does not audit, and still deletes the message', async () => {
    const keys = [
      'AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/21/d.json.gz',
      'AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/21/i.json.gz',
      'AWSLogs/999988887777/CloudTrail/us-east-1/2026/11/21/f.json.gz',
    ];
    const sqs = sqsStub(keys.map((k) => ({ Body: s3Event(k) })));
    const r = await consumeOnce(context(sqs.client, s3Stub({})), URL);
    expect(r).toMatchObject({ received: 3, deleted: 3, failed: 0, ingested: [] });
  });
});
