import { CLOUDTRAIL_RETENTION_MS, evidenceWindow, type Windows } from '../collect/region.js';
import type { RegionFacts } from '../core/facts.js';
import type { StateStore } from './store.js';

/** CloudTrail can deliver an event to LookupEvents minutes after it happened: re-read this much. */
export const REREAD_OVERLAP_MS = 20 * 60_000;
const SOURCE = 'activity';

/**
 * Lets a cycle read only what is new. The store remembers, per region, the span of time whose
 * activity (CloudTrail and SSM sessions) was read without a hole, and the activities themselves;
 * a cycle reads from the end of that span (less an overlap) and evaluates remembered + new.
 * An instance launched before the remembered span widens the read back to its launch.
 */
export class EvidenceMemory {
  constructor(private readonly store: StateStore) {}

  windows(region: string, now: number): (launchTimes: readonly number[]) => Windows {
    const floor = now - CLOUDTRAIL_RETENTION_MS;
    const cov = this.store.coverage(region, SOURCE);
    return (launchTimes) => {
      if (!cov || cov.to < floor) {
        const evidence = evidenceWindow(launchTimes, null, now);
        return { evidence, read: evidence };
      }
      const oldest = launchTimes.length ? Math.min(...launchTimes) : now;
      const from = Math.max(floor, Math.min(cov.from, oldest));
      const readFrom = from < cov.from ? from : Math.max(from, cov.to - REREAD_OVERLAP_MS);
      return { evidence: { from, to: now }, read: { from: readFrom, to: now } };
    };
  }

  /**
   * Adds remembered activities to the facts. When this cycle's activity sources were read in full,
   * remembers the new activities and extends the span; otherwise the span stays as it was, so the
   * next cycle reads this stretch again.
   */
  merge(facts: RegionFacts, now: number): void {
    const remembered = new Map(this.store.activities(facts.region, facts.window.from).map((a) => [a.id, a]));
    // Read again in the overlap: keep what the first read learned (the instances a command ran on,
    // which SSM forgets after a while).
    facts.activities = facts.activities.map((a) => {
      const known = remembered.get(a.id);
      remembered.delete(a.id);
      return known && a.instanceIds.length === 0 && known.instanceIds.length > 0 ? known : a;
    });
    // A command whose targets could not be resolved is read again next cycle, not remembered half-done.
    const complete = !facts.gaps.some((g) => g.source === 'cloudtrail' || g.source === 'ssm-sessions' || g.source === 'ssm-commands' || g.source === 'ec2');
    if (complete) {
      this.store.transaction(() => {
        this.store.saveActivities(facts.activities);
        this.store.setCoverage(facts.region, SOURCE, facts.window);
        this.store.pruneActivities(now - CLOUDTRAIL_RETENTION_MS);
      });
    }
    facts.activities = [...remembered.values(), ...facts.activities];
  }
}
