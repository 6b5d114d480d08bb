import { createHash } from 'node:crypto';
import type { InventorySnapshot, Package } from '../../../core/facts.js';
import { normalizeVersion } from '../../../core/package-version.js';

/** One AWS:Application content row as GetInventory returns it (keys capitalised, or lower-case from some producers). */
export type InventoryRow = Readonly<Record<string, string>>;

interface Interned {
  version: string;
  release: string;
  epoch: string;
  arch: string;
  p: Package;
}

/** A hash of a normalised package list, for inventories SSM gave no ContentHash: the same packages give the same one. */
export function packagesFingerprint(packages: readonly Package[]): string {
  const hash = createHash('sha256');
  for (const p of packages) hash.update(`${p.name}\0${p.version}\0${p.arch}\n`);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * The distinct inventories of a fleet, kept between cycles. In a fleet built from a few dozen images
 * most instances report the same packages as the others of their image, and SSM says so with each
 * result's ContentHash: an inventory whose fingerprint is known is not normalised again, and every
 * instance that reports it shares one package list (so the package-drift detector diffs it once).
 * Packages are interned: a row seen in any inventory becomes one object, whatever list holds it.
 *
 * `sweep()` after each full read forgets the inventories nobody reported since the previous sweep.
 */
export class InventoryCatalog {
  private readonly contents = new Map<string, readonly Package[]>();
  /** SSM's ContentHash -> its fingerprint and packages: a known hash is one lookup */
  private readonly byHash = new Map<string, { fingerprint: string; packages: readonly Package[] }>();
  private readonly seen = new Set<string>();
  /** name -> the rows of that name seen so far, each with its package: no key string is built per row */
  private pool = new Map<string, Interned[]>();
  /** rows normalised since the catalog was made: what a known fingerprint saves */
  normalisedRows = 0;

  get size(): number {
    return this.contents.size;
  }

  /** The packages of one row list, each row normalised once and interned. */
  toPackages(rows: readonly InventoryRow[]): Package[] {
    const out: Package[] = [];
    // Indexed loops, not for-of (see src/runtime-tuning.ts).
    for (let n = 0; n < rows.length; n++) {
      const entry = rows[n] as InventoryRow;
      // Content keys are documented capitalised (Name, Version); some producers write them lower-case.
      // Each read names its key: the rows of one answer share a shape, and each read stays a quick one.
      const name = entry['Name'] ?? entry['name'] ?? '';
      if (!name) continue;
      const version = entry['Version'] ?? entry['version'] ?? '';
      const release = entry['Release'] ?? entry['release'] ?? '';
      const epoch = entry['Epoch'] ?? entry['epoch'] ?? '';
      const arch = entry['Architecture'] ?? entry['architecture'] ?? '';
      let same = this.pool.get(name);
      if (!same) {
        same = [];
        this.pool.set(name, same);
      }
      let found: Package | undefined;
      for (let k = 0; k < same.length; k++) {
        const e = same[k] as Interned;
        if (e.version === version && e.release === release && e.epoch === epoch && e.arch === arch) {
          found = e.p;
          break;
        }
      }
      if (!found) {
        found = { name, arch, version: normalizeVersion({ version, release, epoch }) };
        same.push({ version, release, epoch, arch, p: found });
      }
      out.push(found);
    }
    this.normalisedRows += rows.length;
    return out;
  }

  /**
   * One instance's inventory. With SSM's ContentHash a known content is taken as it is; without one,
   * the rows are normalised and fingerprinted by what they hold.
   */
  snapshot(instanceId: string, captureTime: number | null, rows: readonly InventoryRow[], contentHash?: string | null): InventorySnapshot {
    if (contentHash) {
      let known = this.byHash.get(contentHash);
      if (!known) {
        const fingerprint = `ssm:${contentHash}`;
        known = { fingerprint, packages: this.contents.get(fingerprint) ?? this.toPackages(rows) };
        this.contents.set(fingerprint, known.packages);
        this.byHash.set(contentHash, known);
      }
      this.seen.add(known.fingerprint);
      return { instanceId, captureTime, fingerprint: known.fingerprint, packages: known.packages };
    }
    const normalised = this.toPackages(rows);
    const fingerprint = packagesFingerprint(normalised);
    this.seen.add(fingerprint);
    let packages = this.contents.get(fingerprint);
    if (!packages) {
      packages = normalised;
      this.contents.set(fingerprint, packages);
    }
    return { instanceId, captureTime, fingerprint, packages };
  }

  /** Forgets the inventories not reported since the last sweep; says how many. */
  sweep(): number {
    let evicted = 0;
    for (const fingerprint of this.contents.keys()) {
      if (this.seen.has(fingerprint)) continue;
      this.contents.delete(fingerprint);
      if (fingerprint.startsWith('ssm:')) this.byHash.delete(fingerprint.slice(4));
      evicted++;
    }
    this.seen.clear();
    // Rows of forgotten inventories would stay interned forever: start the pool again from the live ones.
    if (evicted > 0) {
      const live = new Set<Package>();
      for (const list of this.contents.values()) for (const p of list) live.add(p);
      const pool = new Map<string, Interned[]>();
      for (const [name, same] of this.pool) {
        const kept = same.filter((e) => live.has(e.p));
        if (kept.length > 0) pool.set(name, kept);
      }
      this.pool = pool;
    }
    return evicted;
  }
}
