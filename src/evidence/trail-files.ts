import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import { aws } from '../collect/aws-sdk.js';

const gunzip = promisify(gunzipCb);

/** Where CloudTrail writes a file, read back from its key. */
export interface TrailKey {
  /** everything before the account: `[prefix/]AWSLogs/[o-ORGID/]` */
  base: string;
  organizationId: string | null;
  accountId: string;
  region: string;
  kind: 'log' | 'digest' | 'insight';
}

const KEY = /^((?:.*\/)?AWSLogs\/(?:(o-[a-z0-9]{10,32})\/)?)(\d{12})\/(CloudTrail|CloudTrail-Digest|CloudTrail-Insight)\/([a-z0-9-]+)\/\d{4}\/\d{2}\/\d{2}\/[^/]+$/;
const KIND = { CloudTrail: 'log', 'CloudTrail-Digest': 'digest', 'CloudTrail-Insight': 'insight' } as const;

/**
 * `[prefix/]AWSLogs/[o-ORGID/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/FILE`: organisation trails insert
 * the `o-…` segment, older trails do not; both are accepted. Null for keys CloudTrail did not write.
 */
export function parseTrailKey(key: string): TrailKey | null {
  const m = KEY.exec(key);
  if (!m) return null;
  return { base: m[1] ?? '', organizationId: m[2] ?? null, accountId: m[3] ?? '', region: m[5] ?? '', kind: KIND[m[4] as keyof typeof KIND] };
}

/** The digest folder of one scope and day under a base. */
export function digestDayPrefix(base: string, accountId: string, region: string, day: Date): string {
  const y = day.getUTCFullYear();
  const m = String(day.getUTCMonth() + 1).padStart(2, '0');
  const d = String(day.getUTCDate()).padStart(2, '0');
  return `${base}${accountId}/CloudTrail-Digest/${region}/${y}/${m}/${d}/`;
}

/**
 * One gzip object from S3, uncompressed, with the hex SHA-256 of its uncompressed bytes (the hash
 * CloudTrail's digest files list for each log file).
 */
export async function readGzipObject(s3: S3Client, bucket: string, key: string, signal?: AbortSignal): Promise<{ text: string; sha256: string }> {
  const out = await s3.send(new aws.S3.GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
  if (!out.Body) throw new Error(`s3://${bucket}/${key} has no body`);
  const bytes = Buffer.from(await out.Body.transformToByteArray());
  // S3 may hand the object back already decoded (Content-Encoding: gzip); gzip starts with 1f 8b.
  const plain = bytes[0] === 0x1f && bytes[1] === 0x8b ? await gunzip(bytes) : bytes;
  return { text: plain.toString('utf8'), sha256: createHash('sha256').update(plain).digest('hex') };
}

/** The records of a trail log file (`{"Records": [...]}`). Throws when it is not one. */
export function trailRecords(text: string): unknown[] {
  const parsed: unknown = JSON.parse(text);
  const records = typeof parsed === 'object' && parsed !== null ? (parsed as { Records?: unknown }).Records : undefined;
  if (!Array.isArray(records)) throw new Error('not a CloudTrail log file: no Records array');
  return records;
}
