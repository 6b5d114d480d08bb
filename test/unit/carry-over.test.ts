// A daemon's next cycle takes over the previous one's attribution when its facts still attribute the
// same, and attributes only what is new: the verdicts are those a fresh judgement gives.
import { describe, expect, it } from 'vitest';
import { ScopeJudge, type ScopeResult } from '../../src/core/evaluate.js';
import type { Activity, ScopeFacts } from '../../src/core/facts.js';
import { FIXTURE_INSTANCE, FIXTURE_NOW, WEB_POLICY, cleanInventory, driftedInventory, facts, instance, manifest, manifests, policies, tagChange, trailActivity } from '../support/facts.js';

const baked = manifest();
const POLICIES = policies(WEB_POLICY);
const MANIFESTS = manifests(baked);
const OTHER = 'i-0b1b2c3d4e5f60718';

// As the inventory catalog hands them out: an unchanged inventory is the same packages from cycle to cycle.
const INVENTORY = new Map([FIXTURE_INSTANCE, OTHER].map((id) => [id, cleanInventory(baked, id)]));

function cycleFacts(activities: Activity[], over: Partial<ScopeFacts> = {}): ScopeFacts {
  const instances = [instance(), instance({ instanceId: OTHER, name: 'web-2', privateIpAddress: '10.0.1.16', networkInterfaceIds: ['eni-0f1e2d3c4b5a69781'], volumeIds: [] })];
  return facts({ instances, activities, inventory: new Map(INVENTORY), ...over });
}

const verdicts = (r: ScopeResult) => r.results.map((x) => [x.instance.instanceId, x.verdict, x.findings.map((f) => f.key)]);

