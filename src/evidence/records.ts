import { activityFromRecord, type MalformedRecord, type RecordChannel } from '../core/cloudtrail-record.js';
import type { Activity, Channel, Gap, Scope } from '../core/facts.js';
import type { SourceWarning } from './sources/types.js';

/** One `via` per channel, shared by its activities (never changed: a merge makes a new one). */
const VIA: Readonly<Record<Channel, readonly Channel[]>> = {
  'lookup-events': Object.freeze(['lookup-events']),
  eventbridge: Object.freeze(['eventbridge']),
  s3: Object.freeze(['s3']),
  'ssm-sessions': Object.freeze(['ssm-sessions']),
};

export interface RecordsEvidence {
  activities: Activity[];
  /** one per record of a tracked event that could not be read or attributed */
  gaps: Gap[];
  warnings: SourceWarning[];
  unreadable: number;
  /** the oldest time among unreadable records; null when one of them has no readable time */
  oldestUnreadable: number | null;
}

/** The gap a tracked record that could not be read leaves: on the instances it names, else its whole scope. */
export function gapOf(m: MalformedRecord, scope: Scope, channel: Channel): Gap {
  const what = `CloudTrail record ${m.eventId ?? '(no event id)'}${m.eventName ? ` (${m.eventName})` : ''} from ${channel} could not be read: ${m.reason}`;
  return {
    source: 'cloudtrail',
    accountId: m.accountId ?? scope.accountId,
    region: m.region ?? scope.region,
    message: what,
    ...(m.instanceIds.length ? { instanceIds: m.instanceIds } : {}),
    ...(m.at !== null && !m.instanceIds.length ? { before: m.at } : {}),
  };
}

/**
 * CloudTrail records (JSON text or parsed) from any channel to evidence: activities of tracked events,
 * and a gap for every tracked record that could not be read. Records of other events are dropped.
 */
export function recordsToEvidence(records: ReadonlyArray<{ eventId?: string; raw: string | unknown }>, scope: Scope, channel: Channel): RecordsEvidence {
  const out: RecordsEvidence = { activities: [], gaps: [], warnings: [], unreadable: 0, oldestUnreadable: Infinity };
  // The channel knows the scope for certain (LookupEvents of an account and region, a trail file's key, an envelope).
  const known: RecordChannel = { accountId: scope.accountId, region: scope.region, via: VIA[channel] };
  for (let n = 0; n < records.length; n++) {
    const r = records[n] as { eventId?: string; raw: string | unknown };
    let record: unknown = r.raw;
    if (typeof r.raw === 'string') {
      try {
        record = JSON.parse(r.raw);
      } catch {
        // Not even JSON: whether it is a tracked event, when, and which instances it reached cannot be
        // told (ids in its text may be a command's comment), so it is a gap on its whole scope.
        unreadable(out, { reason: 'not valid JSON', eventId: r.eventId, at: null, accountId: null, region: null, instanceIds: [] }, scope, channel);
        continue;
      }
    }
    const result = activityFromRecord(record, known);
    if (result.kind === 'activity') out.activities.push(result.activity);
    else if (result.kind === 'malformed') unreadable(out, { ...result, eventId: result.eventId ?? r.eventId }, scope, channel);
  }
  if (out.unreadable === 0) out.oldestUnreadable = null;
  return out;
}

/** Evidence of no records, to add pages to (addEvidence). */
export const noEvidence = (): RecordsEvidence => ({ activities: [], gaps: [], warnings: [], unreadable: 0, oldestUnreadable: null });

/** The evidence of more records (the next page) added to what came before: as if read in one go. */
export function addEvidence(into: RecordsEvidence, more: RecordsEvidence): void {
  for (let n = 0; n < more.activities.length; n++) into.activities.push(more.activities[n] as Activity);
  for (const g of more.gaps) into.gaps.push(g);
  for (const w of more.warnings) into.warnings.push(w);
  if (more.unreadable === 0) return;
  into.oldestUnreadable =
    into.unreadable === 0 ? more.oldestUnreadable : into.oldestUnreadable === null || more.oldestUnreadable === null ? null : Math.min(into.oldestUnreadable, more.oldestUnreadable);
  into.unreadable += more.unreadable;
}

function unreadable(out: RecordsEvidence, m: MalformedRecord, scope: Scope, channel: Channel): void {
  const gap = gapOf(m, scope, channel);
  out.gaps.push(gap);
  out.warnings.push({ source: 'cloudtrail', accountId: gap.accountId, region: gap.region, message: gap.message });
  out.unreadable++;
  if (out.oldestUnreadable !== null) out.oldestUnreadable = m.at === null ? null : Math.min(out.oldestUnreadable, m.at);
}

