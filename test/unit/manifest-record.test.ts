import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { loadManifests } from '../../src/manifest/load.js';
import { recordManifests, type RecordOptions } from '../../src/manifest/record.js';
import { ManifestFile } from '../../src/manifest/schema.js';
import { fixturesDir } from '../support/fixtures.js';

const fixture = (rel: string): string => path.join(fixturesDir, rel);
const DPKG = fixture('packages/debian12-base.dpkg.tsv');
const RPM = fixture('packages/al2023-sample.rpm.tsv');
const SBOM = fixture('sbom/debian12-base.cdx.json');
const PACKER = fixture('packer/packer-manifest.json');

let tmp: string;
let outDir: string;
beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pristine-record-'));
  outDir = path.join(tmp, 'out', 'manifests');
});
afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function recordError(opts: RecordOptions): Promise<string> {
  const err: unknown = await recordManifests(opts).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  return (err as InputError).message;
}

async function writeTmp(name: string, content: string): Promise<string> {
  const file = path.join(tmp, name);
  await fs.writeFile(file, content);
  return file;
}

describe('recordManifests --packer', () => {
  it('writes one manifest per AMI that loadManifests reads back', async () => {
    const written = await recordManifests({ packagesFile: DPKG, packerFile: PACKER, outDir });
    expect(written).toEqual([
      path.join(outDir, 'us-east-1_ami-0c0ffee1234567890.json'),
      path.join(outDir, 'eu-west-1_ami-0decade1234567890.json'),
    ]);
    expect((await fs.readdir(outDir)).sort()).toEqual([
      'eu-west-1_ami-0decade1234567890.json',
      'us-east-1_ami-0c0ffee1234567890.json',
    ]);

    const text = await fs.readFile(written[0] ?? '', 'utf8');
    expect(text.endsWith('}\n')).toBe(true);
    expect(text).toContain('\n  "imageId": "ami-0c0ffee1234567890",\n');
    const onDisk = ManifestFile.parse(JSON.parse(text));
    expect(onDisk).toMatchObject({
      version: 1,
      region: 'us-east-1',
      name: 'web',
      builtAt: '2025-11-18T10:00:00Z',
      packageManager: 'dpkg',
      packer: {
        buildName: 'web',
        runUuid: '6f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f',
        buildTime: '2025-11-18T10:00:00Z',
        customData: { git_sha: '3b9e2f1', packages_file: 'packages.dpkg.tsv' },
      },
    });

    const index = await loadManifests(outDir);
    expect([...index.keys()].sort()).toEqual(['eu-west-1/ami-0decade1234567890', 'us-east-1/ami-0c0ffee1234567890']);
    const east = index.get('us-east-1/ami-0c0ffee1234567890');
    expect(east?.packages).toHaveLength(743);
    expect(east?.packages.find((p) => p.name === 'bsdutils')?.version).toBe('1:2.38.1-5+deb12u3');
    expect(east?.file).toBe(written[0]);
  });

  it('records the same packages from the SBOM as from the dpkg list', async () => {
    const fromSbom = path.join(tmp, 'sbom');
    await recordManifests({ packagesFile: SBOM, packerFile: PACKER, outDir: fromSbom });
    await recordManifests({ packagesFile: DPKG, packerFile: PACKER, outDir });
    const a = await loadManifests(fromSbom);
    const b = await loadManifests(outDir);
    expect(a.get('eu-west-1/ami-0decade1234567890')?.packages).toEqual(b.get('eu-west-1/ami-0decade1234567890')?.packages);
  });

  it('lets name and builtAt override the build', async () => {
    const [file] = await recordManifests({ packagesFile: RPM, packerFile: PACKER, outDir, name: 'web-al2023', builtAt: '2025-11-18T11:00:00+01:00' });
    const m = ManifestFile.parse(JSON.parse(await fs.readFile(file ?? '', 'utf8')));
    expect(m).toMatchObject({ name: 'web-al2023', builtAt: '2025-11-18T11:00:00+01:00', packageManager: 'rpm' });
    expect(m.packages.filter((p) => p.name === 'kernel')).toHaveLength(2);
  });

  it('replaces an earlier manifest for the same AMI and leaves no temporary files', async () => {
    await recordManifests({ packagesFile: RPM, packerFile: PACKER, outDir });
    await recordManifests({ packagesFile: DPKG, packerFile: PACKER, outDir });
    expect((await fs.readdir(outDir)).sort()).toEqual([
      'eu-west-1_ami-0decade1234567890.json',
      'us-east-1_ami-0c0ffee1234567890.json',
    ]);
    const index = await loadManifests(outDir);
    expect(index.get('us-east-1/ami-0c0ffee1234567890')?.packageManager).toBe('dpkg');
  });
});

