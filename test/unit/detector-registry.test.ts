// Meta-tests over the detector registry: every detector is complete and strict.
import { describe, expect, it } from 'vitest';
import { DETECTORS } from '../../src/core/detectors/registry.js';
import { DETECTOR_IDS } from '../../src/core/detectors/types.js';
import { parsePolicyText } from '../../src/policy/load.js';

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
});
