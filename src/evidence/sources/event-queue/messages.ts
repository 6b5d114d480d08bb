/**
 * What a message on pristine's event queue can carry, read without I/O: a CloudTrail record inside an
 * EventBridge "AWS API Call via CloudTrail" envelope, or a trail log file announced by S3 (raw, or
 * wrapped in SNS) or by CloudTrail's own SNS log-delivery notification.
 */
export type QueueItem =
  | { kind: 'record'; record: unknown; accountId: string | null; region: string | null }
  | { kind: 'object'; bucket: string; key: string; region: string | null }
  /** S3's test event, or an S3 event that creates nothing */
  | { kind: 'ignored'; reason: string };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/** S3 percent-encodes object keys in event notifications, with `+` for spaces. */
export function s3EventKey(key: string): string {
  return decodeURIComponent(key.replace(/\+/g, ' '));
}

function fromS3Event(body: Obj): QueueItem[] {
  const records = body['Records'];
  if (!Array.isArray(records)) return [];
  return records.filter(isObj).flatMap((r): QueueItem[] => {
    const s3 = isObj(r['s3']) ? r['s3'] : null;
    const bucket = s3 && isObj(s3['bucket']) ? str(s3['bucket']['name']) : null;
    const key = s3 && isObj(s3['object']) ? str(s3['object']['key']) : null;
    const name = str(r['eventName']) ?? '';
    if (!bucket || !key) return [{ kind: 'ignored', reason: 'S3 event without bucket or key' }];
    if (!name.startsWith('ObjectCreated')) return [{ kind: 'ignored', reason: `S3 ${name}` }];
    return [{ kind: 'object', bucket, key: s3EventKey(key), region: str(r['awsRegion']) }];
  });
}

/** Throws when the body is not JSON or none of the known shapes: the message is left to the queue's redrive. */
export function parseQueueMessage(text: string): QueueItem[] {
  const body: unknown = JSON.parse(text);
  if (!isObj(body)) throw new Error('message body is not a JSON object');
  // SNS wraps the real message as a JSON string.
  if (body['Type'] === 'Notification' && typeof body['Message'] === 'string') return parseQueueMessage(body['Message']);
  if (body['detail-type'] === 'AWS API Call via CloudTrail' && isObj(body['detail'])) {
    return [{ kind: 'record', record: body['detail'], accountId: str(body['account']), region: str(body['region']) }];
  }
  if (Array.isArray(body['Records'])) return fromS3Event(body);
  // S3 sends this message to a queue once, when a bucket notification is configured: it names no object.
  if (body['Event'] === 's3:TestEvent') return [{ kind: 'ignored', reason: 'S3 test event' }];
  if (typeof body['s3Bucket'] === 'string' && Array.isArray(body['s3ObjectKey'])) {
    const bucket = body['s3Bucket'];
    return body['s3ObjectKey'].filter((k): k is string => typeof k === 'string').map((key) => ({ kind: 'object', bucket, key, region: null }));
  }
  throw new Error(`not an EventBridge CloudTrail event, an S3 notification or a CloudTrail delivery notification (keys: ${Object.keys(body).slice(0, 8).join(', ')})`);
}
