// Meta-tests over the detector registry: every detector is complete and strict.
import { describe, expect, it } from 'vitest';
import { DETECTORS } from '../../src/core/detectors/registry.js';
import { DETECTOR_IDS, type InstanceContext } from '../../src/core/detectors/types.js';
import { parsePolicyText } from '../../src/policy/load.js';
import { FIXTURE_NOW, cleanInventory, driftedInventory, instance, manifest, trailActivity } from '../support/facts.js';

const RECORDS = [
  'ec2-attach-volume',
  'ec2-create-tags-exempt',
  'ec2-modify-instance-attribute-type',
  'ec2-modify-instance-attribute-userdata',
  'ec2ic-send-serial-console-key',
  'ec2ic-send-ssh-public-key',
  'ssm-resume-session',
  'ssm-send-command-instance-ids',
  'ssm-send-command-inventory-allowlisted',
  'ssm-start-session-port-forward',
  'ssm-start-session',
];

describe('the detector registry', () => {
  it.each(DETECTOR_IDS)('%s is registered under its own id, says what it reads, and accepts {}', (id) => {
    const d = DETECTORS[id];
    expect(d.id).toBe(id);
    expect(d.sources.length).toBeGreaterThan(0);
    expect(d.description.length).toBeGreaterThan(10);
    expect(d.options.safeParse({}).success).toBe(true);
  });

  it.each(DETECTOR_IDS)('%s rejects options it does not know', (id) => {
    expect(DETECTORS[id].options.safeParse({ ignroe: ['x'] }).success).toBe(false);
  });

  it('turns a detector on with defaults when its key has no value', () => {
    const { policies, problems } = parsePolicyText('policies:\n  - name: p\n    detect:\n      package-drift:\n', 'p.yaml');
    expect(problems).toEqual([]);
    expect(policies[0]?.detect['package-drift']).toEqual({ ignore: [], maxInventoryAge: 48 * 3_600_000 });
  });

  it('names the field of a misspelt option', () => {
    const { problems } = parsePolicyText('policies:\n  - name: p\n    detect:\n      package-drift: { ignroe: [a] }\n', 'p.yaml');
    expect(problems).toEqual(['p.yaml: policies[0].detect.package-drift: Unrecognized key: "ignroe"']);
  });

  // A judge does not call a detector that finds only in activities for an instance without any.
  it.each(DETECTOR_IDS.filter((id) => DETECTORS[id].onlyInActivities))('%s finds nothing without activities, as it declares onlyInActivities', (id) => {
    const baked = manifest();
    const contexts = [
      { manifest: baked, inventory: cleanInventory(baked) },
      { manifest: baked, inventory: driftedInventory(FIXTURE_NOW - 100 * 3_600_000) },
      { manifest: baked, inventory: null },
      { manifest: null, inventory: null },
    ];
    for (const c of contexts) {
      const ctx: InstanceContext = { instance: instance(), activities: [], ...c, isGuardTag: (k: string) => k.startsWith('pristine:'), now: FIXTURE_NOW };
      expect(DETECTORS[id].evaluate(ctx, DETECTORS[id].options.parse({}))).toEqual([]);
      expect(DETECTORS[id].stableUntil).toBeUndefined();
    }
  });

  // A judge keeps findings from cycle to cycle until what a detector says of `now` (stableUntil).
  it.each(DETECTOR_IDS.filter((id) => !DETECTORS[id].stableUntil))('%s does not read the time, as it declares no stableUntil', (id) => {
    const baked = manifest();
    const activities = RECORDS.map((name) => trailActivity(name));
    const contexts = [
      { manifest: baked, inventory: cleanInventory(baked) },
      { manifest: baked, inventory: driftedInventory(FIXTURE_NOW - 100 * 3_600_000) },
      { manifest: baked, inventory: null },
      { manifest: null, inventory: null },
    ];
    let read = 0;
    for (const c of contexts) {
      const ctx = { instance: instance(), activities, ...c, isGuardTag: (k: string) => k.startsWith('pristine:') } as Omit<InstanceContext, 'now'>;
      Object.defineProperty(ctx, 'now', { get: () => ++read && FIXTURE_NOW });
      DETECTORS[id].evaluate(ctx as InstanceContext, DETECTORS[id].options.parse({}));
    }
    expect(read).toBe(0);
  });
});
