// `pristine policy validate` and `pristine manifest record`: the real CLI, on files only.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fixturePath, repoRoot } from '../support/fixtures.js';
import { runCli } from '../support/scenario.js';

let dir: string;
const env = () => ({ PATH: process.env.PATH ?? '', HOME: dir, AWS_REGION: 'us-east-1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' });
const pristine = (...args: string[]) => runCli(args, env(), dir);

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pristine-cli-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('pristine policy validate', () => {
  it('accepts the example policies shipped in policies/', async () => {
    const r = await pristine('policy', 'validate', path.join(repoRoot, 'policies'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/web-immutable: ok/);
    expect(r.stdout).toMatch(/2 policies in 1 file: valid/);
  });

  it('names the file, the policy index and the field path of each error, and exits 2', async () => {
    await writeFile(
      path.join(dir, 'web.yaml'),
      'policies:\n  - name: web\n    detect:\n      package-drift: { ignore: "linux-image-*" }\n  - name: db\n    scope: { tags: { role: db } }\n    detect: {}\n',
    );
    const r = await pristine('policy', 'validate', dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${path.join(dir, 'web.yaml')}: policies[0].detect.package-drift.ignore: Invalid input: expected array, received string`);
    expect(r.stderr).toContain(`${path.join(dir, 'web.yaml')}: policies[1].detect: turn on at least one detector`);
  });

  it('rejects a policy name used twice across files', async () => {
    const policy = 'policies:\n  - name: web\n    detect: { interactive-session: }\n';
    await writeFile(path.join(dir, 'a.yaml'), policy);
    await writeFile(path.join(dir, 'b.yaml'), policy);
    const r = await pristine('policy', 'validate', dir);
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/b\.yaml: policy name "web" is already used in .*a\.yaml/)]);
  });
});

describe('pristine manifest record', () => {
  it('records every AMI of a Packer build, in every region, from a dpkg list', async () => {
    const out = path.join(dir, 'manifests');
    const r = await pristine('manifest', 'record', '--packages', fixturePath('packages/debian12-base.dpkg.tsv'), '--packer', fixturePath('packer/packer-manifest.json'), '--out', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['eu-west-1_ami-0decade1234567890.json', 'us-east-1_ami-0c0ffee1234567890.json']);
    const m = JSON.parse(await readFile(path.join(out, 'us-east-1_ami-0c0ffee1234567890.json'), 'utf8')) as Record<string, unknown>;
    expect(m).toMatchObject({ imageId: 'ami-0c0ffee1234567890', region: 'us-east-1', name: 'web', packageManager: 'dpkg' });
    expect((m['packages'] as unknown[]).length).toBe(743);
  });

  it('records one image from a CycloneDX SBOM, in the SDK region', async () => {
    const out = path.join(dir, 'm');
    const r = await pristine('manifest', 'record', '--packages', fixturePath('sbom/debian12-base.cdx.json'), '--image', 'ami-0123456789abcdef0', '--out', out);
    expect(r.code).toBe(0);
    expect(await readdir(out)).toEqual(['us-east-1_ami-0123456789abcdef0.json']);
  });

  it('exits 2 and writes nothing on a bad package list', async () => {
    const bad = path.join(dir, 'bad.tsv');
    await writeFile(bad, 'bash\t5.2\tx86_64\nbroken-line\n');
    const out = path.join(dir, 'none');
    const r = await pristine('manifest', 'record', '--packages', bad, '--image', 'ami-0123456789abcdef0', '--out', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.tsv:2: expected name<TAB>version<TAB>arch/);
    await expect(readdir(out)).rejects.toThrow();
  });

  it('asks for exactly one of --image and --packer', async () => {
    const r = await pristine('manifest', 'record', '--packages', fixturePath('packages/al2023-sample.rpm.tsv'));
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/exactly one of --image AMI_ID or --packer/)]);
  });
});
