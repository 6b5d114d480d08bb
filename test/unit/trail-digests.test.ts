// The s3-digests source with S3 stubbed: a trail file's events reach the evidence log before the file is
// remembered as read, so a digest that failed half way never proves an hour whose events were lost.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { trailDigests } from '../../src/evidence/sources/trail-digests/index.js';
import { TrailDigestsConfig } from '../../src/evidence/sources/trail-digests/schema.js';
import { SqliteStateStore } from '../../src/state/sqlite/store.js';
import { readFixtureJson } from '../support/fixtures.js';
import { instance } from '../support/facts.js';

const ACCOUNT = '111122223333';
const REGION = 'us-east-1';
const SCOPE = { accountId: ACCOUNT, region: REGION };
const LOGS = `AWSLogs/${ACCOUNT}/CloudTrail/${REGION}/2026/11/21/`;
const A = `${LOGS}${ACCOUNT}_CloudTrail_${REGION}_20261121T1035Z_a.json.gz`;
const B = `${LOGS}${ACCOUNT}_CloudTrail_${REGION}_20261121T1040Z_b.json.gz`;
const DIGEST = `AWSLogs/${ACCOUNT}/CloudTrail-Digest/${REGION}/2026/11/21/${ACCOUNT}_CloudTrail-Digest_${REGION}_trail_${REGION}_20261121T110000Z.json.gz`;
const NOW = Date.parse('2026-11-21T13:00:00Z');

const stores: SqliteStateStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

describe('the s3-digests source', () => {
  it("puts a file's events in the log before it remembers the file as read, though a later file of the digest fails", async () => {
    const session = { ...readFixtureJson<Record<string, unknown>>('cloudtrail/ssm-start-session.json'), eventTime: '2026-11-21T10:30:00Z' };
    const files: Record<string, string> = { [A]: JSON.stringify({ Records: [session] }), [B]: JSON.stringify({ Records: [] }) };
    const sha = (text: string) => createHash('sha256').update(text).digest('hex');
    const digest = JSON.stringify({
      awsAccountId: ACCOUNT,
      digestStartTime: '2026-11-21T10:00:00Z',
      digestEndTime: '2026-11-21T11:00:00Z',
      logFiles: [A, B].map((k) => ({ s3Bucket: 'trail', s3Object: k, hashValue: sha(files[k] as string), hashAlgorithm: 'SHA-256' })),
    });
    let slowDown = true;
    // A real client (the paginator insists), its send stubbed.
    const s3 = new S3Client({ region: REGION });
    Object.assign(s3, {
      async send(command: { constructor: { name: string }; input: { Key?: string; Prefix?: string } }) {
        if (command.constructor.name === 'ListObjectsV2Command') return { Contents: DIGEST.startsWith(command.input.Prefix ?? '') ? [{ Key: DIGEST }] : [] };
        const key = command.input.Key as string;
        if (key === B && slowDown) {
          slowDown = false;
          throw Object.assign(new Error('Please reduce your request rate.'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } });
        }
        const body = key === DIGEST ? digest : files[key];
        if (body === undefined) throw Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey' });
        return { Body: { transformToByteArray: async () => new Uint8Array(gzipSync(Buffer.from(body))) } };
      },
    });
    const store = SqliteStateStore.open(':memory:');
    stores.push(store);
    const read = () =>
      trailDigests.read(
        { scope: SCOPE, clients: { s3 }, store, instances: [instance()], window: { from: Date.parse('2026-11-21T10:05:00Z'), to: NOW }, now: NOW, settle: 900_000, logger: pino({ level: 'silent' }) },
        TrailDigestsConfig.parse({ requireDigests: true, bucket: 'trail' }),
      );
    const first = await read();
    expect(first.errors.map((e) => e.message)).toEqual([expect.stringMatching(/reduce your request rate/)]);
    expect(first.proven).toEqual([]);
    // The session of the file read before the failure is in the log already.
    expect((await store.activities(SCOPE, 0)).map((a) => a.eventName)).toEqual(['StartSession']);
    const second = await read();
    expect(second.errors).toEqual([]);
    expect(second.proven).toEqual([{ kind: 's3-digest', span: { from: Date.parse('2026-11-21T10:00:00Z'), to: Date.parse('2026-11-21T11:00:00Z') } }]);
    expect((await store.activities(SCOPE, 0)).map((a) => a.eventName)).toEqual(['StartSession']);
  });
});
