import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { ManifestFile } from '../../src/manifest/schema.js';
import { parseOrThrow } from '../../src/validation.js';

const valid = () => ({
  version: 1,
  imageId: 'ami-0c0ffee1234567890',
  region: 'us-east-1',
  name: 'web',
  builtAt: '2025-11-18T10:00:00Z',
  packageManager: 'dpkg',
  packages: [
    { name: 'bash', version: '5.2.15-2+b7', arch: 'amd64' },
    { name: 'bsdutils', version: '1:2.38.1-5+deb12u3', arch: 'amd64' },
  ],
});

function problems(data: unknown): string {
  try {
    parseOrThrow(ManifestFile, data, 'm.json');
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return (err as InputError).message;
  }
  throw new Error('expected an InputError, nothing was thrown');
}

describe('ManifestFile', () => {
  it('accepts a minimal manifest and defaults version to 1', () => {
    const { version: _omit, ...rest } = valid();
    expect(ManifestFile.parse(rest).version).toBe(1);
  });

  it('accepts every optional part', () => {
    const full = {
      ...valid(),
      builtAt: '2025-11-18T11:00:00.123+01:00',
      region: 'us-gov-west-1',
      imageId: 'ami-12345678',
      sourceImage: 'ami-0aaaabbbbccccdddd',
      packer: { buildName: 'web', runUuid: 'u', buildTime: '2025-11-18T10:00:00Z', customData: { git_sha: 'abc' } },
      files: [{ path: '/etc/ssh/sshd_config', sha256: 'a'.repeat(64) }],
    };
    expect(ManifestFile.parse(full)).toEqual(full);
  });

  it.each([
    ['imageId', { imageId: 'ami-XYZ' }, 'm.json: imageId: expected an AMI id'],
    ['imageId (too short)', { imageId: 'ami-1234567' }, 'm.json: imageId: '],
    ['region', { region: 'US-East-1' }, 'm.json: region: expected an AWS region'],
    ['builtAt (no zone)', { builtAt: '2025-11-18T10:00:00' }, 'm.json: builtAt: must be an ISO-8601'],
    ['builtAt (date only)', { builtAt: '2025-11-18' }, 'm.json: builtAt: '],
    ['packageManager', { packageManager: 'apk' }, 'm.json: packageManager: '],
    ['version', { version: 2 }, 'm.json: version: unsupported manifest version'],
    ['name', { name: '' }, 'm.json: name: must not be empty'],
    ['packages (empty)', { packages: [] }, 'm.json: packages: must list at least one package'],
    ['packages[0].version', { packages: [{ name: 'bash', version: '', arch: 'amd64' }] }, 'm.json: packages[0].version: '],
    ['packer.buildTime', { packer: { buildTime: 'yesterday' } }, 'm.json: packer.buildTime: '],
    ['packer.customData', { packer: { customData: { n: 1 } } }, 'm.json: packer.customData.n: '],
    ['files[0].sha256', { files: [{ path: '/etc/x', sha256: 'ABC' }] }, 'm.json: files[0].sha256: '],
  ])('names the bad field: %s', (_field, over, expected) => {
    expect(problems({ ...valid(), ...over })).toContain(expected);
  });

  it('rejects unknown keys at every level, so typos are reported', () => {
    const msg = problems({
      ...valid(),
      packagez: [],
      packer: { build_name: 'web' },
      packages: [{ name: 'bash', version: '5.2', arch: 'amd64', epoch: 0 }],
    });
    expect(msg).toContain('m.json: Unrecognized key: "packagez"');
    expect(msg).toContain('m.json: packer: Unrecognized key: "build_name"');
    expect(msg).toContain('m.json: packages[0]: Unrecognized key: "epoch"');
  });

  it('rejects duplicate (name, arch, version) rows but not other versions or arches', () => {
    const msg = problems({
      ...valid(),
      packages: [
        { name: 'kernel', version: '6.1.115', arch: 'x86_64' },
        { name: 'kernel', version: '6.1.119', arch: 'x86_64' },
        { name: 'kernel', version: '6.1.115', arch: 'aarch64' },
        { name: 'kernel', version: '6.1.115', arch: 'x86_64' },
      ],
    });
    expect(msg).toBe('m.json: packages[3]: duplicate of packages[0] (kernel 6.1.115 x86_64)');
  });

  it('rejects the same file path twice', () => {
    const files = [
      { path: '/etc/x', sha256: 'a'.repeat(64) },
      { path: '/etc/x', sha256: 'b'.repeat(64) },
    ];
    expect(problems({ ...valid(), files })).toBe('m.json: files[1].path: duplicate of files[0].path (/etc/x)');
  });
});
