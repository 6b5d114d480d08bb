import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { parsePackageList } from '../../src/manifest/package-list.js';
import { fixturesDir } from '../support/fixtures.js';

const readFixture = (rel: string): string => readFileSync(path.join(fixturesDir, rel), 'utf8');

/** Run `fn`, expect an InputError, and return its message. */
function inputError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return (err as InputError).message;
  }
  throw new Error('expected an InputError, nothing was thrown');
}

const purlDeb = (name: string, version: string, arch: string) => `pkg:deb/debian/${name}@${version}?arch=${arch}&distro=debian-12`;
const sbom = (components: unknown[]): string => JSON.stringify({ bomFormat: 'CycloneDX', specVersion: '1.5', components });

describe('parsePackageList: three-column lists', () => {
  it('reads the Debian 12 dpkg fixture as written', () => {
    const text = readFixture('packages/debian12-base.dpkg.tsv');
    const list = parsePackageList(text, 'debian12-base.dpkg.tsv');
    expect(list.packageManager).toBe('dpkg');
    expect(list.packages).toHaveLength(743);
    expect(list.packages.find((p) => p.name === 'bsdutils')).toEqual({
      name: 'bsdutils',
      version: '1:2.38.1-5+deb12u3',
      arch: 'amd64',
    });
    // versions are not normalised: every row comes back exactly as in the file
    const rows = text.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
    expect(list.packages.map((p) => [p.name, p.version, p.arch])).toEqual(rows);
  });

  it('reads the AL2023 rpm fixture, both kernels and epochs included', () => {
    const list = parsePackageList(readFixture('packages/al2023-sample.rpm.tsv'), 'al2023-sample.rpm.tsv');
    expect(list.packageManager).toBe('rpm');
    expect(list.packages).toHaveLength(8);
    expect(list.packages.filter((p) => p.name === 'kernel')).toEqual([
      { name: 'kernel', version: '6.1.115-126.197.amzn2023', arch: 'x86_64' },
      { name: 'kernel', version: '6.1.119-129.201.amzn2023', arch: 'x86_64' },
    ]);
    expect(list.packages.find((p) => p.name === 'openssl-libs')?.version).toBe('1:3.0.8-1.amzn2023.0.18');
  });

  it('ignores blank lines and CRLF line ends', () => {
    const list = parsePackageList('\r\nbash\t5.2.15-2+b7\tamd64\r\n\n  \nbase-files\t12.4+deb12u8\tamd64\r\n', 'p.tsv');
    expect(list).toEqual({
      packageManager: 'dpkg',
      packages: [
        { name: 'bash', version: '5.2.15-2+b7', arch: 'amd64' },
        { name: 'base-files', version: '12.4+deb12u8', arch: 'amd64' },
      ],
    });
  });

  it.each([
    ['two columns', 'bash\t5.2.15\tamd64\ncoreutils\t9.1-1\n', 2],
    ['four columns', 'bash\t5.2.15\tamd64\n\ncoreutils\t9.1-1\tamd64\textra\n', 3],
    ['an empty version', 'bash\t\tamd64\n', 1],
    ['spaces, not tabs', 'bash 5.2.15 amd64\n', 1],
  ])('rejects a line with %s, naming file and line', (_what, text, line) => {
    expect(inputError(() => parsePackageList(text, 'pkgs.tsv'))).toMatch(
      new RegExp(`^pkgs\\.tsv:${line}: expected name<TAB>version<TAB>arch`),
    );
  });

  it('rejects a repeated row, naming both lines', () => {
    const msg = inputError(() => parsePackageList('a\t1\tamd64\nb\t1\tamd64\na\t1\tamd64\n', 'pkgs.tsv'));
    expect(msg).toBe('pkgs.tsv:3: duplicate package a 1 amd64 (first on line 1)');
  });

  it('keeps the same name with other versions or arches (multiarch, several kernels)', () => {
    const list = parsePackageList('libc6\t2.36-9\tamd64\nlibc6\t2.36-9\ti386\n', 'p.tsv');
    expect(list.packages).toHaveLength(2);
  });

  it.each([
    ['empty', ''],
    ['blank', '\n \n\r\n'],
  ])('rejects an %s list', (_what, text) => {
    expect(inputError(() => parsePackageList(text, 'pkgs.tsv'))).toMatch(/^pkgs\.tsv: .*empty/);
  });

  it('rejects a list mixing dpkg and rpm arches, naming both lines', () => {
    const msg = inputError(() => parsePackageList('bash\t5.2\tamd64\nzsh\t5.9\tx86_64\n', 'pkgs.tsv'));
    expect(msg).toMatch(/^pkgs\.tsv: mixes dpkg and rpm architectures/);
    expect(msg).toContain('line 1');
    expect(msg).toContain('line 2');
  });

  it('falls back on release tags in versions when the arches decide nothing', () => {
    expect(parsePackageList('bash\t5.1.8-9.el9\ts390x\n', 'p.tsv').packageManager).toBe('rpm');
    expect(parsePackageList('bash\t5.2.15-2+deb12u1\ts390x\n', 'p.tsv').packageManager).toBe('dpkg');
  });

  it('asks for the format when neither arches nor versions tell', () => {
    const msg = inputError(() => parsePackageList('bash\t5.2.15-2\ts390x\n', 'pkgs.tsv'));
    expect(msg).toMatch(/^pkgs\.tsv: cannot tell whether this is a dpkg or an rpm package list/);
    expect(msg).toContain('s390x');
    expect(msg).toMatch(/state the package manager/);
    expect(parsePackageList('bash\t5.2.15-2\ts390x\n', 'pkgs.tsv', { packageManager: 'rpm' }).packageManager).toBe('rpm');
  });
});

