import type { Activity, Scope } from '../core/facts.js';
import type { Span } from './coverage.js';
import type { CoverageKind } from './sources/types.js';

/** A trail log file pristine has read, and the SHA-256 of its uncompressed content. */
export interface TrailFileRecord {
  bucket: string;
  key: string;
  accountId: string;
  region: string;
  sha256: string;
  records: number;
  readAt: number;
}

/** A CloudTrail digest file and what checking it against the log files it lists found. */
export interface DigestRecord {
  bucket: string;
  key: string;
  accountId: string;
  region: string;
  from: number;
  to: number;
  status: 'verified' | 'mismatch' | 'incomplete';
  checkedAt: number;
}

/**
 * What the evidence sources need of the state store: the evidence log (keyed by CloudTrail eventID,
 * merged, never overwritten), the coverage each kind of source has proven per scope, and the
 * bookkeeping of trail files and digests. Both state backends implement it (src/state/ports.ts); a
 * stateless audit uses SQLite in memory.
 */
export interface EvidenceStore {
  coverage(scope: Scope, kind: CoverageKind): Promise<Span[]>;
  addCoverage(scope: Scope, kind: CoverageKind, span: Span): Promise<void>;
  /** Drops coverage past `max` (a clock that moved backwards). */
  clampCoverage(scope: Scope, max: number): Promise<void>;
  /** Adds activities to the log; returns the ones it did not hold before (by id). */
  ingest(activities: readonly Activity[], now?: number): Promise<Activity[]>;
  /**
   * The activities of a scope from `from` on, oldest first. A backend may hand back the same objects
   * cycle after cycle while the log is unchanged (what was worked out from them is then carried over).
   */
  activities(scope: Scope, from: number): Promise<Activity[]>;
  /** The activities of these ids that the log holds. */
  activitiesById(ids: readonly string[]): Promise<Activity[]>;
  trailFile(bucket: string, key: string): Promise<TrailFileRecord | null>;
  recordTrailFile(file: TrailFileRecord): Promise<void>;
  digest(bucket: string, key: string): Promise<DigestRecord | null>;
  recordDigest(d: DigestRecord): Promise<void>;
  meta(key: string): Promise<string | null>;
  setMeta(key: string, value: string | null): Promise<void>;
  /** Every meta entry whose key starts with `prefix`, by key. */
  metaWithPrefix(prefix: string): Promise<Map<string, string>>;
}
