import type { CloudTrailClient } from '@aws-sdk/client-cloudtrail';
import { TRACKED_EVENT_NAMES } from '../../../core/event-catalog.js';
import { scopeKey } from '../../../core/facts.js';
import { describeError } from '../../../errors.js';
import { clockAhead } from '../../clock.js';
import { clampSpans, isoSpan, mergeSpans, uncovered, type Span } from '../../coverage.js';
import { addEvidence, noEvidence, recordsToEvidence } from '../../records.js';
import type { EvidenceStore } from '../../store-port.js';
import type { PullContext, PullResult, SourceDefinition } from '../types.js';
import { LookupEventsConfig } from './schema.js';
import { aws } from '../../../collect/aws-sdk.js';

export const IAM_ACTIONS = ['cloudtrail:LookupEvents'] as const;

const RECONCILED_AT = (key: string) => `reconciled:${key}`;

/** When the reconciler last re-read a scope, and whether it is due again. */
export function reconcileDue(lastAt: number | null, now: number, every: number): boolean {
  // A clock that moved backwards makes the last time lie in the future: reconcile then too.
  return lastAt === null || now - lastAt >= every || lastAt > now;
}

/**
 * The spans to read this cycle: what the stored coverage leaves open in the evidence window, and, when
 * the reconciler is due, the last `reconcile.window` in full (CloudTrail can deliver an event to
 * LookupEvents long after it happened).
 */
export function spansToRead(window: Span, covered: readonly Span[], reconcile: Span | null): Span[] {
  return mergeSpans([...uncovered(window, covered), ...(reconcile ? [reconcile] : [])]);
}

/**
 * Pages of a span's write events read before pristine falls back to a query per event name. Every
 * tracked event is a write (CloudTrail's `readOnly: false`), so one query by `ReadOnly=false` finds
 * them all, among the account's other writes. A quiet span (an incremental cycle, a quiet account) is
 * read in one call instead of one per event name (31, 15 s at CloudTrail's 2 calls a second, shared
 * with every other tool in the account); a busy one costs SWEEP_PAGES calls more than by name alone.
 */
export const SWEEP_PAGES = 2;

/** An event as LookupEvents answers with it: the record itself is JSON text. */
export type LookupEvent = { EventId?: string; EventName?: string; CloudTrailEvent?: string };
type LookupPage = { Events?: LookupEvent[]; NextToken?: string };

/** Events to the records handed on to be parsed. */
export const recordsOf = (events: readonly LookupEvent[]): Array<{ eventId?: string; raw: string }> =>
  events.map((e) => ({ eventId: e.EventId, raw: e.CloudTrailEvent ?? '' }));

/**
 * The events of a page of the account's writes that are tracked, by the name LookupEvents gives
 * beside each record: the others are never parsed. An event without a name is kept (parsed, it is
 * judged by what its record says).
 */
export const trackedOf = (events: readonly LookupEvent[], tracked: ReadonlySet<string>): LookupEvent[] =>
  events.filter((e) => e.EventName === undefined || tracked.has(e.EventName));

/**
 * Every tracked event in a span: first every write event of the span, if that takes at most
 * SWEEP_PAGES pages, else one LookupEvents query per event name (the API takes exactly one lookup
 * attribute a call). Fleet-wide: the instance is found inside each record, never by a query per
 * instance. The client paces the calls (see clients.ts) to stay under 2 requests/s per account and region.
 * Each page's records go to `onPage` as the page comes: the raw JSON of a whole span never sits in memory.
 * Nothing depends on the order CloudTrail returns events in: a sweep cut short is followed by every
 * name's query over the whole span, and an event handed on by the sweep is not handed on again.
 */
export async function readTrackedEvents(
  client: CloudTrailClient,
  eventNames: readonly string[],
  span: Span,
  onPage: (records: Array<{ eventId?: string; raw: string }>) => void,
  signal?: AbortSignal,
): Promise<{ calls: number; swept: boolean }> {
  let calls = 0;
  const lookup = (key: 'ReadOnly' | 'EventName', value: string, token: string | undefined): Promise<LookupPage> => {
    calls++;
    return client.send(
      new aws.CloudTrail.LookupEventsCommand({
        LookupAttributes: [{ AttributeKey: key, AttributeValue: value }],
        StartTime: new Date(span.from),
        EndTime: new Date(span.to),
        MaxResults: 50,
        NextToken: token,
      }),
      { abortSignal: signal },
    );
  };

  const tracked = new Set(eventNames);
  const handed = new Set<string>();
  let token: string | undefined;
  for (let pages = 0; pages < SWEEP_PAGES; pages++) {
    const page = await lookup('ReadOnly', 'false', token);
    const events = trackedOf(page.Events ?? [], tracked);
    for (const e of events) if (e.EventId !== undefined) handed.add(e.EventId);
    onPage(recordsOf(events));
    token = page.NextToken;
    if (!token) return { calls, swept: true };
  }

  for (const name of eventNames) {
    token = undefined;
    do {
      const page = await lookup('EventName', name, token);
      onPage(recordsOf((page.Events ?? []).filter((e) => e.EventId === undefined || !handed.has(e.EventId))));
      token = page.NextToken;
    } while (token);
  }
  return { calls, swept: false };
}

