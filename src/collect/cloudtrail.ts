import { LookupEventsCommand, type CloudTrailClient } from '@aws-sdk/client-cloudtrail';
import { activityFromRecord } from '../core/cloudtrail-record.js';
import type { Activity } from '../core/facts.js';

/** IAM actions this collector calls. */
export const IAM_ACTIONS = ['cloudtrail:LookupEvents'] as const;

export interface TrailReadResult {
  activities: Activity[];
  /** records of tracked events that were skipped, with why */
  skipped: Array<{ eventId?: string; reason: string }>;
  calls: number;
}

/**
 * Every tracked event in the window, one LookupEvents query per event name (the API takes exactly
 * one lookup attribute a call). Fleet-wide: the instance is found inside each record, never by a
 * query per instance. The client paces the calls (see createRegionClients) to stay under 2 requests/s.
 */
export async function readTrackedEvents(
  client: CloudTrailClient,
  eventNames: readonly string[],
  window: { from: number; to: number },
  signal?: AbortSignal,
): Promise<TrailReadResult> {
  const result: TrailReadResult = { activities: [], skipped: [], calls: 0 };
  for (const name of eventNames) {
    let token: string | undefined;
    do {
      result.calls++;
      const page = await client.send(
        new LookupEventsCommand({
          LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: name }],
          StartTime: new Date(window.from),
          EndTime: new Date(window.to),
          MaxResults: 50,
          NextToken: token,
        }),
        { abortSignal: signal },
      );
      for (const e of page.Events ?? []) {
        let record: unknown;
        try {
          record = JSON.parse(e.CloudTrailEvent ?? '');
        } catch {
          result.skipped.push({ eventId: e.EventId, reason: 'CloudTrailEvent is not valid JSON' });
          continue;
        }
        const r = activityFromRecord(record);
        if (r.kind === 'activity') result.activities.push(r.activity);
        else if (r.kind === 'malformed') result.skipped.push({ eventId: r.eventId ?? e.EventId, reason: r.reason });
      }
      token = page.NextToken;
    } while (token);
  }
  return result;
}
