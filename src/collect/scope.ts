import type { S3Client } from '@aws-sdk/client-s3';
import { scopeKey, type Activity, type Gap, type ScopeFacts } from '../core/facts.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import { deliveredToHappened, isoSpan, uncovered, type Span } from '../evidence/coverage.js';
import { lookupEvents } from '../evidence/sources/lookup-events/index.js';
import type { SourcesConfig } from '../evidence/sources/registry.js';
import { ssmInventory } from '../evidence/sources/ssm-inventory/index.js';
import { ssmSessions } from '../evidence/sources/ssm-sessions/index.js';
import { trailDigests } from '../evidence/sources/trail-digests/index.js';
import { CLOUDTRAIL_COVERAGE, type CoverageKind, type PullResult, type SourceError, type SourceWarning } from '../evidence/sources/types.js';
import type { EvidenceStore } from '../evidence/store-port.js';
import type { ScopeClients } from './clients.js';
import { listRunningInstances } from './instances.js';
import { readAssociationTargets, readCommandInstances, readDocumentAssociations, readEndpointVpcs } from './references.js';

/** LookupEvents reaches back 90 days; keep an hour's margin so the oldest page is not cut at the edge. */
export const CLOUDTRAIL_RETENTION_MS = 90 * 86_400_000 - 3_600_000;

/** The evidence window: from the oldest first launch (or --since) to now, never beyond what CloudTrail keeps. */
export function evidenceWindow(firstLaunches: readonly number[], since: number | null, now: number): Span {
  const floor = now - CLOUDTRAIL_RETENTION_MS;
  let oldest = now;
  for (const t of firstLaunches) if (t < oldest) oldest = t;
  return { from: Math.max(floor, since ?? oldest), to: now };
}

export interface CollectOptions {
  now: number;
  logger: Logger;
  /** start of the evidence window (--since); null: the oldest first launch in the scope */
  since: number | null;
  store: EvidenceStore;
  sources: SourcesConfig;
  /** an S3 client with pristine's own identity, for the trail bucket's digests */
  s3?: () => S3Client;
  /** stops the reads (a daemon shutting down); what was not read becomes a gap */
  signal?: AbortSignal;
}

export interface CollectedScope {
  facts: ScopeFacts;
  errors: SourceError[];
  warnings: SourceWarning[];
  /** its running instances were listed: what is not among them is gone (false: the scope could not be read at all) */
  listed: boolean;
}

/** The parts of the window that neither the stored coverage of these kinds nor this cycle's reads cover. */
async function missing(
  store: EvidenceStore,
  scope: { accountId: string; region: string },
  kinds: readonly CoverageKind[],
  required: Span,
  readNow: readonly PullResult[],
  settle: number,
): Promise<Span[]> {
  const have: Span[] = [];
  for (const k of kinds) {
    const spans = readNow.flatMap((r) => [...r.proven, ...(r.read ?? [])]).filter((p) => p.kind === k).map((p) => p.span);
    for (const s of await store.coverage(scope, k)) spans.push(s);
    for (const s of k === 's3-digest' ? deliveredToHappened(spans, settle) : spans) have.push(s);
  }
  return uncovered(required, have);
}

/**
 * Reads one scope (account and region): its running instances, then every enabled pull source side
 * by side into the evidence log, then the references some records need resolved (where a command ran,
 * an association's targets, an endpoint's VPC). The facts are what the log holds for the window, so
 * evidence pushed by the event queues counts as well. A source that fails becomes a gap (its instances'
 * verdicts turn `unknown`) and an error in the report; a span no source proved becomes a gap too. It
 * never shortens the facts into a clean result.
 */
