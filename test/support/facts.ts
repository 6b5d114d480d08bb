// Builders for the pure core's inputs: instances, facts, policies and manifests, with fixture records.
import { readFileSync } from 'node:fs';
import { activityFromRecord } from '../../src/core/cloudtrail-record.js';
import type { Activity, Instance, InventorySnapshot, Package, ScopeFacts } from '../../src/core/facts.js';
import { packagesFingerprint } from '../../src/evidence/sources/ssm-inventory/catalog.js';
import { normalizeVersion } from '../../src/core/package-version.js';
import { toPackages } from '../../src/evidence/sources/ssm-inventory/index.js';
import type { Manifest, ManifestIndex } from '../../src/manifest/types.js';
import type { ReportInstance } from '../../src/report/model.js';
import { manifestKey } from '../../src/manifest/types.js';
import { parsePolicyText } from '../../src/policy/load.js';
import type { LoadedPolicy } from '../../src/policy/schema.js';
import { fixturePath, readFixtureJson, readFixtureJsonl } from './fixtures.js';

export const FIXTURE_INSTANCE = 'i-0a1b2c3d4e5f60718';
export const FIXTURE_IMAGE = 'ami-0c0ffee1234567890';
export const REGION = 'us-east-1';
export const FIXTURE_ACCOUNT = '111122223333';
/** The fixtures' instance was launched before every fixture record but the RunInstances noise. */
export const FIXTURE_LAUNCH = Date.parse('2026-11-19T00:00:00Z');
/** "now" for the fixtures: after every record, inventory captured a few hours before */
export const FIXTURE_NOW = Date.parse('2026-11-21T12:00:00Z');

export function instance(over: Partial<Instance> = {}): Instance {
  return {
    instanceId: FIXTURE_INSTANCE,
    region: REGION,
    accountId: '111122223333',
    imageId: FIXTURE_IMAGE,
    launchTime: over.launchTime ?? FIXTURE_LAUNCH,
    firstLaunch: over.launchTime ?? FIXTURE_LAUNCH,
    state: 'running',
    name: 'web-1',
    tags: { role: 'web', Name: 'web-1' },
    privateIpAddress: '10.0.1.15',
    vpcId: 'vpc-0a1b2c3d4e5f60718',
    privateIpAddresses: [over.privateIpAddress ?? '10.0.1.15'],
    networkInterfaceIds: ['eni-0f1e2d3c4b5a69780'],
    volumeIds: ['vol-0fedcba9876543210'],
    autoScalingGroup: null,
    ...over,
  };
}

export function facts(over: Partial<ScopeFacts> = {}): ScopeFacts {
  return {
    accountId: FIXTURE_ACCOUNT,
    region: REGION,
    window: { from: FIXTURE_LAUNCH - 86_400_000, to: FIXTURE_NOW },
    instances: [instance()],
    activities: [],
    inventory: new Map(),
    commandTargets: new Map(),
    unresolvedCommands: new Map(),
    associationTargets: new Map(),
    documentAssociations: new Map(),
    endpointVpcs: new Map(),
    gaps: [],
    ...over,
  };
}

/** A fixture CloudTrail record (cloudtrail/NAME.json) as an Activity; fails the test if it is not one. */
export function trailActivity(name: string, edit?: (record: Record<string, unknown>) => void): Activity {
  const record = readFixtureJson<Record<string, unknown>>(`cloudtrail/${name}.json`);
  edit?.(record);
  const r = activityFromRecord(record);
  if (r.kind !== 'activity') throw new Error(`fixture ${name} is not an activity: ${JSON.stringify(r)}`);
  return r.activity;
}

/**
 * A CreateTags (or DeleteTags) record on one instance as an Activity: the fixture's (by mallory, the
 * fixture instance), with the tags, time, event id and caller given.
 */
