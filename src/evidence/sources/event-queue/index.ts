import type { Message, SQSClient } from '@aws-sdk/client-sqs';
import type { S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import type { Activity, Scope } from '../../../core/facts.js';
import { describeError } from '../../../errors.js';
import type { Logger } from '../../../logger.js';
import { recordsToEvidence } from '../../records.js';
import type { EvidenceStore, TrailFileRecord } from '../../store-port.js';
import { parseTrailKey, readGzipObject, trailRecords } from '../../trail-files.js';
import { rememberLocation } from '../trail-digests/index.js';
import type { SourceDefinition } from '../types.js';
import { parseQueueMessage, type QueueItem } from './messages.js';
import { aws } from '../../../collect/aws-sdk.js';

export const IAM_ACTIONS = ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 's3:GetObject'] as const;

/** `sources.queues`: SQS queue URLs that carry EventBridge CloudTrail events and trail-file notifications. */
export const EventQueueConfig = z.array(z.url({ message: 'expected an SQS queue URL' })).default([]);
export type EventQueueConfig = z.output<typeof EventQueueConfig>;

/** After this many receives a failing message is the dead-letter queue's business (the queue's redrive policy). */
export const REDRIVE_WARN_AFTER = 3;

export interface QueueContext {
  sqs: SQSClient;
  /** an S3 client for the trail bucket's region (pristine's own identity) */
  s3For: (region: string | null) => S3Client;
  store: EvidenceStore;
  logger: Logger;
  signal?: AbortSignal;
  now: () => number;
  /** events of accounts and regions pristine does not audit are dropped */
  inScope: (scope: Scope) => boolean;
  /** long polling: how long a receive waits for a message (0..20 s) */
  waitSeconds: number;
  /** while a large log file is read, the message is kept invisible this long at a time */
  visibilitySeconds?: number;
}

export interface ConsumeResult {
  received: number;
  deleted: number;
  failed: number;
  /** activities the evidence log did not hold before */
  ingested: Activity[];
}

/** Keeps a message invisible while its work runs, so no other consumer takes it meanwhile. */
function keepInvisible(ctx: QueueContext, queueUrl: string, message: Message): () => void {
  const seconds = ctx.visibilitySeconds ?? 60;
  const timer = setInterval(() => {
    ctx.sqs
      .send(new aws.SQS.ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: seconds }))
      .catch((err: unknown) => ctx.logger.warn({ queueUrl, err: describeError(err) }, 'could not extend a message\'s visibility'));
  }, (seconds * 1000) / 3);
  timer.unref();
  return () => clearInterval(timer);
}

/** What one item of a message brings: its activities, and the trail file to remember as read once they are stored. */
interface ItemEvidence {
  activities: Activity[];
  file?: TrailFileRecord;
}

const NOTHING: ItemEvidence = { activities: [] };

