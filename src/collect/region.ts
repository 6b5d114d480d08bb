import type { Logger } from 'pino';
import { TRACKED_EVENT_NAMES } from '../core/event-catalog.js';
import type { Activity, EvidenceSource, Gap, RegionFacts } from '../core/facts.js';
import { activityFromSession } from '../core/ssm-session.js';
import { describeError } from '../errors.js';
import type { RegionClients } from './clients.js';
import { readTrackedEvents } from './cloudtrail.js';
import { readCommandInstances } from './commands.js';
import { listRunningInstances } from './instances.js';
import { readInventory } from './inventory.js';
import { readSessions } from './sessions.js';

/** LookupEvents reaches back 90 days; keep an hour's margin so the oldest page is not cut at the edge. */
export const CLOUDTRAIL_RETENTION_MS = 90 * 86_400_000 - 3_600_000;

/** The window evidence must cover (`evidence`), and the part of it to read from AWS this time (`read`). */
export interface Windows {
  evidence: { from: number; to: number };
  read: { from: number; to: number };
}

export interface CollectOptions {
  now: number;
  logger: Logger;
  /** given the instances' launch times, which windows to examine and read */
  windows: (launchTimes: readonly number[]) => Windows;
  /** stops the reads (a daemon shutting down); what was not read becomes a gap */
  signal?: AbortSignal;
}

export interface CollectError {
  source: string;
  region: string;
  message: string;
}

/** The evidence window: from the oldest launch (or --since) to now, never beyond what CloudTrail keeps. */
export function evidenceWindow(launchTimes: readonly number[], since: number | null, now: number): { from: number; to: number } {
  const floor = now - CLOUDTRAIL_RETENTION_MS;
  const oldest = launchTimes.length ? Math.min(...launchTimes) : now;
  return { from: Math.max(floor, since ?? oldest), to: now };
}

/** A stateless audit reads the whole evidence window. */
export function fullWindows(since: number | null, now: number): (launchTimes: readonly number[]) => Windows {
  return (launchTimes) => {
    const evidence = evidenceWindow(launchTimes, since, now);
    return { evidence, read: evidence };
  };
}

/**
 * Reads every source for one region. A source that fails becomes a gap (its instances' verdicts
 * turn `unknown`) and an error in the report; it never shortens the facts into a clean result.
 */
export async function collectRegion(
  clients: RegionClients,
  opts: CollectOptions,
): Promise<{ facts: RegionFacts; errors: CollectError[]; warnings: CollectError[] }> {
  const { region } = clients;
  const log = opts.logger.child({ region });
  const errors: CollectError[] = [];
  const warnings: CollectError[] = [];
  const gaps: Gap[] = [];
  const fail = (source: EvidenceSource, operation: string, err: unknown) => {
    const message = `${operation} failed: ${describeError(err)}`;
    log.warn({ source, operation, err: describeError(err) }, 'evidence could not be read');
    errors.push({ source: `${source}:${operation}`, region, message });
    gaps.push({ source, region, message });
  };

  const facts: RegionFacts = {
    region,
    window: { from: opts.now, to: opts.now },
    instances: [],
    activities: [],
    inventory: new Map(),
    commandTargets: new Map(),
    gaps,
  };
  try {
    facts.instances = await listRunningInstances(clients.ec2, region, opts.signal);
  } catch (err) {
    fail('ec2', 'DescribeInstances', err);
    return { facts, errors, warnings };
  }
  const windows = opts.windows(facts.instances.map((i) => i.launchTime));
  facts.window = windows.evidence;
  log.debug({ instances: facts.instances.length, from: new Date(facts.window.from).toISOString() }, 'instances listed');
  if (facts.instances.length === 0) return { facts, errors, warnings };

  const trail = readTrackedEvents(clients.cloudtrail, TRACKED_EVENT_NAMES, windows.read, opts.signal).then(
    (r) => {
      for (const s of r.skipped) {
        log.warn({ eventId: s.eventId, reason: s.reason }, 'CloudTrail record skipped');
        warnings.push({ source: 'cloudtrail', region, message: `record ${s.eventId ?? '(no event id)'} skipped: ${s.reason}` });
      }
      return r.activities;
    },
    (err) => {
      fail('cloudtrail', 'LookupEvents', err);
      return [] as Activity[];
    },
  );
  const sessions = readSessions(clients.ssm, windows.read.from, opts.signal).then(
    (records) => records.flatMap((s) => activityFromSession(s, region) ?? []),
    (err) => {
      fail('ssm-sessions', 'DescribeSessions', err);
      return [] as Activity[];
    },
  );
  const inventory = readInventory(clients.ssm, opts.signal).catch((err) => {
    fail('ssm-inventory', 'GetInventory', err);
    return new Map();
  });

  const [trailActivities, sessionActivities, inv] = await Promise.all([trail, sessions, inventory]);
  facts.activities = [...trailActivities, ...sessionActivities];
  facts.inventory = inv;

  // Commands sent by targets name no instance: ask SSM where each ran (one call per command).
  const commandIds = new Set(facts.activities.flatMap((a) => (a.commandTargets?.commandId ? [a.commandTargets.commandId] : [])));
  for (const id of commandIds) {
    try {
      const ids = await readCommandInstances(clients.ssm, id, opts.signal);
      if (ids.length > 0) facts.commandTargets.set(id, ids);
    } catch (err) {
      fail('ssm-commands', `ListCommandInvocations(${id})`, err);
    }
  }
  // Written into the activities, so a cycle that remembers them later attributes them the same way.
  facts.activities = facts.activities.map((a) => {
    const ids = a.commandTargets?.commandId ? facts.commandTargets.get(a.commandTargets.commandId) : undefined;
    return ids && a.instanceIds.length === 0 ? { ...a, instanceIds: ids } : a;
  });
  return { facts, errors, warnings };
}
