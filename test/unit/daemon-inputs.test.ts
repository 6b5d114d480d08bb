// The daemon loads the user's files every cycle: unchanged ones keep their objects, so what was worked
// out from them carries over; a change is taken at once.
import { describe, expect, it } from 'vitest';
import type { AuditInputs } from '../../src/audit.js';
import { firstInputs, nextInputs } from '../../src/commands/daemon.js';
import { parseConfigText } from '../../src/config/load.js';
import { WEB_POLICY, manifest, manifests, policies } from '../support/facts.js';

const load = (policyYaml = WEB_POLICY): AuditInputs => ({
  policies: policies(policyYaml),
  manifests: manifests(manifest()),
  regions: ['us-east-1'],
  config: parseConfigText('', 'pristine.yaml'),
  configFile: null,
});

describe('the daemon between cycles', () => {
  it('keeps the objects of files that did not change', () => {
    const first = firstInputs(load());
    expect(nextInputs(first, load()).inputs).toBe(first.inputs);
  });

  it('takes a changed policy, manifest or configuration at once', () => {
    const first = firstInputs(load());
    const policy = load(WEB_POLICY.replace('Deployer*', 'Pipeline*'));
    expect(nextInputs(first, policy).inputs).toBe(policy);
    const image = { ...load(), manifests: manifests(manifest({ builtAt: '2026-11-19T10:00:00Z' })) };
    expect(nextInputs(first, image).inputs).toBe(image);
    const config = { ...load(), config: parseConfigText('concurrency: 2\n', 'pristine.yaml') };
    expect(nextInputs(first, config).inputs).toBe(config);
  });
});