export function tagChange(opts: {
  tags: Array<{ key: string; value?: string }>;
  at: number | string;
  id: string;
  op?: 'CreateTags' | 'DeleteTags';
  instanceId?: string;
  by?: Record<string, unknown>;
}): Activity {
  return trailActivity('ec2-create-tags-exempt', (r) => {
    const req = r['requestParameters'] as Record<string, unknown>;
    r['eventName'] = opts.op ?? 'CreateTags';
    r['eventID'] = opts.id;
    r['eventTime'] = typeof opts.at === 'number' ? new Date(opts.at).toISOString() : opts.at;
    if (opts.instanceId) req['resourcesSet'] = { items: [{ resourceId: opts.instanceId }] };
    req['tagSet'] = { items: opts.tags };
    if (opts.by) r['userIdentity'] = opts.by;
  });
}

/** Policies from YAML text, as `pristine` loads them; fails the test on a problem. */
export function policies(yaml: string): LoadedPolicy[] {
  const parsed = parsePolicyText(yaml, 'test.yaml');
  if (parsed.problems.length) throw new Error(parsed.problems.join('\n'));
  return parsed.policies;
}

export const WEB_POLICY = `
policies:
  - name: web-immutable
    scope:
      tags: { role: web }
      exclude: { tags: { "pristine:exempt": "true" } }
    allow:
      principals: ["arn:aws:iam::*:role/Deployer*"]
    detect:
      interactive-session: {}
      remote-command: {}
      instance-modified: {}
      package-drift: { ignore: ["linux-image-*"] }
      guard-tampered: {}
`;

/** The baked image's packages: the real Debian 12 dpkg list of the fixtures. */
export function debianPackages(): Array<{ name: string; version: string; arch: string }> {
  return readFileSync(fixturePath('packages/debian12-base.dpkg.tsv'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [name = '', version = '', arch = ''] = line.split('\t');
      return { name, version, arch };
    });
}

export function manifest(over: Partial<Manifest> = {}): Manifest {
  return {
    imageId: FIXTURE_IMAGE,
    region: REGION,
    name: 'web',
    builtAt: '2026-11-18T10:00:00Z',
    packageManager: 'dpkg',
    packages: debianPackages(),
    file: 'manifests/web.json',
    ...over,
  };
}

export function manifests(...list: Manifest[]): ManifestIndex {
  return new Map(list.map((m) => [manifestKey(m.region, m.imageId), m]));
}

/** An inventory snapshot as the collector makes one without SSM's ContentHash: fingerprinted by its packages. */
export function inventorySnapshot(instanceId: string, captureTime: number | null, packages: Package[]): InventorySnapshot {
  return { instanceId, captureTime, fingerprint: packagesFingerprint(packages), packages };
}

/** Inventory equal to the manifest's packages: a clean instance. */
export function cleanInventory(m: Manifest, instanceId = FIXTURE_INSTANCE, captureTime = FIXTURE_NOW - 3_600_000): InventorySnapshot {
  return inventorySnapshot(
    instanceId,
    captureTime,
    m.packages.map((p) => ({ name: p.name, arch: p.arch, version: normalizeVersion(p.version) })),
  );
}

/** The drifted instance's inventory from the fixtures (SSM Inventory entries, one a line). */
export function driftedInventory(captureTime = FIXTURE_NOW - 3_600_000): InventorySnapshot {
  const rows = readFixtureJsonl<Record<string, string>>('ssm/inventory-drifted.jsonl');
  return inventorySnapshot(FIXTURE_INSTANCE, captureTime, toPackages(rows));
}

/** An instance as the JSON report shows it (what Slack messages are built from). */
export function reportInstance(over: Partial<ReportInstance> = {}): ReportInstance {
  return {
    instanceId: 'i-0abc1234def567890',
    region: 'eu-west-1',
    accountId: '111122223333',
    name: 'web-1',
    imageId: 'ami-0c0ffee1234567890',
    launchTime: '2026-11-20T08:00:00.000Z',
    firstLaunchTime: '2026-11-20T08:00:00.000Z',
    autoScalingGroup: null,
    policy: 'web-immutable',
    verdict: 'tainted',
    findings: [],
    gaps: [],
    ...over,
  };
}
