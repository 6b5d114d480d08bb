import type { Scope } from '../core/facts.js';
import type { EvidenceStore } from '../evidence/store-port.js';
import type { Notice } from '../notify/types.js';

/**
 * What pristine keeps between cycles, as async ports. Two backends implement them and pass one
 * conformance suite (test/conformance): SQLite (`src/state/sqlite/`, one file, the default) and
 * PostgreSQL (`src/state/postgres/`, shared by several replicas). Callers never see SQL.
 *
 * A transaction is `store.transaction(async () => { ... })`: every call on the same store made
 * inside it, however deep, joins it (the backends track it with AsyncLocalStorage), and a
 * transaction begun inside another joins the outer one.
 */

/** Who holds a lease, and the token that proves it still does. */
export interface Fence {
  owner: string;
  token: number;
}

/** Another holder took the lease: this one must stop writing under it. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
}

/** The store could not be opened or used: the daemon reports itself unhealthy. */
export class StoreError extends Error {
  override name = 'StoreError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export type ReplacementStatus = 'in-progress' | 'done' | 'rolled-back' | 'failed';

export interface ReplacementRow<D = Record<string, unknown>> {
  id: number;
  /** the replacement's identity on AWS: its fresh instance's `pristine:replacement` tag and ClientToken */
  uuid: string;
  /** when the worker takes its next step or poll (epoch ms) */
  nextPollAt: number | null;
  /** what it waits for, for `pristine status` */
  waitingFor: string | null;
  /** the process driving it, until `leaseExpiresAt` */
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  /** raised each time another owner takes the lease: every journal write checks it */
  leaseToken: number;
  oldInstanceId: string;
  /** null only for a replacement an older pristine started, until the first cycle adopts it */
  accountId: string | null;
  region: string;
  policy: string;
  imageId: string;
  status: ReplacementStatus;
  step: string;
  newInstanceId: string | null;
  data: D;
  alertOutboxId: number | null;
  startedAt: number;
  updatedAt: number;
  finishedAt: number | null;
  error: string | null;
}

export interface NewReplacement {
  oldInstanceId: string;
  accountId: string;
  region: string;
  policy: string;
  imageId: string;
  step: string;
  data: Record<string, unknown>;
  alertOutboxId: number | null;
}

export interface JournalPatch {
  data?: Record<string, unknown>;
  newInstanceId?: string | null;
  status?: ReplacementStatus;
  error?: string | null;
  detail?: Record<string, unknown>;
}

export interface OutboxRow {
  id: number;
  channel: string;
  parentId: number | null;
  /** null when the stored notice cannot be read (then `unreadable` says why) */
  notice: Notice | null;
  unreadable?: string;
  createdAt: number;
  attempts: number;
  lastError: string | null;
}

export interface JournalRow {
  id: number;
  replacementId: number;
  step: string;
  phase: 'begin' | 'end' | 'fail';
  at: number;
  detail: Record<string, unknown> | null;
}

export interface FindingInput {
  key: string;
  detector: string;
  severity: string;
  summary: string;
  at: number | null;
  actor: string | null;
}

export interface VerdictInput {
  instanceId: string;
  accountId: string;
  region: string;
  policy: string;
  name: string | null;
  verdict: string;
  findings: FindingInput[];
}

export interface InstanceRow {
  instanceId: string;
  /** null only for a row an older pristine wrote, until the first cycle adopts it */
  accountId: string | null;
  region: string;
  policy: string;
  name: string | null;
  verdict: string;
  firstSeen: number;
  lastSeen: number;
  taintedSince: number | null;
  alertOutboxId: number | null;
}

export type OpenFinding = InstanceRow & { findings: Array<FindingInput & { firstSeen: number; lastSeen: number }> };

export interface CycleRow {
  id: number;
  startedAt: number;
  finishedAt: number | null;
  outcome: string | null;
  exitCode: number | null;
  summary: Record<string, unknown> | null;
}

/** A named lease (a scope's audit, the outbox, an event queue): who holds it, until when. */
export interface LeaseRow {
  name: string;
  owner: string;
  token: number;
  expiresAt: number;
}

/** The evidence log, coverage and trail bookkeeping: see EvidenceStore. */
export type EvidencePort = EvidenceStore;

export interface VerdictsPort {
  /**
   * Records verdicts, and that the `audited` scopes were audited in full at `now` (a cycle's scopes; none
   * for events pushed between cycles). Returns the instances whose taint is new (not alerted before),
   * and per already-alerted instance the findings not seen before.
   */
  recordVerdicts(now: number, verdicts: readonly VerdictInput[], audited?: readonly Scope[]): Promise<{ newlyTainted: string[]; newFindings: Map<string, string[]> }>;
  instance(instanceId: string): Promise<InstanceRow | null>;
  /**
   * Records that the instance's taint was alerted by this outbox message, only when no alert was
   * recorded before: false when one was (another replica alerted it first; its message stands).
   */
  setAlert(instanceId: string, outboxId: number): Promise<boolean>;
  /** Tainted instances seen in the last audit of their scope (whichever replica audited it) and not replaced. */
  openFindings(): Promise<OpenFinding[]>;
  /** Rows written before pristine knew accounts (schema 1) are adopted into this account. */
  adoptLegacyRows(accountId: string): Promise<number>;
  hasLegacyRows(): Promise<boolean>;
}

export interface OutboxPort {
  enqueue(channel: string, notice: Notice, parentId?: number | null, now?: number): Promise<number>;
  /** Messages not yet sent, oldest first. */
  pending(): Promise<OutboxRow[]>;
  /** The Slack ts of a sent message; null while it waits in the outbox. */
  sentTs(outboxId: number): Promise<string | null>;
  markSent(id: number, ts: string | null, now?: number): Promise<void>;
  markFailed(id: number, error: string): Promise<void>;
  /** A message Slack will never take: kept for the record, not retried. */
  markDropped(id: number, error: string, now?: number): Promise<void>;
  outboxStats(): Promise<{ pending: number; sent: number; dropped: number }>;
}

export interface ReplacementsPort {
  /** Starts a replacement; null when one that was not rolled back already exists for the instance. */
  createReplacement(r: NewReplacement, now?: number): Promise<ReplacementRow | null>;
  replacement(id: number): Promise<ReplacementRow | null>;
  /** The latest replacement of an instance, whatever its status. */
  replacementOf(oldInstanceId: string): Promise<ReplacementRow | null>;
  inFlight(): Promise<ReplacementRow[]>;
  recentReplacements(limit?: number): Promise<ReplacementRow[]>;
  /** Journals a step's phase and moves the replacement to it, in one transaction, under the fence when given. */
  journal(replacementId: number, step: string, phase: JournalRow['phase'], patch?: JournalPatch, now?: number, fence?: Fence): Promise<ReplacementRow>;
  journalOf(replacementId: number): Promise<JournalRow[]>;
  lastJournal(replacementId: number): Promise<JournalRow | null>;
  /**
   * Takes the lease on a replacement in flight, or renews it: when nobody holds it, it expired, this
   * owner holds it, or `takeOverFrom` (a driver known dead) holds it. The token rises whenever the
   * owner changes. Null when a live driver holds it. Expiry is the store's clock's to decide.
   */
  claimReplacement(id: number, owner: string, ttlMs: number, takeOverFrom?: string | null): Promise<Fence | null>;
  releaseLease(id: number, owner: string): Promise<void>;
  /** Extends every replacement lease this owner holds. */
  renewLeases(owner: string, ttlMs: number): Promise<void>;
  /** Lets go of every replacement lease this owner holds (a clean stop). */
  releaseLeases(owner: string): Promise<number>;
  /**
   * When to take the next step or poll (epoch ms; a fraction is rounded up to the next whole ms, never
   * earlier), what it waits for, and the data a poll changed; under the lease.
   */
  schedule(id: number, nextPollAt: number, waitingFor: string | null, fence: Fence, data?: Record<string, unknown>): Promise<void>;
}

export interface CyclesPort {
  startCycle(now?: number): Promise<number>;
  finishCycle(id: number, outcome: string, exitCode: number, summary: Record<string, unknown>, now?: number): Promise<void>;
  recentCycles(limit?: number): Promise<CycleRow[]>;
  lastFinishedCycle(): Promise<{ finishedAt: number; outcome: string } | null>;
}

/**
 * Named leases: each (account, region) audit, the outbox, an event queue's consumer. Expiry is
 * decided by the store's clock (the database server's for PostgreSQL), never by comparing the
 * clocks of two machines.
 */
export interface LeasesPort {
  /**
   * Takes or renews the lease for `ttlMs`: null when another owner holds it unexpired, unless that owner
   * is `takeOverFrom` (a process known dead).
   */
  claim(name: string, owner: string, ttlMs: number, takeOverFrom?: string | null): Promise<Fence | null>;
  /** Extends every lease this owner holds; returns the names it still holds. */
  renew(owner: string, ttlMs: number): Promise<string[]>;
  /**
   * Throws LeaseLostError unless the fence still holds the lease. Inside a transaction, the lease stays
   * the fence's until the transaction ends: the writes it fences are the holder's or none.
   */
  check(name: string, fence: Fence): Promise<void>;
  release(name: string, owner: string): Promise<void>;
  /** Lets go of every lease this owner holds (a clean stop): another replica may take them at once. */
  releaseAll(owner: string): Promise<number>;
  held(owner: string): Promise<LeaseRow[]>;
  /** Every lease whose name starts with `prefix`, held or not, and whether it is live now (by the store's clock). */
  list(prefix: string): Promise<LeaseState[]>;
}

/** A lease as it stands: its last owner (null once let go) and whether it is unexpired. */
export interface LeaseState {
  name: string;
  owner: string | null;
  token: number;
  live: boolean;
}

export interface StateStore extends EvidencePort, VerdictsPort, OutboxPort, ReplacementsPort, CyclesPort {
  /** `sqlite` or `postgres`, for logs and /healthz */
  readonly kind: 'sqlite' | 'postgres';
  /** where it is, without secrets: a file path, or postgres://host:port/db */
  readonly location: string;
  readonly leases: LeasesPort;
  /** Runs fn in one transaction: every call on this store inside it joins it. */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  /** Throws a StoreError when the store can no longer be read and written. */
  check(): Promise<void>;
  pruneActivities(before: number): Promise<number>;
  close(): Promise<void>;
}

