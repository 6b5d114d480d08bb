import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { parsePackerManifest } from '../../src/manifest/packer.js';
import { fixturesDir } from '../support/fixtures.js';

const fixtureText = readFileSync(path.join(fixturesDir, 'packer/packer-manifest.json'), 'utf8');

function inputError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return (err as InputError).message;
  }
  throw new Error('expected an InputError, nothing was thrown');
}

const build = (over: Record<string, unknown> = {}) => ({
  name: 'web',
  builder_type: 'amazon-ebs',
  build_time: 1763460000,
  files: null,
  artifact_id: 'us-east-1:ami-0c0ffee1234567890',
  packer_run_uuid: 'run-2',
  custom_data: null,
  ...over,
});
const manifest = (builds: unknown[], lastRun?: string) =>
  JSON.stringify(lastRun === undefined ? { builds } : { builds, last_run_uuid: lastRun });

describe('parsePackerManifest', () => {
  it('gives one image per region of the fixture build', () => {
    const images = parsePackerManifest(fixtureText, 'packer-manifest.json');
    const custom = { git_sha: '3b9e2f1', packages_file: 'packages.dpkg.tsv' };
    const common = { buildName: 'web', runUuid: '6f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f', buildTime: '2025-11-18T10:00:00Z', customData: custom };
    expect(images).toEqual([
      { region: 'us-east-1', imageId: 'ami-0c0ffee1234567890', ...common },
      { region: 'eu-west-1', imageId: 'ami-0decade1234567890', ...common },
    ]);
    expect(new Date(images[0]?.buildTime ?? '').getTime()).toBe(1763460000 * 1000);
  });

  it('takes only the builds of the last run', () => {
    const images = parsePackerManifest(
      manifest(
        [
          build({ packer_run_uuid: 'run-1', artifact_id: 'us-east-1:ami-11111111', name: 'old' }),
          build({ packer_run_uuid: 'run-2', artifact_id: 'us-east-1:ami-22222222', name: 'web' }),
          build({ packer_run_uuid: 'run-2', artifact_id: 'us-west-2:ami-33333333', name: 'api' }),
        ],
        'run-2',
      ),
      'm.json',
    );
    expect(images.map((i) => [i.region, i.imageId, i.buildName])).toEqual([
      ['us-east-1', 'ami-22222222', 'web'],
      ['us-west-2', 'ami-33333333', 'api'],
    ]);
    expect(images[0]?.customData).toEqual({});
  });

  it('takes every build when last_run_uuid is absent', () => {
    const images = parsePackerManifest(
      manifest([
        build({ packer_run_uuid: 'run-1', artifact_id: 'us-east-1:ami-11111111' }),
        build({ packer_run_uuid: 'run-2', artifact_id: 'us-east-1:ami-22222222' }),
      ]),
      'm.json',
    );
    expect(images.map((i) => i.imageId)).toEqual(['ami-11111111', 'ami-22222222']);
  });

  it('rejects a last_run_uuid that no build has', () => {
    expect(inputError(() => parsePackerManifest(manifest([build()], 'run-9'), 'm.json'))).toMatch(/^m\.json: last_run_uuid: .*run-9/);
  });

  it.each([
    ['a bare AMI id', 'ami-0c0ffee1234567890'],
    ['a Docker image', 'sha256:4d2f0e5b7a3c'],
    ['an empty id', ''],
    ['a bad region', 'US_EAST:ami-0c0ffee1234567890'],
    ['a bad AMI id', 'us-east-1:ami-XYZ'],
    ['a bad second pair', 'us-east-1:ami-0c0ffee1234567890,eu-west-1'],
  ])('rejects an artifact_id with %s, naming the field', (_what, artifactId) => {
    const msg = inputError(() => parsePackerManifest(manifest([build(), build({ artifact_id: artifactId })], 'run-2'), 'm.json'));
    expect(msg).toMatch(/^m\.json: builds\[1\]\.artifact_id: expected region:ami-id pairs/);
    expect(msg).toContain(JSON.stringify(artifactId));
  });

  it('rejects the same AMI listed twice', () => {
    const msg = inputError(() => parsePackerManifest(manifest([build(), build()], 'run-2'), 'm.json'));
    expect(msg).toBe('m.json: builds[1].artifact_id: us-east-1:ami-0c0ffee1234567890 is already listed in builds[0].artifact_id');
  });

  it.each([
    ['a missing build_time', { build_time: undefined }, 'builds[0].build_time'],
    ['a string build_time', { build_time: '2025-11-18' }, 'builds[0].build_time'],
    ['a missing name', { name: undefined }, 'builds[0].name'],
    ['a non-string custom_data value', { custom_data: { retries: 3 } }, 'builds[0].custom_data.retries'],
    ['a missing artifact_id', { artifact_id: undefined }, 'builds[0].artifact_id'],
  ])('names the field for %s', (_what, over, field) => {
    const msg = inputError(() => parsePackerManifest(manifest([build(over)]), 'm.json'));
    expect(msg).toContain(`m.json: ${field}: `);
  });

  it('rejects a manifest without builds', () => {
    expect(inputError(() => parsePackerManifest(manifest([]), 'm.json'))).toMatch(/^m\.json: builds: /);
    expect(inputError(() => parsePackerManifest('{}', 'm.json'))).toMatch(/^m\.json: builds: /);
  });

  it('reports invalid JSON with the file name', () => {
    expect(inputError(() => parsePackerManifest('{"builds": [', 'm.json'))).toMatch(/^m\.json: invalid JSON: /);
  });
});
