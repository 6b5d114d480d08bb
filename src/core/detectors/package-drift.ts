import { z } from 'zod';
import type { Manifest } from '../../manifest/types.js';
import type { Package } from '../facts.js';
import { cachedAnyGlob } from '../glob.js';
import { normalizeVersion } from '../package-version.js';
import { Duration, Glob } from '../schema-types.js';
import { defineDetector, type Finding } from './types.js';

const Options = z.strictObject({
  /** package names (globs) whose changes do not taint, e.g. linux-image-* updated by unattended-upgrades */
  ignore: z.array(Glob).default([]),
  /** inventory older than this cannot vouch for the instance */
  maxInventoryAge: Duration.prefault('48h'),
});

const HOUR = 3_600_000;

export interface PackageDiff {
  added: Array<{ name: string; version: string }>;
  removed: Array<{ name: string; version: string }>;
  changed: Array<{ name: string; from: string; to: string }>;
}

type VersionsByName = Map<string, string[]>;

function index(packages: readonly Package[]): VersionsByName {
  const out: VersionsByName = new Map();
  for (let n = 0; n < packages.length; n++) {
    const p = packages[n] as Package;
    const list = out.get(p.name);
    if (list) list.push(p.version);
    else out.set(p.name, [p.version]);
  }
  out.forEach((list) => list.sort());
  return out;
}

/**
 * An image's recorded packages, normalised and indexed once (manifests are shared by many instances):
 * the versions of each name, and a mark per name that diffList sets on the names a list holds.
 */
interface Baseline {
  byName: Map<string, BaselineName>;
  /** the same, by `at` */
  names: BaselineName[];
  /** by a name's `at`: the turn of the last list that held it */
  marks: Uint32Array;
  turn: number;
}

/** The image's versions of a name (sorted), and the name's place: its mark's index. */
interface BaselineName {
  name: string;
  versions: string[];
  at: number;
}

const baselines = new WeakMap<Manifest, Baseline>();
function baselineOf(manifest: Manifest): Baseline {
  let b = baselines.get(manifest);
  if (!b) {
    const byName = new Map<string, BaselineName>();
    const names: BaselineName[] = [];
    index(manifest.packages.map((p) => ({ name: p.name, arch: p.arch, version: normalizeVersion(p.version) }))).forEach((versions, name) => {
      const entry = { name, versions, at: names.length };
      byName.set(name, entry);
      names.push(entry);
    });
    b = { byName, names, marks: new Uint32Array(names.length), turn: 0 };
    baselines.set(manifest, b);
  }
  return b;
}

function sameVersions(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** What differs between the image's recorded packages and the ones installed now (versions normalised). */
function diffPackages(baseline: Baseline, installed: VersionsByName, ignored: (name: string) => boolean): PackageDiff {
  const diff: PackageDiff = { added: [], removed: [], changed: [] };
  // Globs are tested only on the few names that differ: most packages match their baseline.
  for (const [name, now] of installed) {
    const then = baseline.byName.get(name)?.versions;
    if (then && sameVersions(then, now)) continue;
    if (ignored(name)) continue;
    if (!then) for (const version of now) diff.added.push({ name, version });
    else diff.changed.push({ name, from: then.join(', '), to: now.join(', ') });
  }
  return withRemoved(diff, baseline, (name) => installed.has(name), ignored);
}

/** The image's packages no longer installed, then every list in name order (an added name's versions in version order). */
function withRemoved(diff: PackageDiff, baseline: Baseline, installed: ((name: string, at: number) => boolean) | null, ignored: (name: string) => boolean): PackageDiff {
  if (installed) {
    const { names } = baseline;
    for (let at = 0; at < names.length; at++) {
      const { name, versions } = names[at] as BaselineName;
      if (installed(name, at) || ignored(name)) continue;
      for (let v = 0; v < versions.length; v++) diff.removed.push({ name, version: versions[v] as string });
    }
  }
  const byName = (x: { name: string }, y: { name: string }) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0);
  diff.added.sort((x, y) => byName(x, y) || (x.version < y.version ? -1 : x.version > y.version ? 1 : 0));
  diff.removed.sort(byName);
  diff.changed.sort(byName);
  return diff;
}

/**
 * diffPackages over a package list. Most lists hold each of the image's names once: they are compared
 * as they are, without indexing them (a mark per image name tells a name seen twice), and when every
 * name of the image is still there nothing is looked for as removed; a list with an image's name
 * twice (kernels) is indexed first. Same result either way.
 */
function diffList(baseline: Baseline, packages: readonly Package[], ignored: (name: string) => boolean): PackageDiff {
  const { byName, marks } = baseline;
  if (baseline.turn === 0xffffffff) {
    marks.fill(0);
    baseline.turn = 0;
  }
  const mark = ++baseline.turn;
  const diff: PackageDiff = { added: [], removed: [], changed: [] };
  let kept = 0; // the image's names still installed
  for (let n = 0; n < packages.length; n++) {
    const p = packages[n] as Package;
    const then = byName.get(p.name);
    if (then) {
      if (marks[then.at] === mark) return diffPackages(baseline, index(packages), ignored);
      marks[then.at] = mark;
      kept++;
      if (then.versions.length === 1 && then.versions[0] === p.version) continue;
    }
    if (ignored(p.name)) continue;
    if (!then) diff.added.push({ name: p.name, version: p.version });
    else diff.changed.push({ name: p.name, from: then.versions.join(', '), to: p.version });
  }
  return withRemoved(diff, baseline, kept === byName.size ? null : (_name, at) => marks[at] === mark, ignored);
}

