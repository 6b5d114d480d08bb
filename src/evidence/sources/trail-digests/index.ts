import type { S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { scopeKey, type Gap, type Scope } from '../../../core/facts.js';
import { describeError } from '../../../errors.js';
import { clampSpans, isoSpan, uncovered, type Span } from '../../coverage.js';
import { recordsToEvidence } from '../../records.js';
import type { EvidenceStore } from '../../store-port.js';
import { digestDayPrefix, parseTrailKey, readGzipObject, trailRecords } from '../../trail-files.js';
import type { PullContext, PullResult, SourceDefinition, SourceWarning } from '../types.js';
import { TrailDigestsConfig } from './schema.js';
import { aws } from '../../../collect/aws-sdk.js';

export const IAM_ACTIONS = ['s3:ListBucket', 's3:GetObject'] as const;

const Digest = z.looseObject({
  awsAccountId: z.string(),
  digestStartTime: z.iso.datetime({ offset: true }),
  digestEndTime: z.iso.datetime({ offset: true }),
  logFiles: z.array(
    z.looseObject({ s3Bucket: z.string(), s3Object: z.string(), hashValue: z.string(), hashAlgorithm: z.string().optional() }),
  ),
});

/** Where a scope's trail files live: configured, or learned from a log file the queue announced. */
export interface TrailLocation {
  bucket: string;
  base: string;
}

const LOCATION = (key: string) => `trail-location:${key}`;

/** Remembers where a scope's log files are delivered, so its digests can be found. */
export async function rememberLocation(store: EvidenceStore, scope: Scope, location: TrailLocation): Promise<void> {
  const key = LOCATION(scopeKey(scope));
  if ((await store.meta(key)) === null) await store.setMeta(key, JSON.stringify(location));
}

export async function locationOf(store: EvidenceStore, scope: Scope, config: TrailDigestsConfig): Promise<TrailLocation | null> {
  if (config.bucket) {
    const prefix = config.prefix && !config.prefix.endsWith('/') ? `${config.prefix}/` : config.prefix;
    return { bucket: config.bucket, base: `${prefix}AWSLogs/${config.organizationId ? `${config.organizationId}/` : ''}` };
  }
  const learned = await store.meta(LOCATION(scopeKey(scope)));
  return learned ? (JSON.parse(learned) as TrailLocation) : null;
}

/** The UTC days a span touches, oldest first. */
export function daysOf(span: Span): Date[] {
  const out: Date[] = [];
  const day = new Date(Date.UTC(new Date(span.from).getUTCFullYear(), new Date(span.from).getUTCMonth(), new Date(span.from).getUTCDate()));
  while (day.getTime() <= span.to) {
    out.push(new Date(day));
    day.setUTCDate(day.getUTCDate() + 1);
  }
  return out;
}

interface DigestCheck {
  span: Span;
  status: 'verified' | 'mismatch' | 'incomplete';
  gaps: Gap[];
  warnings: SourceWarning[];
}

/**
 * One digest: every log file it lists is read (unless it was read before) and its SHA-256 compared
 * with the digest's. A file whose hash differs was changed after delivery: tampering.
 */
async function checkDigest(s3: S3Client, store: EvidenceStore, scope: Scope, bucket: string, key: string, now: number, signal?: AbortSignal): Promise<DigestCheck> {
  const { text } = await readGzipObject(s3, bucket, key, signal);
  const digest = Digest.parse(JSON.parse(text));
  const span = { from: Date.parse(digest.digestStartTime), to: Date.parse(digest.digestEndTime) };
  const out: DigestCheck = { span, status: 'verified', gaps: [], warnings: [] };
  if (digest.awsAccountId !== scope.accountId) throw new Error(`digest of account ${digest.awsAccountId} filed under ${scope.accountId}`);
  for (const f of digest.logFiles) {
    let sha = (await store.trailFile(f.s3Bucket, f.s3Object))?.sha256;
    if (!sha) {
      const file = await readGzipObject(s3, f.s3Bucket, f.s3Object, signal);
      sha = file.sha256;
      if (sha === f.hashValue.toLowerCase()) {
        const evidence = recordsToEvidence(trailRecords(file.text).map((raw) => ({ raw })), scope, 's3');
        for (const g of evidence.gaps) out.gaps.push(g);
        for (const w of evidence.warnings) out.warnings.push(w);
        // Its events go into the log before it is remembered as read (a later file of the digest may
        // fail, or the process stop): a file remembered as read is never read again.
        await store.ingest(evidence.activities, now);
        // A file with a record that could not be read is not remembered as read: it is read again (and
        // its gap given again) every cycle, and its digest proves nothing, for as long as it is wanted.
        if (evidence.unreadable) out.status = 'incomplete';
        else await store.recordTrailFile({ bucket: f.s3Bucket, key: f.s3Object, ...scope, sha256: sha, records: evidence.activities.length, readAt: now });
      }
    }
    if (sha !== f.hashValue.toLowerCase()) {
      out.status = 'mismatch';
      const message = `TAMPERING: trail log file s3://${f.s3Bucket}/${f.s3Object} does not match its digest ${key} (SHA-256 ${sha}, the digest says ${f.hashValue}): it was changed after CloudTrail delivered it`;
      out.warnings.push({ source: 'cloudtrail:s3-digest', ...scope, message });
      out.gaps.push({ source: 'cloudtrail', ...scope, message, before: span.to });
    }
  }
  return out;
}

export const trailDigests = {
  id: 's3-digests',
  configKey: 's3',
  config: TrailDigestsConfig,
  proves:
    "CloudTrail's trail files in S3, checked against the trail's hourly digest files: an hour is proven when its digest and every log file it lists were read with matching SHA-256; a mismatch is reported as tampering. Digests arrive about an hour late: LookupEvents covers the latest hour.",
  iam: { member: [], pristine: IAM_ACTIONS },
  enabled: (c: TrailDigestsConfig) => c.requireDigests,

  async read(ctx: PullContext<{ s3: S3Client }, EvidenceStore>, config: TrailDigestsConfig): Promise<PullResult> {
    const { scope, store, now } = ctx;
    const out: PullResult = { activities: [], gaps: [], errors: [], warnings: [], proven: [] };
    const log = ctx.logger.child({ source: 's3-digests', scope: scopeKey(scope) });
    const location = await locationOf(store, scope, config);
    if (!location) {
      log.debug('no trail bucket known yet: set sources.s3.bucket, or let the event queue announce a log file');
      return out;
    }
    const wanted = uncovered({ from: ctx.window.from, to: now - ctx.settle }, clampSpans(await store.coverage(scope, 's3-digest'), now));
    try {
      for (const span of wanted) {
        for (const day of daysOf(span)) {
          const prefix = digestDayPrefix(location.base, scope.accountId, scope.region, day);
          for await (const page of aws.S3.paginateListObjectsV2({ client: ctx.clients.s3 }, { Bucket: location.bucket, Prefix: prefix }, { abortSignal: ctx.signal })) {
            for (const obj of page.Contents ?? []) {
              if (!obj.Key || parseTrailKey(obj.Key)?.kind !== 'digest') continue;
              const known = await store.digest(location.bucket, obj.Key);
              if (known?.status === 'verified') continue;
              const check = await checkDigest(ctx.clients.s3, store, scope, location.bucket, obj.Key, now, ctx.signal);
              for (const g of check.gaps) out.gaps.push(g);
              for (const w of check.warnings) out.warnings.push(w);
              for (const w of check.warnings) log.error({ message: w.message }, 'trail log file does not match its digest');
              await store.recordDigest({ bucket: location.bucket, key: obj.Key, ...scope, from: check.span.from, to: check.span.to, status: check.status, checkedAt: now });
              if (check.status === 'verified') out.proven.push({ kind: 's3-digest', span: check.span });
            }
          }
        }
      }
    } catch (err) {
      const message = `reading digests in s3://${location.bucket}/${location.base} failed: ${describeError(err)}`;
      log.warn({ err: describeError(err), wanted: wanted.map(isoSpan) }, 'evidence could not be read');
      out.errors.push({ source: 'cloudtrail:s3-digests', ...scope, message });
    }
    return out;
  },
} satisfies SourceDefinition<TrailDigestsConfig> & { read: unknown };
