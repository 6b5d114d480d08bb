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

function index(packages: Iterable<Package>): VersionsByName {
  const out: VersionsByName = new Map();
  for (const p of packages) {
    const list = out.get(p.name);
    if (list) list.push(p.version);
    else out.set(p.name, [p.version]);
  }
  for (const list of out.values()) list.sort();
  return out;
}

// Manifests are shared by many instances: normalise and index each once. (An inventory is indexed only
// to be diffed, once per fingerprint: its index is not kept.)
const baselines = new WeakMap<Manifest, VersionsByName>();
function baselineOf(manifest: Manifest): VersionsByName {
  let b = baselines.get(manifest);
  if (!b) {
    b = index(manifest.packages.map((p) => ({ name: p.name, arch: p.arch, version: normalizeVersion(p.version) })));
    baselines.set(manifest, b);
  }
  return b;
}

function sameVersions(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** What differs between the image's recorded packages and the ones installed now (versions normalised). */
export function diffPackages(baseline: VersionsByName, installed: VersionsByName, ignored: (name: string) => boolean): PackageDiff {
  const diff: PackageDiff = { added: [], removed: [], changed: [] };
  // Globs are tested only on the few names that differ: most packages match their baseline.
  for (const [name, now] of installed) {
    const then = baseline.get(name);
    if (then && sameVersions(then, now)) continue;
    if (ignored(name)) continue;
    if (!then) for (const version of now) diff.added.push({ name, version });
    else diff.changed.push({ name, from: then.join(', '), to: now.join(', ') });
  }
  return withRemoved(diff, baseline, (name) => installed.has(name), ignored);
}

/** The image's packages no longer installed, then every list in name order. */
function withRemoved(diff: PackageDiff, baseline: VersionsByName, installed: ((name: string) => boolean) | null, ignored: (name: string) => boolean): PackageDiff {
  if (installed) {
    for (const [name, then] of baseline) {
      if (installed(name) || ignored(name)) continue;
      for (const version of then) diff.removed.push({ name, version });
    }
  }
  const byName = (x: { name: string }, y: { name: string }) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0);
  diff.added.sort(byName);
  diff.removed.sort(byName);
  diff.changed.sort(byName);
  return diff;
}

/**
 * The names of the list diffList looks at, marked with its turn: a name is in that list when its mark
 * is the turn's. One map for every list (the fleet's package names), so no set is built per list;
 * started again past NAMES_KEPT names (a fleet whose package names keep changing).
 */
const namesSeen = new Map<string, number>();
export const NAMES_KEPT = 200_000;
let turn = 0;

/**
 * diffPackages over a package list. Most lists hold each name once: they are compared as they are,
 * without indexing them, and when every name of the image is still there nothing is looked for as
 * removed; a list with a name twice (kernels) is indexed first. Same result either way.
 */
function diffList(baseline: VersionsByName, packages: readonly Package[], ignored: (name: string) => boolean): PackageDiff {
  if (namesSeen.size > NAMES_KEPT) namesSeen.clear();
  const mark = ++turn;
  for (const p of packages) {
    if (namesSeen.get(p.name) === mark) return diffPackages(baseline, index(packages), ignored);
    namesSeen.set(p.name, mark);
  }
  const diff: PackageDiff = { added: [], removed: [], changed: [] };
  let kept = 0; // installed names the image has too
  for (const p of packages) {
    const then = baseline.get(p.name);
    if (then) kept++;
    if (then && then.length === 1 && then[0] === p.version) continue;
    if (ignored(p.name)) continue;
    if (!then) diff.added.push({ name: p.name, version: p.version });
    else diff.changed.push({ name: p.name, from: then.join(', '), to: p.version });
  }
  return withRemoved(diff, baseline, kept === baseline.size ? null : (name) => namesSeen.get(name) === mark, ignored);
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

/**
 * Each distinct (manifest, ignore globs, inventory fingerprint) is diffed once, and its finding's
 * summary and evidence are shared by every instance that has it: in this cycle and the next ones, as
 * long as the manifest and the policy stay loaded. The fingerprints least recently seen are forgotten
 * beyond DRIFTS_KEPT per (manifest, ignore list): a daemon whose inventories keep changing does not
 * keep every diff it ever made.
 */
const drifts = new WeakMap<Manifest, WeakMap<readonly string[], Map<string, Drift | null>>>();
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
    // Seen again: now the most recent (a Map iterates in insertion order).
    byFingerprint.delete(fingerprint);
    byFingerprint.set(fingerprint, known);
    return known;
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
  byFingerprint.set(fingerprint, drift);
  if (byFingerprint.size > DRIFTS_KEPT) byFingerprint.delete(byFingerprint.keys().next().value as string);
  return drift;
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
