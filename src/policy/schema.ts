import { z } from 'zod';
import { DETECTORS } from '../core/detectors/registry.js';
import { DETECTOR_IDS, type DetectorId } from '../core/detectors/types.js';
import { Duration, Glob, Region, Share, Window } from '../core/schema-types.js';

/** Instance tags that must all match; values are globs (`"*"` = the tag is present). */
const TagMatch = z.record(z.string().min(1, 'tag key must not be empty'), Glob);


// `interactive-session:` with no value in YAML is null: the detector is on with its defaults.
const detectorOptions = (id: DetectorId) => z.preprocess((v) => (v === null ? {} : v), DETECTORS[id].options).optional();

const Detect = z
  .strictObject(
    Object.fromEntries(DETECTOR_IDS.map((id) => [id, detectorOptions(id)])) as Record<DetectorId, ReturnType<typeof detectorOptions>>,
    {
      error: (issue) =>
        issue.code === 'unrecognized_keys'
          ? `unknown detector ${issue.keys.map((k) => `"${k}"`).join(', ')} (known: ${DETECTOR_IDS.join(', ')})`
          : undefined,
    },
  )
  .refine((d) => Object.values(d).some((v) => v !== undefined), 'turn on at least one detector');

const Replace = z.strictObject({
  /** at most this many replacements started per cycle (per policy) */
  maxPerCycle: z.number().int().min(0).default(1),
  /** at most this many replacements in flight at once (per policy) */
  maxConcurrent: z.number().int().min(1).default(5),
  /** never more than this share of a target group or Auto Scaling group being replaced at once */
  maxUnavailable: Share.prefault('25%'),
  /** leave instances younger than this alone: they may still be bootstrapping */
  minAge: Duration.prefault('10m'),
  /** how long a fresh instance may take to pass its checks before the replacement is rolled back */
  healthTimeout: Duration.prefault('10m'),
  /** when replacements may start; outside them pristine alerts and holds */
  windows: z.array(Window).min(1).optional(),
  /** an instance holding an Elastic IP: move the address to the fresh instance once healthy (default: hold it) */
  moveElasticIp: z.boolean().default(false),
});

const Respond = z.strictObject({
  /** observe: alert only; enforce: alert and replace */
  mode: z.enum(['observe', 'enforce']).default('observe'),
  notify: z.strictObject({ slack: z.strictObject({ channel: z.string().min(1) }).optional() }).optional(),
  replace: Replace.prefault({}),
  /** more of the policy's in-scope instances tainted than this: replace nothing, alert loudly */
  breaker: z.strictObject({ taintedShare: Share.prefault('50%') }).prefault({}),
});

export const Policy = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'expected letters, digits, ".", "_" or "-"'),
  description: z.string().optional(),
  scope: z
    .strictObject({
      /** default: the config file's `regions`, else the SDK's region (resolved when loaded) */
      regions: z.array(Region).min(1).optional(),
      /** account ids or globs over them; default: every audited account */
      accounts: z.array(Glob.refine((g) => /^[\d*?[\]-]+$/.test(g), 'expected an account id or a glob over account ids, e.g. "1111222233*"')).min(1).optional(),
      tags: TagMatch.default({}),
      exclude: z.strictObject({ tags: TagMatch }).optional(),
    })
    .default({ tags: {} }),
  allow: z
    .strictObject({
      /** globs over the caller's ARNs (session ARN and the IAM role or user behind it) */
      principals: z.array(Glob).default([]),
    })
    .default({ principals: [] }),
  detect: Detect,
  respond: Respond.prefault({}),
});
export type Policy = z.output<typeof Policy>;

export const PolicyFile = z.strictObject({
  policies: z.array(Policy).min(1, 'expected at least one policy'),
});
export type PolicyFile = z.output<typeof PolicyFile>;

/** A policy as loaded, with the file it came from. */
export type LoadedPolicy = Policy & { file: string };