async function evidenceOf(ctx: QueueContext, queueUrl: string, message: Message, item: QueueItem): Promise<ItemEvidence> {
  if (item.kind === 'ignored') return NOTHING;
  if (item.kind === 'record') {
    const record = item.record as Record<string, unknown>;
    const accountId = item.accountId ?? (typeof record['recipientAccountId'] === 'string' ? record['recipientAccountId'] : null);
    const region = item.region ?? (typeof record['awsRegion'] === 'string' ? record['awsRegion'] : null);
    if (!accountId || !region || !ctx.inScope({ accountId, region })) return NOTHING;
    const evidence = recordsToEvidence([{ raw: record }], { accountId, region }, 'eventbridge');
    for (const w of evidence.warnings) ctx.logger.warn({ queueUrl, message: w.message }, 'CloudTrail record from the queue could not be read');
    return { activities: evidence.activities };
  }
  const where = parseTrailKey(item.key);
  // Digests are read by the s3-digests source; Insights events are not API calls.
  if (!where || where.kind !== 'log') return NOTHING;
  const scope = { accountId: where.accountId, region: where.region };
  if (!ctx.inScope(scope)) return NOTHING;
  await rememberLocation(ctx.store, scope, { bucket: item.bucket, base: where.base });
  if (await ctx.store.trailFile(item.bucket, item.key)) return NOTHING;
  const stop = keepInvisible(ctx, queueUrl, message);
  try {
    const file = await readGzipObject(ctx.s3For(item.region), item.bucket, item.key, ctx.signal);
    const evidence = recordsToEvidence(trailRecords(file.text).map((raw) => ({ raw })), scope, 's3');
    for (const w of evidence.warnings) ctx.logger.warn({ file: item.key, message: w.message }, 'CloudTrail record in a trail file could not be read');
    // Not remembered as read when a record could not be: the digest check reads it again and says so.
    const read = { bucket: item.bucket, key: item.key, ...scope, sha256: file.sha256, records: evidence.activities.length, readAt: ctx.now() };
    return { activities: evidence.activities, ...(evidence.unreadable === 0 ? { file: read } : {}) };
  } finally {
    stop();
  }
}

/**
 * One receive from a queue: up to 10 messages, long-polled. A message is deleted only once its
 * events are in the evidence log; one that fails stays on the queue, to be received again and, after
 * the queue's maxReceiveCount, moved to its dead-letter queue. Redelivery is harmless: the log is keyed
 * by CloudTrail eventID, so the same event by EventBridge, S3 and LookupEvents is one event.
 */
export async function consumeOnce(ctx: QueueContext, queueUrl: string): Promise<ConsumeResult> {
  const out: ConsumeResult = { received: 0, deleted: 0, failed: 0, ingested: [] };
  const res = await ctx.sqs.send(
    new aws.SQS.ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: ctx.waitSeconds, MessageSystemAttributeNames: ['ApproximateReceiveCount'] }),
    { abortSignal: ctx.signal },
  );
  for (const message of res.Messages ?? []) {
    out.received++;
    try {
      const activities: Activity[] = [];
      const files: TrailFileRecord[] = [];
      for (const item of parseQueueMessage(message.Body ?? '')) {
        const got = await evidenceOf(ctx, queueUrl, message, item);
        // A trail file holds thousands of records: loops, not push(...spread).
        for (const a of got.activities) activities.push(a);
        if (got.file) files.push(got.file);
      }
      for (const a of await ctx.store.ingest(activities, ctx.now())) out.ingested.push(a);
      // Remembered as read only once its events are in the log: a message that failed half way, received
      // again, reads its files again.
      for (const f of files) await ctx.store.recordTrailFile(f);
    } catch (err) {
      out.failed++;
      const receives = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
      const redrive = receives >= REDRIVE_WARN_AFTER;
      ctx.logger.warn(
        { queueUrl, messageId: message.MessageId, receives, err: describeError(err) },
        redrive ? "a message keeps failing: it is left to the queue's redrive policy (dead-letter queue)" : 'a message could not be read: it stays on the queue',
      );
      continue;
    }
    try {
      await ctx.sqs.send(new aws.SQS.DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }));
      out.deleted++;
    } catch (err) {
      // Its events are in the log: receiving it again only repeats what is known.
      ctx.logger.warn({ queueUrl, messageId: message.MessageId, err: describeError(err) }, 'a message could not be deleted; it will be received again');
    }
  }
  return out;
}

export const eventQueue = {
  id: 'event-queue',
  configKey: 'queues',
  config: EventQueueConfig,
  proves:
    "CloudTrail events pushed within seconds (EventBridge) or minutes (trail files announced by S3 or CloudTrail's SNS notification): they taint at once, but never vouch for `pristine` (EventBridge is best effort).",
  iam: { member: [], pristine: IAM_ACTIONS },
  enabled: (c: EventQueueConfig) => c.length > 0,
} satisfies SourceDefinition<EventQueueConfig>;
