import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AwsCall } from '../collect/clients.js';

export type CycleOutcome = 'ok' | 'tainted' | 'incomplete' | 'failed';
export type ReplacementOutcome = 'started' | 'done' | 'rolled-back' | 'failed' | 'held';
export type SlackOutcome = 'sent' | 'failed' | 'dropped' | 'undeliverable';
export type VerdictCounts = { pristine: number; tainted: number; unknown: number };

const CYCLE_OUTCOMES: readonly CycleOutcome[] = ['ok', 'tainted', 'incomplete', 'failed'];
const REPLACEMENT_OUTCOMES: readonly ReplacementOutcome[] = ['started', 'done', 'rolled-back', 'failed', 'held'];
const SLACK_OUTCOMES: readonly SlackOutcome[] = ['sent', 'failed', 'dropped', 'undeliverable'];
const VERDICTS: readonly (keyof VerdictCounts)[] = ['pristine', 'tainted', 'unknown'];

/** An audit cycle lasts from seconds (a small fleet) to tens of minutes (a large one, CloudTrail-paced). */
export const LEASE_KINDS = ['audit', 'replica', 'outbox', 'replacement'] as const;
export const CYCLE_DURATION_BUCKETS = [5, 10, 20, 30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800];

export interface Metrics {
  registry: Registry;
  cycles: Counter<'outcome'>;
  cycleDuration: Histogram;
  lastCycle: Gauge;
  instances: Gauge<'verdict'>;
  findings: Gauge<'detector'>;
  replacements: Counter<'outcome'>;
  awsCalls: Counter<'service' | 'operation' | 'outcome'>;
  slack: Counter<'outcome'>;
  /** replacements in flight, by step */
  replacementsInFlight: Gauge<'step'>;
  /** Sets one series per step; a step seen before but empty now goes to 0. */
  setInFlight(steps: readonly string[]): void;
  /** messages received from the event queues, by outcome (ingested, failed) */
  queueMessages: Counter<'outcome'>;
  /** CloudTrail events the queues brought that the evidence log did not hold */
  pushedEvents: Counter;
  /** leases this replica holds, by kind (audit, replica, outbox, replacement) */
  leasesHeld: Gauge<'kind'>;
  /** leases taken over from a replica whose lease expired (it died or hung), by kind */
  leaseTakeovers: Counter<'kind'>;
  /** Sets one series per kind of lease from the names held (`audit:…`, `replica:…`), plus replacements. */
  setLeasesHeld(names: readonly string[], replacements: number): void;
  /** Sets all three verdict series at once (one cycle's counts). */
  setVerdicts(counts: VerdictCounts): void;
  /** Sets one series per detector; a detector seen in an earlier cycle but absent now goes to 0. */
  setFindings(countsByDetector: Record<string, number>): void;
  /** An AwsCallListener (src/collect/clients.ts); bound, so it can be passed as is. */
  onAwsCall(call: Pick<AwsCall, 'service' | 'operation' | 'outcome'>): void;
}

