import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { loadManifests } from '../../src/manifest/load.js';
import { manifestKey } from '../../src/manifest/types.js';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pristine-load-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const manifest = (over: Record<string, unknown> = {}) => ({
  version: 1,
  imageId: 'ami-0c0ffee1234567890',
  region: 'us-east-1',
  name: 'web',
  builtAt: '2025-11-18T10:00:00Z',
  packageManager: 'dpkg',
  packages: [{ name: 'bsdutils', version: '1:2.38.1-5+deb12u3', arch: 'amd64' }],
  ...over,
});

async function write(name: string, content: unknown): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return file;
}

async function loadError(from: string): Promise<string> {
  const err: unknown = await loadManifests(from).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  return (err as InputError).message;
}

describe('loadManifests', () => {
  it('loads every manifest, keyed by region and image id, with its file', async () => {
    const a = await write('b.json', manifest());
    const packer = { buildName: 'web', runUuid: 'r', buildTime: '2025-11-18T10:00:00Z', customData: { git_sha: 'abc' } };
    const { version: _v, ...noVersion } = manifest({ region: 'eu-west-1', imageId: 'ami-0decade1234567890', packer, packageManager: 'rpm' });
    const b = await write('a.json', noVersion);

    const index = await loadManifests(dir);
    expect([...index.keys()]).toEqual([
      manifestKey('eu-west-1', 'ami-0decade1234567890'),
      manifestKey('us-east-1', 'ami-0c0ffee1234567890'),
    ]);
    expect(index.get('us-east-1/ami-0c0ffee1234567890')).toEqual({
      imageId: 'ami-0c0ffee1234567890',
      region: 'us-east-1',
      name: 'web',
      builtAt: '2025-11-18T10:00:00Z',
      packageManager: 'dpkg',
      packages: [{ name: 'bsdutils', version: '1:2.38.1-5+deb12u3', arch: 'amd64' }],
      file: a,
    });
    expect(index.get('eu-west-1/ami-0decade1234567890')).toMatchObject({ file: b, packageManager: 'rpm', packer });
  });

  it('reads only *.json files directly in the directory', async () => {
    await write('web.json', manifest());
    await write('README.md', '# not a manifest');
    await write('notes.json.bak', '{');
    await write('.hidden.json', '{');
    await fs.mkdir(path.join(dir, 'nested.json'));
    await fs.writeFile(path.join(dir, 'nested.json', 'x.json'), '{');
    const index = await loadManifests(dir);
    expect(index.size).toBe(1);
  });

  it('gives an empty index for an empty directory', async () => {
    expect((await loadManifests(dir)).size).toBe(0);
  });

  it('reports a missing directory', async () => {
    const missing = path.join(dir, 'nope');
    expect(await loadError(missing)).toBe(`manifests directory not found: ${missing}`);
  });

  it('reports a file given as the directory', async () => {
    const file = await write('m.json', manifest());
    expect(await loadError(file)).toMatch(/not a directory/);
  });

  it('reports the problems of every file at once', async () => {
    const bad = await write('1-bad-json.json', '{"imageId": "ami-0c0ffee1234567890",');
    const fields = await write('2-bad-fields.json', manifest({ imageId: 'ami-nope', packagez: [] }));
    const dupRows = await write(
      '3-dup-rows.json',
      manifest({
        imageId: 'ami-0aaaabbbbccccdddd',
        packages: [
          { name: 'bash', version: '5.2', arch: 'amd64' },
          { name: 'bash', version: '5.2', arch: 'amd64' },
        ],
      }),
    );
    const good = await write('4-good.json', manifest());

    const lines = (await loadError(dir)).split('\n');
    expect(lines[0]).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: invalid JSON: `));
    expect(lines).toContain(`${fields}: imageId: expected an AMI id like ami-0123456789abcdef0`);
    expect(lines).toContain(`${fields}: Unrecognized key: "packagez"`);
    expect(lines).toContain(`${dupRows}: packages[1]: duplicate of packages[0] (bash 5.2 amd64)`);
    expect(lines.some((l) => l.startsWith(good))).toBe(false);
  });

  it('rejects two files for the same image, naming both', async () => {
    const first = await write('a.json', manifest());
    const second = await write('b.json', manifest({ name: 'web-copy' }));
    await write('c.json', manifest({ region: 'eu-west-1' })); // same AMI id in another region is fine
    const msg = await loadError(dir);
    expect(msg).toBe(`${second}: us-east-1 ami-0c0ffee1234567890 is already described by ${first}`);
  });
});