describe('a cycle carried over from the previous one', () => {
  // A ResumeSession whose StartSession only arrives with the next cycle: tied once its instance is known.
  const resume = trailActivity('ssm-resume-session');
  const start = trailActivity('ssm-start-session');
  const byTags = trailActivity('ssm-send-command-tag-targets');

  it('attributes only the new activities, and judges as a fresh judge does', () => {
    const first = new ScopeJudge(cycleFacts([resume]), POLICIES, MANIFESTS);
    expect(verdicts(first.judgeAll(FIXTURE_NOW))).toEqual([
      [FIXTURE_INSTANCE, 'pristine', []],
      [OTHER, 'pristine', []],
    ]);

    const next = cycleFacts([resume, start, byTags]);
    const carried = new ScopeJudge(next, POLICIES, MANIFESTS, { previous: first });
    const fresh = new ScopeJudge(next, POLICIES, MANIFESTS);

    expect(carried.carried).toBe(true);
    expect(fresh.carried).toBe(false);
    expect(carried.judgeAll(FIXTURE_NOW)).toEqual(fresh.judgeAll(FIXTURE_NOW));
    expect(verdicts(carried.judgeAll(FIXTURE_NOW))[0]).toEqual([FIXTURE_INSTANCE, 'tainted', expect.arrayContaining([`interactive-session:${start.sessionId}`, `remote-command:${byTags.id}`])]);
  });

  it.each<[string, (previous: Activity[]) => ScopeFacts]>([
    ['an activity it took was merged into a new one', (acts) => cycleFacts(acts.map((a) => ({ ...a, via: ['eventbridge' as const] })))],
    ['an activity it took is gone', () => cycleFacts([])],
    ['SSM now says where a command it tied by targets ran', (acts) => cycleFacts(acts, { commandTargets: new Map([[String(byTags.commandTargets?.commandId), [OTHER]]]) })],
  ])('starts afresh when %s, with the verdicts of a fresh judge', (_what, nextFacts) => {
    const taken = [resume, start, byTags];
    const first = new ScopeJudge(cycleFacts(taken), POLICIES, MANIFESTS);
    first.judgeAll(FIXTURE_NOW);
    const next = nextFacts(taken);
    const judge = new ScopeJudge(next, POLICIES, MANIFESTS, { previous: first });
    expect(judge.carried).toBe(false);
    expect(judge.judgeAll(FIXTURE_NOW)).toEqual(new ScopeJudge(next, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
  });

  it('carries over when SSM answers about a command no activity it took names', () => {
    const first = new ScopeJudge(cycleFacts([start]), POLICIES, MANIFESTS);
    const next = cycleFacts([start, byTags], { commandTargets: new Map([[String(byTags.commandTargets?.commandId), [OTHER]]]) });
    const judge = new ScopeJudge(next, POLICIES, MANIFESTS, { previous: first });
    expect(judge.carried).toBe(true);
    expect(judge.judgeAll(FIXTURE_NOW)).toEqual(new ScopeJudge(next, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
    expect(verdicts(judge.judgeAll(FIXTURE_NOW))[1]).toEqual([OTHER, 'tainted', [`remote-command:${byTags.id}`]]);
  });

  it('attributes everything again when a pushed record says a session was on another instance', () => {
    const cycle = new ScopeJudge(cycleFacts([start, resume]), POLICIES, MANIFESTS);
    const elsewhere = trailActivity('ssm-start-session', (r) => {
      r['eventID'] = 'pushed-start-elsewhere';
      r['requestParameters'] = { target: OTHER };
    });
    const pushed = cycle.forPushedEvents();
    const concerned = pushed.add([elsewhere]);
    const all = cycleFacts([start, resume, elsewhere]);
    expect([...concerned]).toEqual([OTHER]);
    expect(pushed.judgeAll(FIXTURE_NOW)).toEqual(new ScopeJudge({ ...all, gaps: [] }, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
  });

  it('attributes everything again when a tag change taken later moves what a command by tags may have reached', () => {
    // A command to Name=web-9, which no instance is called now; OTHER (web-2) was renamed after it, and the
    // record of the renaming arrives late.
    const toWeb9 = trailActivity('ssm-send-command-tag-targets', (r) => {
      (r['requestParameters'] as Record<string, unknown>)['targets'] = [{ key: 'tag:Name', values: ['web-9'] }];
    });
    const renamed = cycleFacts([]).instances.map((i) => (i.instanceId === OTHER ? { ...i, tags: { role: 'web', Name: 'web-2' } } : i));
    const retag = tagChange({ id: 'late-retag', at: toWeb9.at + 60_000, instanceId: OTHER, tags: [{ key: 'Name', value: 'web-2' }] });
    const first = new ScopeJudge(cycleFacts([toWeb9], { instances: renamed }), POLICIES, MANIFESTS);
    expect(verdicts(first.judgeAll(FIXTURE_NOW))[1]).toEqual([OTHER, 'pristine', []]);

    const next = cycleFacts([toWeb9, retag], { instances: renamed });
    const carried = new ScopeJudge(next, POLICIES, MANIFESTS, { previous: first });
    const fresh = new ScopeJudge(next, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW);
    // Taken over (the facts attribute alike), then gone stale with the late record: attributed again.
    expect(carried.notCarried).toBeNull();
    expect(carried.carried).toBe(false);
    expect(carried.judgeAll(FIXTURE_NOW)).toEqual(fresh);
    expect(fresh.results[0]?.verdict).toBe('pristine');
    expect(fresh.results[1]).toMatchObject({ verdict: 'unknown', gaps: [{ source: 'ssm-commands' }] });

    // Pushed between cycles, the same.
    const pushed = first.forPushedEvents();
    pushed.add([retag]);
    expect(pushed.judgeAll(FIXTURE_NOW)).toEqual(new ScopeJudge({ ...next, gaps: [] }, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
    expect(pushed.judgeAll(FIXTURE_NOW).results[1]?.verdict).toBe('unknown');

    // Named after its launch, which came after the command: nothing to attribute again.
    const young = renamed.map((i) => (i.instanceId === OTHER ? { ...i, launchTime: toWeb9.at + 30_000, firstLaunch: toWeb9.at + 30_000 } : i));
    const before = new ScopeJudge(cycleFacts([toWeb9], { instances: young }), POLICIES, MANIFESTS);
    const kept = new ScopeJudge(cycleFacts([toWeb9, retag], { instances: young }), POLICIES, MANIFESTS, { previous: before });
    expect(kept.carried).toBe(true);
    expect(kept.judgeAll(FIXTURE_NOW)).toEqual(new ScopeJudge(cycleFacts([toWeb9, retag], { instances: young }), POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
    expect(verdicts(kept.judgeAll(FIXTURE_NOW))[1]).toEqual([OTHER, 'pristine', []]);
  });

  it('attributes everything again when an update of an association taken later means its run went elsewhere', () => {
    const run = trailActivity('ssm-start-associations-once');
    const update = trailActivity('ssm-update-association', (r) => {
      r['eventID'] = 'late-update';
      r['eventTime'] = new Date(run.at + 60_000).toISOString();
    });
    const targets = new Map([['8f1e2d3c-4b5a-4698-8776-5a4b3c2d1e0f', [{ key: 'InstanceIds', values: [FIXTURE_INSTANCE] }]]]);
    const first = new ScopeJudge(cycleFacts([run], { associationTargets: targets }), POLICIES, MANIFESTS);
    expect(verdicts(first.judgeAll(FIXTURE_NOW))[1]).toEqual([OTHER, 'pristine', []]);
    const next = cycleFacts([run, update], { associationTargets: targets });
    const carried = new ScopeJudge(next, POLICIES, MANIFESTS, { previous: first });
    expect(carried.notCarried).toBeNull();
    expect(carried.judgeAll(FIXTURE_NOW)).toEqual(new ScopeJudge(next, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
    expect(carried.judgeAll(FIXTURE_NOW).results[1]?.gaps[0]?.message).toMatch(/was updated since/);
  });

  it("keeps an untouched instance's findings (the very same) and finds again those of an instance a new activity reached", () => {
    const first = new ScopeJudge(cycleFacts([start]), POLICIES, MANIFESTS);
    const before = first.judgeAll(FIXTURE_NOW);
    const next = cycleFacts([start, byTags], { commandTargets: new Map([[String(byTags.commandTargets?.commandId), [OTHER]]]) });
    const carried = new ScopeJudge(next, POLICIES, MANIFESTS, { previous: first });
    const after = carried.judgeAll(FIXTURE_NOW + 60_000);
    expect(carried.carried).toBe(true);
    expect(after).toEqual(new ScopeJudge(next, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW + 60_000));
    expect(after.results[0]?.findings).toBe(before.results[0]?.findings);
    expect(after.results[1]?.findings).not.toBe(before.results[1]?.findings);
    expect(verdicts(after)[1]).toEqual([OTHER, 'tainted', [`remote-command:${byTags.id}`]]);
    // Shared between results, so nobody may change them.
    expect(Object.isFrozen(after.results[0]?.findings)).toBe(true);
  });

  it('carries over when an instance was tagged otherwise, attributing again what was tied through the instances', () => {
    const taken = [resume, start, byTags];
    const first = new ScopeJudge(cycleFacts(taken), POLICIES, MANIFESTS);
    first.judgeAll(FIXTURE_NOW);
    const next = cycleFacts(taken, { instances: [instance({ tags: { role: 'web', Name: 'web-1', team: 'x' } }), instance({ instanceId: OTHER, tags: { role: 'db' } })] });
    const judge = new ScopeJudge(next, POLICIES, MANIFESTS, { previous: first });
    expect(judge.carried).toBe(true);
    expect(judge.judgeAll(FIXTURE_NOW)).toEqual(new ScopeJudge(next, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
  });

  it("carries over when an instance came or went, and keeps the findings (the very same) of an instance whose activities are the same", () => {
    const first = new ScopeJudge(cycleFacts([start]), POLICIES, MANIFESTS);
    const before = first.judgeAll(FIXTURE_NOW);
    const LATER = 'i-0c1c2c3d4e5f60729';
    const both = cycleFacts([start]).instances;
    const cases: Array<[string, ScopeFacts]> = [
      ['one went', cycleFacts([start], { instances: both.slice(0, 1) })],
      ['one came', cycleFacts([start], { instances: [...both, instance({ instanceId: LATER, name: 'web-3', privateIpAddress: '10.0.1.17', networkInterfaceIds: [], volumeIds: [] })] })],
    ];
    for (const [what, next] of cases) {
      const judge = new ScopeJudge(next, POLICIES, MANIFESTS, { previous: first });
      const after = judge.judgeAll(FIXTURE_NOW);
      expect(judge.carried, what).toBe(true);
      expect(after, what).toEqual(new ScopeJudge(next, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
      expect(after.results[0]?.findings, what).toBe(before.results[0]?.findings);
      expect(verdicts(after)[0], what).toEqual([FIXTURE_INSTANCE, 'tainted', [`interactive-session:${start.sessionId}`]]);
    }
    // An instance a new activity reached, or launched again (its first launch moved), is found again.
    const reached = new ScopeJudge(cycleFacts([start, resume], { instances: both.slice(0, 1) }), POLICIES, MANIFESTS, { previous: first });
    expect(reached.judgeAll(FIXTURE_NOW).results[0]?.findings).not.toBe(before.results[0]?.findings);
    const relaunched = cycleFacts([start], { instances: [instance({ firstLaunch: start.at + 1 })] });
    const again = new ScopeJudge(relaunched, POLICIES, MANIFESTS, { previous: first }).judgeAll(FIXTURE_NOW);
    expect(again).toEqual(new ScopeJudge(relaunched, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
    expect(verdicts(again)[0]).toEqual([FIXTURE_INSTANCE, 'pristine', []]);
  });

  it("keeps judging pushed events against the right instances once the next cycle's judge took other instances in", () => {
    const cycle = new ScopeJudge(cycleFacts([start]), POLICIES, MANIFESTS);
    cycle.judgeAll(FIXTURE_NOW);
    const pushed = cycle.forPushedEvents();
    // The next cycle begins: the first instance is gone, so OTHER moves to the first position.
    const next = new ScopeJudge(cycleFacts([start], { instances: cycleFacts([]).instances.slice(1) }), POLICIES, MANIFESTS, { previous: cycle });
    expect(next.carried).toBe(true);
    // Before the daemon swaps in the new cycle's scopes, an event pushed for OTHER is judged.
    const onOther = trailActivity('ssm-start-session', (r) => {
      r['eventID'] = 'pushed-on-other';
      r['requestParameters'] = { target: OTHER };
      r['responseElements'] = { sessionId: 'mallory-other' };
    });
    const judged = pushed.judgeOnly(pushed.add([onOther]), FIXTURE_NOW);
    expect(judged.map((r) => [r.instance.instanceId, r.verdict])).toEqual([[OTHER, 'tainted']]);
  });

  it('finds again what depends on the time: an inventory that ages past its limit, and the age a stale one is said to be', () => {
    const HOUR = 3_600_000;
    const drifted = driftedInventory();
    const inventoryFacts = (captureTime: number) => {
      const f = cycleFacts([]);
      return { ...f, inventory: new Map([...f.inventory, [FIXTURE_INSTANCE, { ...drifted, captureTime }]]) };
    };
    const captured = FIXTURE_NOW - 47 * HOUR; // the web policy allows 48h
    let previous = new ScopeJudge(inventoryFacts(captured), POLICIES, MANIFESTS);
    const keys = (at: number) => {
      const judge = new ScopeJudge(inventoryFacts(captured), POLICIES, MANIFESTS, { previous });
      expect(judge.carried).toBe(true);
      const got = judge.judgeAll(at);
      expect(got).toEqual(new ScopeJudge(inventoryFacts(captured), POLICIES, MANIFESTS).judgeAll(at));
      previous = judge;
      return got.results[0]?.findings.map((f) => f.summary.replace(/:.*/, '')).sort();
    };
    previous.judgeAll(FIXTURE_NOW);
    expect(keys(FIXTURE_NOW)).toHaveLength(1); // the drift
    expect(keys(captured + 48 * HOUR)).toHaveLength(1); // at the limit, still current
    expect(keys(captured + 48 * HOUR + 1)).toContain('SSM Inventory is 48h old (limit 48h)');
    expect(keys(captured + 48.5 * HOUR - 1)).toContain('SSM Inventory is 48h old (limit 48h)');
    expect(keys(captured + 48.5 * HOUR)).toContain('SSM Inventory is 49h old (limit 48h)');
    // A clock that went back is judged at its time too.
    expect(keys(FIXTURE_NOW)).toHaveLength(1);
  });
});