export const lookupEvents = {
  id: 'lookup-events',
  configKey: 'lookupEvents',
  config: LookupEventsConfig,
  proves:
    'CloudTrail management events of the last 90 days, per account and region (2 requests/s, fixed): proves a span complete up to `now - settle`; the reconciler re-reads the last day every hour for late deliveries.',
  iam: { member: IAM_ACTIONS },
  enabled: (c: LookupEventsConfig) => c.enabled,

  async read(ctx: PullContext<{ cloudtrail: CloudTrailClient }, EvidenceStore>, config: LookupEventsConfig): Promise<PullResult> {
    const { scope, now, store } = ctx;
    const key = scopeKey(scope);
    const out: PullResult = { activities: [], gaps: [], errors: [], warnings: [], proven: [] };
    const covered = clampSpans(await store.coverage(scope, 'lookup-events'), now);
    const lastReconcile = Number((await store.meta(RECONCILED_AT(key))) ?? NaN);
    const due = reconcileDue(Number.isNaN(lastReconcile) ? null : lastReconcile, now, config.reconcile.every);
    const reconcile = due ? { from: Math.max(ctx.window.from, now - config.reconcile.window), to: now } : null;
    const spans = spansToRead(ctx.window, covered, reconcile);
    const log = ctx.logger.child({ source: 'lookup-events', scope: key });
    let settled = now - ctx.settle;
    // The reconcile is done when every call succeeded; a record that could not be read is its own gap.
    let called = true;
    for (const span of spans) {
      // A page at a time; what a span gave counts only once all of it was read.
      const evidence = noEvidence();
      try {
        const { calls, swept } = await readTrackedEvents(ctx.clients.cloudtrail, TRACKED_EVENT_NAMES, span, (records) => addEvidence(evidence, recordsToEvidence(records, scope, 'lookup-events')), ctx.signal);
        log.debug({ span: isoSpan(span), calls, by: swept ? 'write events' : 'event name' }, 'CloudTrail read');
      } catch (err) {
        called = false;
        const message = `LookupEvents failed: ${describeError(err)}`;
        log.warn({ err: describeError(err), span: isoSpan(span) }, 'evidence could not be read');
        out.errors.push({ source: 'cloudtrail:LookupEvents', ...scope, message });
        out.gaps.push({ source: 'cloudtrail', ...scope, message, before: span.to });
        continue;
      }
      // What is proven is AWS's time minus settle: a local clock ahead of AWS would prove spans whose
      // events CloudTrail has not shown yet (the SDK keeps AWS's Date header against the local clock).
      const ahead = clockAhead(ctx.clients.cloudtrail);
      if (ahead > 0 && now - ctx.settle - ahead < settled) {
        settled = now - ctx.settle - ahead;
        log.warn({ aheadMs: ahead }, 'the local clock is ahead of AWS: spans are proven up to AWS time minus settle');
      }
      for (const a of evidence.activities) out.activities.push(a);
      for (const g of evidence.gaps) out.gaps.push(g);
      for (const w of evidence.warnings) out.warnings.push(w);
      for (const w of evidence.warnings) log.warn({ message: w.message }, 'CloudTrail record skipped');
      // Coverage never moves past a record that could not be read: the next cycle reads it again.
      const stop = evidence.unreadable ? (evidence.oldestUnreadable ?? span.from) - 1 : Infinity;
      const to = Math.min(span.to, settled, stop);
      if (to >= span.from) out.proven.push({ kind: 'lookup-events', span: { from: span.from, to } });
      (out.read ??= []).push({ kind: 'lookup-events', span });
    }
    if (reconcile && called) {
      // Kept by the caller after what it read is in the log: a crash before that reconciles again.
      out.meta = [{ key: RECONCILED_AT(key), value: String(now) }];
      log.debug({ span: isoSpan(reconcile) }, 'reconciled');
    }
    return out;
  },
} satisfies SourceDefinition<LookupEventsConfig> & { read: unknown };

