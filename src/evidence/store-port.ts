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
 * bookkeeping of trail files and digests. The SQLite StateStore implements it; a stateless audit uses
 * one in memory.
 */
export interface EvidenceStore {
  coverage(scope: Scope, kind: CoverageKind): Span[];
  addCoverage(scope: Scope, kind: CoverageKind, span: Span): void;
  /** Drops coverage past `max` (a clock that moved backwards). */
  clampCoverage(scope: Scope, max: number): void;
  /** Adds activities to the log; returns the ones it did not hold before (by id). */
  ingest(activities: readonly Activity[], now?: number): Activity[];
  activities(scope: Scope, from: number): Activity[];
  /** The activities of these ids that the log holds. */
  activitiesById(ids: readonly string[]): Activity[];
  trailFile(bucket: string, key: string): TrailFileRecord | null;
  recordTrailFile(file: TrailFileRecord): void;
  digest(bucket: string, key: string): DigestRecord | null;
  recordDigest(d: DigestRecord): void;
  meta(key: string): string | null;
  setMeta(key: string, value: string | null): void;
}