describe('parsePackageList: CycloneDX SBOMs', () => {
  it('gives the same packages as the dpkg list for the Debian 12 SBOM', () => {
    const fromSbom = parsePackageList(readFixture('sbom/debian12-base.cdx.json'), 'debian12-base.cdx.json');
    const fromDpkg = parsePackageList(readFixture('packages/debian12-base.dpkg.tsv'), 'debian12-base.dpkg.tsv');
    expect(fromSbom.packageManager).toBe('dpkg');
    expect(fromSbom.packages).toHaveLength(743);
    // same names, versions and arches, in the same order
    expect(fromSbom.packages).toEqual(fromDpkg.packages);
    expect(fromSbom.packages.find((p) => p.name === 'bsdutils')?.version).toBe('1:2.38.1-5+deb12u3');
  });

  it('reads rpm purls and prepends the epoch qualifier unless the version has it', () => {
    const list = parsePackageList(
      sbom([
        { type: 'library', name: 'openssl-libs', version: '3.0.8-1.amzn2023.0.18', purl: 'pkg:rpm/amazon/openssl-libs@3.0.8-1.amzn2023.0.18?arch=x86_64&epoch=1&distro=amazonlinux-2023' },
        { type: 'library', name: 'nginx', version: '1:1.24.0-1.amzn2023.0.4', purl: 'pkg:rpm/amazon/nginx@1:1.24.0-1.amzn2023.0.4?arch=x86_64&epoch=1' },
        { type: 'application', name: 'bash', version: '5.2.15-1.amzn2023.0.2', purl: 'pkg:rpm/amazon/bash@5.2.15-1.amzn2023.0.2?arch=x86_64' },
      ]),
      'al.cdx.json',
    );
    expect(list).toEqual({
      packageManager: 'rpm',
      packages: [
        { name: 'openssl-libs', version: '1:3.0.8-1.amzn2023.0.18', arch: 'x86_64' },
        { name: 'nginx', version: '1:1.24.0-1.amzn2023.0.4', arch: 'x86_64' },
        { name: 'bash', version: '5.2.15-1.amzn2023.0.2', arch: 'x86_64' },
      ],
    });
  });

  it('skips components without a deb or rpm purl, and non-package component types', () => {
    const list = parsePackageList(
      sbom([
        { type: 'library', name: 'left-pad', version: '1.3.0', purl: 'pkg:npm/left-pad@1.3.0' },
        { type: 'library', name: 'mystery', version: '1' },
        { type: 'operating-system', name: 'debian', version: '12', purl: 'pkg:deb/debian/debian@12?arch=amd64' },
        { type: 'file', name: '/etc/passwd' },
        { type: 'library', name: 'bash', version: '5.2.15-2+b7', purl: purlDeb('bash', '5.2.15-2+b7', 'amd64') },
      ]),
      'x.cdx.json',
    );
    expect(list).toEqual({ packageManager: 'dpkg', packages: [{ name: 'bash', version: '5.2.15-2+b7', arch: 'amd64' }] });
  });

  it('decodes percent-encoded purls and takes the version from the purl when the component has none', () => {
    const list = parsePackageList(
      sbom([{ type: 'library', name: 'libstdc++6', purl: 'pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64' }]),
      'x.cdx.json',
    );
    expect(list.packages).toEqual([{ name: 'libstdc++6', version: '12.2.0-14+deb12u1', arch: 'amd64' }]);
  });

  it('keeps a package listed twice once', () => {
    const c = { type: 'library', name: 'bash', version: '5.2.15-2+b7', purl: purlDeb('bash', '5.2.15-2+b7', 'amd64') };
    expect(parsePackageList(sbom([c, c]), 'x.cdx.json').packages).toHaveLength(1);
  });

  it('finds packages in nested components', () => {
    const list = parsePackageList(
      sbom([{ type: 'application', name: 'image', components: [{ type: 'library', name: 'bash', version: '5.2', purl: purlDeb('bash', '5.2', 'amd64') }] }]),
      'x.cdx.json',
    );
    expect(list.packages).toEqual([{ name: 'bash', version: '5.2', arch: 'amd64' }]);
  });

  it('rejects an SBOM mixing deb and rpm packages, naming the components', () => {
    const msg = inputError(() =>
      parsePackageList(
        sbom([
          { type: 'library', name: 'bash', version: '5.2', purl: purlDeb('bash', '5.2', 'amd64') },
          { type: 'library', name: 'zsh', version: '5.9', purl: 'pkg:rpm/fedora/zsh@5.9?arch=x86_64' },
        ]),
        'mixed.cdx.json',
      ),
    );
    expect(msg).toMatch(/^mixed\.cdx\.json: mixes deb and rpm packages/);
    expect(msg).toContain('components[0]');
    expect(msg).toContain('components[1]');
  });

  it('rejects an SBOM without any deb or rpm package', () => {
    expect(inputError(() => parsePackageList(sbom([]), 'e.cdx.json'))).toMatch(/^e\.cdx\.json: components: no library/);
    expect(
      inputError(() => parsePackageList(JSON.stringify({ bomFormat: 'CycloneDX', specVersion: '1.5' }), 'e.cdx.json')),
    ).toMatch(/^e\.cdx\.json: components:/);
  });

  it('rejects a package purl without an arch qualifier, naming the component', () => {
    const msg = inputError(() =>
      parsePackageList(sbom([{ type: 'library', name: 'bash', version: '5.2', purl: 'pkg:deb/debian/bash@5.2?distro=debian-12' }]), 'a.cdx.json'),
    );
    expect(msg).toMatch(/^a\.cdx\.json: components\[0\]\.purl: no arch qualifier/);
  });

  it('rejects an epoch qualifier that contradicts the version', () => {
    const msg = inputError(() =>
      parsePackageList(sbom([{ type: 'library', name: 'nginx', version: '2:1.24.0-1', purl: 'pkg:rpm/amazon/nginx@2:1.24.0-1?arch=x86_64&epoch=1' }]), 'a.cdx.json'),
    );
    expect(msg).toMatch(/^a\.cdx\.json: components\[0\]\.purl: epoch qualifier 1 contradicts/);
  });

  it('reports invalid JSON with the file name', () => {
    expect(inputError(() => parsePackageList('{"bomFormat": "CycloneDX",', 'bad.cdx.json'))).toMatch(/^bad\.cdx\.json: invalid JSON: /);
  });

  it('rejects JSON that is not a CycloneDX SBOM', () => {
    expect(inputError(() => parsePackageList('{"bomFormat": "SPDX"}', 'x.json'))).toMatch(/^x\.json: bomFormat: expected a CycloneDX SBOM/);
  });

  it('reports malformed components with their field path', () => {
    const msg = inputError(() => parsePackageList(sbom([{ type: 'library', name: 'bash', purl: 42 }]), 'x.cdx.json'));
    expect(msg).toMatch(/^x\.cdx\.json: components\[0\]\.purl: /);
    expect(inputError(() => parsePackageList(JSON.stringify({ bomFormat: 'CycloneDX', components: 'none' }), 'x.cdx.json'))).toMatch(
      /^x\.cdx\.json: components: /,
    );
  });

  it('refuses an SBOM whose packages contradict a stated package manager', () => {
    const text = sbom([{ type: 'library', name: 'bash', version: '5.2', purl: purlDeb('bash', '5.2', 'amd64') }]);
    expect(inputError(() => parsePackageList(text, 'x.cdx.json', { packageManager: 'rpm' }))).toMatch(/^x\.cdx\.json: .*dpkg/);
  });
});