export async function collectScope(clients: ScopeClients, opts: CollectOptions): Promise<CollectedScope> {
  const scope = { accountId: clients.accountId, region: clients.region };
  const log = opts.logger.child({ scope: scopeKey(scope) });
  const { store, now } = opts;
  const errors: SourceError[] = [];
  const warnings: SourceWarning[] = [];
  const gaps: Gap[] = [];
  const facts: ScopeFacts = {
    ...scope,
    window: { from: now, to: now },
    instances: [],
    activities: [],
    inventory: new Map(),
    commandTargets: new Map(),
    unresolvedCommands: new Map(),
    associationTargets: new Map(),
    documentAssociations: new Map(),
    endpointVpcs: new Map(),
    gaps,
  };
  const fail = (source: Gap['source'], operation: string, err: unknown): string => {
    const message = `${operation} failed: ${describeError(err)}`;
    log.warn({ source, operation, err: describeError(err) }, 'evidence could not be read');
    errors.push({ source: `${source}:${operation.replace(/\(.*$/, '')}`, ...scope, message });
    return message;
  };

  try {
    facts.instances = await listRunningInstances(clients.ec2, scope, opts.signal);
  } catch (err) {
    gaps.push({ source: 'ec2', ...scope, message: fail('ec2', 'DescribeInstances', err) });
    return { facts, errors, warnings, listed: false };
  }
  // Nothing to judge: nothing is read, and no coverage is claimed for a span nobody read.
  if (facts.instances.length === 0) return { facts, errors, warnings, listed: true };
  facts.window = evidenceWindow(
    facts.instances.map((i) => i.firstLaunch),
    opts.since,
    now,
  );
  await store.clampCoverage(scope, now);
  const settle = opts.sources.lookupEvents.settle;
  const ctx = { scope, store, instances: facts.instances, window: facts.window, now, settle, logger: log, signal: opts.signal };

  const reads: Array<Promise<PullResult>> = [
    ssmSessions.read({ ...ctx, clients }),
    ssmInventory.read({ ...ctx, clients }),
  ];
  if (lookupEvents.enabled(opts.sources.lookupEvents)) reads.push(lookupEvents.read({ ...ctx, clients }, opts.sources.lookupEvents));
  if (trailDigests.enabled(opts.sources.s3) && opts.s3) reads.push(trailDigests.read({ ...ctx, clients: { s3: opts.s3() } }, opts.sources.s3));
  const results = await Promise.all(reads);
  const read: Activity[] = [];
  for (const r of results) {
    // Loops, not push(...spread): a source can bring more activities than a call takes arguments.
    for (const a of r.activities) read.push(a);
    for (const g of r.gaps) gaps.push(g);
    for (const e of r.errors) errors.push(e);
    for (const w of r.warnings) warnings.push(w);
    if (r.inventory) facts.inventory = r.inventory;
  }
  await store.ingest(read, now);
  for (const r of results) for (const p of r.proven) await store.addCoverage(scope, p.kind, p.span);
  for (const r of results) for (const m of r.meta ?? []) await store.setMeta(m.key, m.value);
  facts.activities = await store.activities(scope, facts.window.from);

  await resolveReferences(clients, facts, store, { fail, signal: opts.signal });

  // What no source proved: the instances that lived through it are unknown.
  const required = { from: facts.window.from, to: now - settle };
  const checks: Array<[Gap['source'], readonly CoverageKind[]]> = [
    ['cloudtrail', CLOUDTRAIL_COVERAGE],
    ['ssm-sessions', ['ssm-sessions']],
  ];
  for (const [source, kinds] of checks) {
    // A failed read already says why, for every instance a hole could concern: one limited to the
    // instances launched before some time (an unreadable record's) says nothing of the younger ones.
    if (gaps.some((g) => g.source === source && !g.instanceIds && (g.before === undefined || g.before >= required.to))) continue;
    for (const hole of await missing(store, scope, kinds, required, results, settle)) {
      gaps.push({ source, ...scope, before: hole.to, message: `${source === 'cloudtrail' ? 'CloudTrail' : 'SSM session history'} is not proven complete for ${isoSpan(hole)}: no source read it in full` });
    }
  }
  return { facts, errors, warnings, listed: true };
}

/**
 * Commands sent by targets name no instance: ask SSM where each ran (one call per command, once: the
 * answer is written into the activity in the log, since SSM forgets after a while). Associations started
 * by id: their targets. Tunnels opened by address: the endpoints' VPCs.
 */
async function resolveReferences(
  clients: ScopeClients,
  facts: ScopeFacts,
  store: EvidenceStore,
  opts: { fail: (source: Gap['source'], operation: string, err: unknown) => string; signal?: AbortSignal },
): Promise<void> {
  const resolved: Activity[] = [];
  const commands = new Map<string, Activity[]>();
  for (const a of facts.activities) {
    if (a.eventName === 'SendCommand' && a.commandTargets?.commandId && a.instanceIds.length === 0) {
      commands.set(a.commandTargets.commandId, [...(commands.get(a.commandTargets.commandId) ?? []), a]);
    }
  }
  for (const [id, activities] of commands) {
    try {
      const { ids, final } = await readCommandInstances(clients.ssm, id, opts.signal);
      if (ids.length === 0) continue;
      facts.commandTargets.set(id, ids);
      // Written into the log only once SSM has sent it everywhere it will: until then, asked again each cycle.
      if (final) for (const a of activities) resolved.push({ ...a, instanceIds: ids });
    } catch (err) {
      facts.unresolvedCommands.set(id, opts.fail('ssm-commands', `ListCommandInvocations(${id})`, err));
    }
  }
  if (resolved.length) {
    await store.ingest(resolved);
    const byId = new Map(resolved.map((a) => [a.id, a]));
    facts.activities = facts.activities.map((a) => byId.get(a.id) ?? a);
  }

  const associations = new Set(facts.activities.flatMap((a) => a.associationIds ?? []));
  for (const id of associations) {
    try {
      facts.associationTargets.set(id, await readAssociationTargets(clients.ssm, id, opts.signal));
    } catch (err) {
      opts.fail('ssm-commands', `DescribeAssociation(${id})`, err);
    }
  }

  const documents = new Set(facts.activities.flatMap((a) => (a.documentUpdate && !a.associationIds ? [a.documentUpdate.name] : [])));
  for (const name of documents) {
    try {
      const running = await readDocumentAssociations(clients.ssm, name, opts.signal);
      facts.documentAssociations.set(name, running.map(({ associationId, documentVersion }) => ({ associationId, documentVersion })));
      for (const r of running) if (!facts.associationTargets.has(r.associationId)) facts.associationTargets.set(r.associationId, r.targets);
    } catch (err) {
      opts.fail('ssm-commands', `ListAssociations(${name})`, err);
    }
  }

  if (facts.activities.some((a) => a.refs?.endpointId)) {
    try {
      facts.endpointVpcs = await readEndpointVpcs(clients.ec2, opts.signal);
    } catch (err) {
      opts.fail('cloudtrail', 'DescribeInstanceConnectEndpoints', err);
    }
  }
}