describe('recordManifests --image', () => {
  it('writes one manifest for the AMI in the given region', async () => {
    const written = await recordManifests({
      packagesFile: RPM,
      image: 'ami-0123456789abcdef0',
      region: 'us-west-2',
      name: 'api',
      builtAt: '2025-11-01T08:30:00Z',
      outDir,
    });
    expect(written).toEqual([path.join(outDir, 'us-west-2_ami-0123456789abcdef0.json')]);
    const m = (await loadManifests(outDir)).get('us-west-2/ami-0123456789abcdef0');
    expect(m).toMatchObject({ name: 'api', builtAt: '2025-11-01T08:30:00Z', packageManager: 'rpm' });
    expect(m?.packer).toBeUndefined();
  });

  it('defaults the name to the image id and builtAt to now', async () => {
    const before = Date.now();
    const [file] = await recordManifests({ packagesFile: DPKG, image: 'ami-0123456789abcdef0', region: 'us-east-1', outDir });
    const m = ManifestFile.parse(JSON.parse(await fs.readFile(file ?? '', 'utf8')));
    expect(m.name).toBe('ami-0123456789abcdef0');
    expect(Date.parse(m.builtAt)).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
  });
});

describe('recordManifests on bad input writes nothing', () => {
  const cases: Array<[string, () => Promise<RecordOptions>, RegExp]> = [
    ['neither --image nor --packer', async () => ({ packagesFile: DPKG, outDir }), /exactly one of --image .* or --packer/],
    [
      'both --image and --packer',
      async () => ({ packagesFile: DPKG, outDir, image: 'ami-0123456789abcdef0', region: 'us-east-1', packerFile: PACKER }),
      /exactly one of/,
    ],
    ['--image without --region', async () => ({ packagesFile: DPKG, outDir, image: 'ami-0123456789abcdef0' }), /--region is required with --image/],
    ['a bad --image', async () => ({ packagesFile: DPKG, outDir, image: 'i-0123456789abcdef0', region: 'us-east-1' }), /^--image: expected an AMI id/],
    ['a bad --region', async () => ({ packagesFile: DPKG, outDir, image: 'ami-0123456789abcdef0', region: 'Virginia' }), /^--region: expected an AWS region/],
    ['--region with --packer', async () => ({ packagesFile: DPKG, outDir, packerFile: PACKER, region: 'us-east-1' }), /--region applies only with --image/],
    ['a bad --built-at', async () => ({ packagesFile: DPKG, outDir, packerFile: PACKER, builtAt: 'yesterday' }), /^--built-at: /],
    [
      'a missing packages file',
      async () => ({ packagesFile: path.join(tmp, 'nope.tsv'), outDir, packerFile: PACKER }),
      /^packages file not found: .*nope\.tsv$/,
    ],
    [
      'a malformed packages file',
      async () => ({ packagesFile: await writeTmp('p.tsv', 'bash\t5.2\tamd64\ncoreutils 9.1 amd64\n'), outDir, packerFile: PACKER }),
      /p\.tsv:2: expected name<TAB>version<TAB>arch/,
    ],
    [
      'an empty packages file',
      async () => ({ packagesFile: await writeTmp('p.tsv', ''), outDir, image: 'ami-0123456789abcdef0', region: 'us-east-1' }),
      /p\.tsv: no packages found/,
    ],
    [
      'a missing Packer manifest',
      async () => ({ packagesFile: DPKG, outDir, packerFile: path.join(tmp, 'nope.json') }),
      /^Packer manifest not found: /,
    ],
    [
      'a Packer manifest with one bad artifact_id',
      async () => {
        const good = { name: 'web', build_time: 1763460000, artifact_id: 'us-east-1:ami-0c0ffee1234567890', packer_run_uuid: 'r' };
        const bad = { ...good, name: 'docker', artifact_id: 'sha256:abc' };
        return { packagesFile: DPKG, outDir, packerFile: await writeTmp('pm.json', JSON.stringify({ builds: [good, bad], last_run_uuid: 'r' })) };
      },
      /pm\.json: builds\[1\]\.artifact_id: expected region:ami-id pairs/,
    ],
    [
      'a Packer manifest with a bad field',
      async () => ({
        packagesFile: DPKG,
        outDir,
        packerFile: await writeTmp('pm.json', JSON.stringify({ builds: [{ name: 'web', build_time: 'now', artifact_id: 'us-east-1:ami-0c0ffee1234567890', packer_run_uuid: 'r' }] })),
      }),
      /pm\.json: builds\[0\]\.build_time: /,
    ],
  ];

  it.each(cases)('%s', async (_what, makeOpts, expected) => {
    const opts = await makeOpts();
    expect(await recordError(opts)).toMatch(expected);
    expect(existsSync(outDir)).toBe(false);
  });

  it('leaves an existing manifests directory untouched', async () => {
    await recordManifests({ packagesFile: RPM, packerFile: PACKER, outDir });
    const before = await Promise.all((await fs.readdir(outDir)).sort().map((f) => fs.readFile(path.join(outDir, f), 'utf8')));
    const bad = await writeTmp('p.tsv', 'bash\t5.2\tamd64\nzsh\t5.9\tx86_64\n');
    expect(await recordError({ packagesFile: bad, packerFile: PACKER, outDir })).toMatch(/mixes dpkg and rpm/);
    const after = await Promise.all((await fs.readdir(outDir)).sort().map((f) => fs.readFile(path.join(outDir, f), 'utf8')));
    expect(after).toEqual(before);
  });
});
