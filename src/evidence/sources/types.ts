import type { z } from 'zod';
import type { Activity, Gap, Instance, InventorySnapshot, Scope } from '../../core/facts.js';
import type { Logger } from '../../logger.js';
import type { Span } from '../coverage.js';

/** What a source can prove absent for a span of time: a kind of coverage, kept apart per kind. */
export type CoverageKind = 'lookup-events' | 's3-digest' | 'ssm-sessions';

/** Coverage kinds that can vouch for CloudTrail: an instance is `pristine` only where one of them covers. */
export const CLOUDTRAIL_COVERAGE: readonly CoverageKind[] = ['lookup-events', 's3-digest'];

/** Something skipped or suspicious that did not stop the audit (shown in the report's `warnings`). */
export interface SourceWarning {
  source: string;
  accountId?: string;
  region?: string;
  message: string;
}

/** A read that failed: shown in the report's `errors`; the gap it leaves is among the gaps. */
export interface SourceError {
  source: string;
  accountId?: string;
  region?: string;
  message: string;
}

export interface PullResult {
  /** evidence for the log: merged with what it already holds, never overwriting it */
  activities: Activity[];
  inventory?: Map<string, InventorySnapshot>;
  gaps: Gap[];
  errors: SourceError[];
  warnings: SourceWarning[];
  /** spans this read proved complete (nothing tracked happened there that is not in `activities`): stored */
  proven: Array<{ kind: CoverageKind; span: Span }>;
  /**
   * spans read in full this cycle, but for what `gaps` says: they count for this cycle's verdicts even
   * where they are not stored as proven (a record that could not be read keeps the stored coverage
   * before it, so that the next cycle reads it again; its own gap already covers what it may hide)
   */
  read?: Array<{ kind: CoverageKind; span: Span }>;
  /** meta the source keeps (a reconcile's time), written only once its activities and coverage are stored */
  meta?: Array<{ key: string; value: string }>;
}

/** What a pull source is given for one scope. The clients and the store are the adapters it may use. */
export interface PullContext<Clients, Store> {
  scope: Scope;
  clients: Clients;
  store: Store;
  /** running instances in the scope, as just listed */
  instances: readonly Instance[];
  /** the evidence window, epoch ms */
  window: Span;
  now: number;
  /** how long CloudTrail and SSM may take to show what happened: nothing newer than `now - settle` is proven */
  settle: number;
  logger: Logger;
  signal?: AbortSignal;
}

/**
 * One way evidence reaches pristine. A source is a folder under `src/evidence/sources/`: its id, the
 * key of its options under `sources:` in pristine.yaml with their schema, the IAM actions it calls, and
 * `read` (pull: pristine asks, per scope and cycle) or `consume` (push: AWS delivers to a queue).
 */
export interface SourceDefinition<C> {
  id: string;
  configKey: string;
  /** zod schema of its options; an absent key parses to the defaults */
  config: z.ZodType<C>;
  /** one sentence for the docs: what it can prove and what it cannot */
  proves: string;
  iam: {
    /** calls made in each audited account (pristine's own, or the member role it assumes) */
    member: readonly string[];
    /** calls made with pristine's own identity only (queues, the trail bucket) */
    pristine?: readonly string[];
  };
  enabled(config: C): boolean;
}
