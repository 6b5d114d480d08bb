// A region of 100,000 instances, every one drifted: judged, reported as a table and as JSON with
// full diffs, without a RangeError from a spread and without building one string past V8's limit;
// and one session's 200,000 records, tied when its start arrives.
import { describe, expect, it } from 'vitest';
import { ScopeJudge, evaluateScope } from '../../src/core/evaluate.js';
import type { Instance, InventorySnapshot, Package } from '../../src/core/facts.js';
import { jsonChunks } from '../../src/report/json-stream.js';
import { buildReport } from '../../src/report/model.js';
import { renderTable } from '../../src/report/table.js';
import { FIXTURE_INSTANCE, FIXTURE_LAUNCH, FIXTURE_NOW, WEB_POLICY, cleanInventory, facts, instance, inventorySnapshot, manifest, manifests, policies, trailActivity } from '../support/facts.js';

const N = 100_000;
/** V8's longest string: JSON.stringify of a report longer than this throws "Invalid string length". */
const V8_MAX_STRING = 2 ** 29 - 24;

describe('a region of 100,000 instances', () => {
  it('is judged and reported in full: every diff in the JSON, streamed, and a table', { timeout: 120_000 }, () => {
    // Arrange: an image of 40 packages of long names; every instance reports all of them changed (a full
    // diff of 40 lines). Long names make the JSON long with few objects: past V8's longest string.
    const LINES = 40;
    const packages: Package[] = Array.from({ length: LINES }, (_, n) => ({ name: `libreoffice-l10n-and-help-documentation-package-number-${n}`, version: `1.${n}.0-1~bpo12+1`, arch: 'amd64' }));
    const baked = manifest({ packages });
    const changed = inventorySnapshot('shared', FIXTURE_NOW - 3_600_000, packages.map((p) => ({ ...p, version: `${p.version}+deb12u1` })));
    const instances: Instance[] = [];
    const inventory = new Map<string, InventorySnapshot>();
    for (let n = 0; n < N; n++) {
      const id = `i-0${n.toString(16).padStart(16, '0')}`;
      instances.push(instance({ instanceId: id, name: `web-${n}`, tags: { role: 'web', Name: `web-${n}` }, privateIpAddress: `10.${n >> 16}.${(n >> 8) & 255}.${n & 255}`, networkInterfaceIds: [`eni-0${n.toString(16).padStart(16, '0')}`], volumeIds: [], launchTime: FIXTURE_LAUNCH }));
      inventory.set(id, { ...changed, instanceId: id });
    }

    // Act
    const scope = evaluateScope(facts({ instances, inventory }), policies(WEB_POLICY), manifests(baked), FIXTURE_NOW);
    const report = buildReport({ startedAt: FIXTURE_NOW, finishedAt: FIXTURE_NOW, scopes: [{ ...scope, window: { from: FIXTURE_LAUNCH - 86_400_000, to: FIXTURE_NOW }, complete: true }], errors: [], warnings: [] });
    let bytes = 0;
    let changedLines = 0;
    for (const chunk of jsonChunks(report)) {
      bytes += chunk.length;
      for (let at = chunk.indexOf('"from": "1.'); at >= 0; at = chunk.indexOf('"from": "1.', at + 1)) changedLines++;
    }
    const table = renderTable(report);

    // Assert
    expect(report.summary.tainted).toBe(N);
    expect(report.instances[N - 1]?.findings[0]?.evidence['changed']).toHaveLength(LINES);
    expect(changedLines).toBe(N * LINES);
    expect(bytes).toBeGreaterThan(V8_MAX_STRING); // one string could not have held it
    expect(table.split('\n').filter((l) => l.startsWith('i-0')).length).toBe(N);
  });
});

describe('one session of 200,000 records', () => {
  it('ties the records that came before its start once it arrives, without a RangeError from a spread', () => {
    const start = trailActivity('ssm-start-session');
    const resume = trailActivity('ssm-resume-session');
    expect(resume.sessionId).toBe(start.sessionId);
    const resumes = Array.from({ length: 200_000 }, (_, n) => ({ ...resume, id: `resume-${n}` }));
    const baked = manifest();
    const inventory = new Map([[FIXTURE_INSTANCE, cleanInventory(baked)]]);
    // A cycle that has the session's later records only (they wait for its instance), then its start.
    const [webPolicies, index] = [policies(WEB_POLICY), manifests(baked)];
    const first = new ScopeJudge(facts({ activities: resumes, inventory }), webPolicies, index);
    expect(first.judgeAll(FIXTURE_NOW).results[0]).toMatchObject({ verdict: 'pristine' });
    const next = new ScopeJudge(facts({ activities: [...resumes, start], inventory }), webPolicies, index, { previous: first });
    const scope = next.judgeAll(FIXTURE_NOW);
    expect(next.carried).toBe(true);
    expect(scope.results[0]).toMatchObject({ verdict: 'tainted' });
    expect(scope.results[0]?.findings.some((f) => f.key === `interactive-session:${start.sessionId}`)).toBe(true);
  });
});