/**
 * pristine's metrics on a registry of their own (never prom-client's global one), so a process or a
 * test can create as many as it likes. Label values of the counters are initialised to 0, so every
 * outcome has a series from the first scrape and `rate()`/`increase()` see the first event.
 */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'pristine_' });

  const cycles = new Counter({
    name: 'pristine_cycles_total',
    help: 'Audit cycles finished, by outcome (ok, tainted, incomplete, failed).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const cycleDuration = new Histogram({
    name: 'pristine_cycle_duration_seconds',
    help: 'Wall-clock duration of an audit cycle.',
    buckets: CYCLE_DURATION_BUCKETS,
    registers: [registry],
  });
  const lastCycle = new Gauge({
    name: 'pristine_last_cycle_timestamp_seconds',
    help: 'Unix time at which the last audit cycle finished.',
    registers: [registry],
  });
  const instances = new Gauge({
    name: 'pristine_instances',
    help: 'In-scope instances by verdict in the last cycle.',
    labelNames: ['verdict'] as const,
    registers: [registry],
  });
  const findings = new Gauge({
    name: 'pristine_findings',
    help: 'Findings in the last cycle, by detector.',
    labelNames: ['detector'] as const,
    registers: [registry],
  });
  const replacements = new Counter({
    name: 'pristine_replacements_total',
    help: 'Instance replacements, by outcome (started, done, rolled-back, failed, held).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const awsCalls = new Counter({
    name: 'pristine_aws_calls_total',
    help: 'AWS API calls (each SDK call once, retries included), by service, operation and outcome.',
    labelNames: ['service', 'operation', 'outcome'] as const,
    registers: [registry],
  });
  const slack = new Counter({
    name: 'pristine_slack_messages_total',
    help: 'Slack messages, by outcome (sent, failed, dropped).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });

  const queueMessages = new Counter({
    name: 'pristine_queue_messages_total',
    help: 'Messages received from the event queues, by outcome (ingested, failed).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const pushedEvents = new Counter({
    name: 'pristine_pushed_events_total',
    help: 'CloudTrail events the event queues brought that the evidence log did not hold yet.',
    registers: [registry],
  });
  for (const outcome of ['ingested', 'failed']) queueMessages.inc({ outcome }, 0);
  const replacementsInFlight = new Gauge({
    name: 'pristine_replacements_in_flight',
    help: 'Replacements in flight, by step.',
    labelNames: ['step'] as const,
    registers: [registry],
  });
  const seenSteps = new Set<string>();
  const leasesHeld = new Gauge({
    name: 'pristine_leases_held',
    help: 'Leases this replica holds, by kind: audit (an account and region), replica (itself), outbox, replacement.',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  const leaseTakeovers = new Counter({
    name: 'pristine_lease_takeovers_total',
    help: 'Leases taken over from a replica whose lease expired (it died or hung), by kind.',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  for (const kind of LEASE_KINDS) {
    leasesHeld.set({ kind }, 0);
    leaseTakeovers.inc({ kind }, 0);
  }

  for (const outcome of CYCLE_OUTCOMES) cycles.inc({ outcome }, 0);
  for (const outcome of REPLACEMENT_OUTCOMES) replacements.inc({ outcome }, 0);
  for (const outcome of SLACK_OUTCOMES) slack.inc({ outcome }, 0);
  for (const verdict of VERDICTS) instances.set({ verdict }, 0);

  const seenDetectors = new Set<string>();

  return {
    registry,
    cycles,
    cycleDuration,
    lastCycle,
    instances,
    findings,
    replacements,
    awsCalls,
    slack,
    queueMessages,
    pushedEvents,
    replacementsInFlight,
    leasesHeld,
    leaseTakeovers,
    setLeasesHeld(names: readonly string[], replacements: number): void {
      const counts = new Map<string, number>(LEASE_KINDS.map((k) => [k, 0]));
      for (const n of names) {
        const kind = n.slice(0, n.indexOf(':') > 0 ? n.indexOf(':') : n.length);
        if (counts.has(kind)) counts.set(kind, (counts.get(kind) ?? 0) + 1);
      }
      counts.set('replacement', replacements);
      for (const [kind, n] of counts) leasesHeld.set({ kind }, n);
    },
    setInFlight(steps: readonly string[]): void {
      const counts = new Map<string, number>();
      for (const s of steps) counts.set(s, (counts.get(s) ?? 0) + 1);
      for (const s of seenSteps) if (!counts.has(s)) replacementsInFlight.set({ step: s }, 0);
      for (const [s, n] of counts) {
        seenSteps.add(s);
        replacementsInFlight.set({ step: s }, n);
      }
    },
    setVerdicts(counts: VerdictCounts): void {
      for (const verdict of VERDICTS) instances.set({ verdict }, counts[verdict]);
    },
    setFindings(countsByDetector: Record<string, number>): void {
      for (const [detector, count] of Object.entries(countsByDetector)) {
        seenDetectors.add(detector);
        findings.set({ detector }, count);
      }
      for (const detector of seenDetectors) {
        if (!Object.hasOwn(countsByDetector, detector)) findings.set({ detector }, 0);
      }
    },
    onAwsCall: (call) => {
      awsCalls.inc({ service: call.service, operation: call.operation, outcome: call.outcome });
    },
  };
}
