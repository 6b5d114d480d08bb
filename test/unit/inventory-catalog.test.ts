// Inventories are fingerprinted and kept between reads: what did not change is not normalised again.
import { describe, expect, it } from 'vitest';
import { InventoryCatalog, packagesFingerprint } from '../../src/evidence/sources/ssm-inventory/catalog.js';
import { toPackages } from '../../src/evidence/sources/ssm-inventory/index.js';
import { readFixtureJsonl } from '../support/fixtures.js';

const rows = readFixtureJsonl<Record<string, string>>('ssm/inventory-drifted.jsonl');

describe('InventoryCatalog', () => {
  it('normalises each row: epoch and release joined to the version, keys in either case, rows without a name left out', () => {
    const catalog = new InventoryCatalog();
    const packages = catalog.snapshot('i-1', 1, [
      { Name: 'libc6', Version: '2.36-9+deb12u4', Architecture: 'amd64' },
      { Name: 'openssl-libs', Version: '3.0.8', Release: '1.amzn2023.0.18', Epoch: '1', Architecture: 'x86_64' },
      { name: 'adduser', version: '3.134', architecture: 'all' },
      { Name: 'perl', Version: '0:5.36.0-7', Architecture: 'amd64' },
      { Version: '1.0' },
    ], 'abc').packages;
    expect(packages).toEqual([
      { name: 'libc6', version: '2.36-9+deb12u4', arch: 'amd64' },
      { name: 'openssl-libs', version: '1:3.0.8-1.amzn2023.0.18', arch: 'x86_64' },
      { name: 'adduser', version: '3.134', arch: 'all' },
      { name: 'perl', version: '5.36.0-7', arch: 'amd64' },
    ]);
    expect(toPackages(rows)).toEqual(catalog.snapshot('i-2', 1, rows, 'def').packages);
  });

  it("takes a ContentHash it knows as it is: one package list for every instance that reports it, nothing normalised again", () => {
    const catalog = new InventoryCatalog();
    const a = catalog.snapshot('i-1', 1, rows, 'hash-1');
    const normalised = catalog.normalisedRows;
    const b = catalog.snapshot('i-2', 2, rows, 'hash-1');
    expect(b.packages).toBe(a.packages);
    expect(b).toMatchObject({ instanceId: 'i-2', captureTime: 2, fingerprint: 'ssm:hash-1' });
    expect(catalog.normalisedRows).toBe(normalised);
  });

  it('fingerprints an inventory without a ContentHash by its packages: the same packages share one list', () => {
    const catalog = new InventoryCatalog();
    const a = catalog.snapshot('i-1', 1, rows, null);
    const b = catalog.snapshot('i-2', 1, rows.map((r) => ({ ...r })), undefined);
    const other = catalog.snapshot('i-3', 1, rows.slice(1), null);
    expect(a.fingerprint).toBe(packagesFingerprint(a.packages));
    expect(a.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b.fingerprint).toBe(a.fingerprint);
    expect(b.packages).toBe(a.packages);
    expect(other.fingerprint).not.toBe(a.fingerprint);
  });

  it('interns packages: a row in two inventories is one object', () => {
    const catalog = new InventoryCatalog();
    const a = catalog.snapshot('i-1', 1, rows, 'one');
    const b = catalog.snapshot('i-2', 1, [...rows.slice(1), rows[0] as Record<string, string>], 'two');
    expect(b.packages[b.packages.length - 1]).toBe(a.packages[0]);
  });

  it('forgets, at the sweep after a read, the inventories that read did not report', () => {
    const catalog = new InventoryCatalog();
    catalog.snapshot('i-1', 1, rows, 'kept');
    catalog.snapshot('i-2', 1, rows.slice(1), 'gone');
    catalog.sweep();
    catalog.snapshot('i-1', 2, rows, 'kept');
    expect(catalog.sweep()).toBe(1);
    expect(catalog.size).toBe(1);
    const before = catalog.normalisedRows;
    catalog.snapshot('i-2', 3, rows.slice(1), 'gone');
    expect(catalog.normalisedRows).toBe(before + rows.length - 1);
  });
});