function describeDiff(diff: PackageDiff, limit = 5): string {
  const parts: string[] = [];
  const list = <T>(items: T[], show: (x: T) => string) =>
    items.slice(0, limit).map(show).join(', ') + (items.length > limit ? `, +${items.length - limit} more` : '');
  if (diff.added.length) parts.push(`added ${list(diff.added, (p) => `${p.name} ${p.version}`)}`);
  if (diff.removed.length) parts.push(`removed ${list(diff.removed, (p) => `${p.name} ${p.version}`)}`);
  if (diff.changed.length) parts.push(`changed ${list(diff.changed, (p) => `${p.name} ${p.from} -> ${p.to}`)}`);
  return parts.join('; ');
}

/** A drift as every instance with this inventory, image and ignore list shares it; null when there is none. */
interface Drift {
  count: number;
  summary: string;
  evidence: Record<string, unknown>;
}

/** A diff kept: its drift, and whether it was asked for again since it was (re)placed last in its map. */
interface KeptDrift {
  drift: Drift | null;
  seenAgain: boolean;
}

/**
 * Each distinct (manifest, ignore globs, inventory fingerprint) is diffed once, and its finding's
 * summary and evidence are shared by every instance that has it: in this cycle and the next ones, as
 * long as the manifest and the policy stay loaded. Beyond DRIFTS_KEPT per (manifest, ignore list), the
 * fingerprints least recently seen are forgotten: a daemon whose inventories keep changing does not
 * keep every diff it ever made. (A second chance, as a clock does: a diff asked for again is marked,
 * not moved, and the marked ones move last when one has to go; every instance of a fleet asks.)
 */
const drifts = new WeakMap<Manifest, WeakMap<readonly string[], Map<string, KeptDrift>>>();
export const DRIFTS_KEPT = 10_000;
function driftOf(manifest: Manifest, ignore: readonly string[], fingerprint: string, packages: readonly Package[]): Drift | null {
  let byIgnore = drifts.get(manifest);
  if (!byIgnore) {
    byIgnore = new WeakMap();
    drifts.set(manifest, byIgnore);
  }
  let byFingerprint = byIgnore.get(ignore);
  if (!byFingerprint) {
    byFingerprint = new Map();
    byIgnore.set(ignore, byFingerprint);
  }
  const known = byFingerprint.get(fingerprint);
  if (known !== undefined) {
    known.seenAgain = true;
    return known.drift;
  }
  const diff = diffList(baselineOf(manifest), packages, cachedAnyGlob(ignore));
  const count = diff.added.length + diff.removed.length + diff.changed.length;
  const drift =
    count === 0
      ? null
      : {
          count,
          summary: `${count} package${count === 1 ? '' : 's'} differ from image ${manifest.imageId}: ${describeDiff(diff)}`,
          evidence: { imageId: manifest.imageId, manifest: manifest.file, ...diff },
        };
  if (byFingerprint.size >= DRIFTS_KEPT) forgetOne(byFingerprint);
  byFingerprint.set(fingerprint, { drift, seenAgain: false });
  return drift;
}

/** Forgets the first diff (in insertion order) not asked for again; the ones that were move last, unmarked. */
function forgetOne(byFingerprint: Map<string, KeptDrift>): void {
  for (const [fingerprint, kept] of byFingerprint) {
    byFingerprint.delete(fingerprint);
    if (!kept.seenAgain) return;
    kept.seenAgain = false;
    byFingerprint.set(fingerprint, kept);
  }
}

export const packageDrift = defineDetector({
  id: 'package-drift',
  description: "Installed packages (SSM Inventory) differ from the ones recorded when the image was baked.",
  severity: 'high',
  sources: ['ssm-inventory', 'manifest'],
  options: Options,
  concerns: () => false,
  evaluate(ctx, options) {
    // No manifest: unrecorded-image already says the instance cannot be vouched for.
    if (!ctx.manifest) return [];
    const { instance, inventory } = ctx;
    if (!inventory) {
      return [
        {
          detector: 'package-drift',
          key: 'package-drift:no-inventory',
          severity: 'medium',
          effect: 'unknown',
          summary: 'no SSM Inventory (AWS:Application) for this instance: its packages could not be compared',
          at: null,
          actor: null,
          evidence: { instanceId: instance.instanceId },
        },
      ];
    }
    const findings: Finding[] = [];
    const drift = driftOf(ctx.manifest, options.ignore, inventory.fingerprint, inventory.packages);
    if (drift) {
      findings.push({
        detector: 'package-drift',
        key: 'package-drift:drift',
        severity: 'high',
        effect: 'taint',
        summary: drift.summary,
        at: inventory.captureTime,
        actor: null,
        evidence: drift.evidence,
      });
    }
    const age = inventory.captureTime === null ? null : ctx.now - inventory.captureTime;
    if (age === null || age > options.maxInventoryAge) {
      findings.push({
        detector: 'package-drift',
        key: 'package-drift:stale-inventory',
        severity: 'medium',
        effect: 'unknown',
        summary:
          age === null
            ? 'SSM Inventory has no capture time: how current it is cannot be told'
            : `SSM Inventory is ${Math.round(age / HOUR)}h old (limit ${Math.round(options.maxInventoryAge / HOUR)}h): later changes would not show`,
        at: inventory.captureTime,
        actor: null,
        evidence: { captureTime: inventory.captureTime === null ? null : new Date(inventory.captureTime).toISOString() },
      });
    }
    return findings;
  },
  stableUntil(ctx, options) {
    const captureTime = ctx.manifest ? (ctx.inventory?.captureTime ?? null) : null;
    if (captureTime === null) return Infinity;
    const age = ctx.now - captureTime;
    if (age <= options.maxInventoryAge) return captureTime + options.maxInventoryAge;
    // Stale: the summary says the age in hours, rounded; it changes at the next half hour.
    return captureTime + (Math.round(age / HOUR) + 0.5) * HOUR - 1;
  },
});
