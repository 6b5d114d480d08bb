import type { z } from 'zod';
import type { Activity, EvidenceSource, Instance, InventorySnapshot } from '../facts.js';
import type { Manifest } from '../../manifest/types.js';

export const DETECTOR_IDS = [
  'interactive-session',
  'remote-command',
  'instance-modified',
  'package-drift',
  'unrecorded-image',
  'guard-tampered',
] as const;
export type DetectorId = (typeof DETECTOR_IDS)[number];

export type Severity = 'critical' | 'high' | 'medium' | 'low';

/**
 * What a detector found. `effect: 'taint'` proves an in-place change; `effect: 'unknown'`
 * means pristine cannot vouch for the instance (e.g. its image was never recorded).
 */
export interface Finding {
  detector: DetectorId;
  /**
   * A stable identity, so the same evidence is never news twice: the event id, the session id for
   * every record of one SSM session, or the detector and kind for a condition (stale inventory).
   */
  key: string;
  severity: Severity;
  effect: 'taint' | 'unknown';
  summary: string;
  /** epoch ms, null when the evidence has no time */
  at: number | null;
  actor: string | null;
  evidence: Record<string, unknown>;
}

export interface InstanceContext {
  instance: Instance;
  /** activities on this instance after its launch, by principals the policy does not allow */
  activities: readonly Activity[];
  manifest: Manifest | null;
  inventory: InventorySnapshot | null;
  /** tags whose change after launch is tampering: `pristine:*` and the policy's exemption tags */
  isGuardTag: (key: string) => boolean;
  now: number;
}

export interface Detector<O = unknown> {
  id: DetectorId;
  description: string;
  severity: Severity;
  /** evidence it reads: a gap in any of them makes an instance it guards `unknown` */
  sources: readonly EvidenceSource[];
  /** zod schema of its options in a policy's `detect` block; `{}` must parse */
  options: z.ZodType<O>;
  /**
   * Whether an activity is one the detector could find something in. Its `evaluate` looks at these
   * only; an activity no enabled detector is concerned with is not kept for the instance at all.
   * A detector that reads no activity says `() => false`.
   */
  concerns(a: Activity, options: O): boolean;
  /**
   * Set when it finds nothing but in the instance's activities: an instance without any (most of a
   * fleet) is not looked at. The registry's test holds every detector that says so to it.
   */
  onlyInActivities?: true;
  evaluate(ctx: InstanceContext, options: O): Finding[];
  /**
   * A judge keeps an instance's findings from cycle to cycle while their facts stay the same. A
   * detector whose findings also depend on `ctx.now` says until when (epoch ms, inclusive) they stay
   * what they are at `ctx.now`; one without this must not read `now`.
   */
  stableUntil?(ctx: InstanceContext, options: O): number;
}

/** Helper so each detector module gets its options type inferred from its schema. */
export function defineDetector<S extends z.ZodType>(d: Detector<z.output<S>> & { options: S }): Detector<z.output<S>> {
  return d;
}
