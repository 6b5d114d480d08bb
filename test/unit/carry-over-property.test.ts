// A daemon's next cycle takes over the previous attribution even when the instances changed (an
// autoscaled fleet changes nearly every cycle): only what was tied through the instances is attributed
// again. Whatever the fleet, the activities and the change, the verdicts, findings and gaps are those a
// fresh judgement of the same facts gives.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { actorFrom } from '../../src/core/actor.js';
import { ScopeJudge } from '../../src/core/evaluate.js';
import type { Activity, Instance, ScopeFacts, Target } from '../../src/core/facts.js';
import { FIXTURE_ACCOUNT, FIXTURE_NOW, REGION, WEB_POLICY, cleanInventory, facts, instance, manifest, manifests, policies } from '../support/facts.js';

const baked = manifest();
const MANIFESTS = manifests(baked);
// The web policy over every instance: which policy judges is not what this is about.
const POLICIES = policies(WEB_POLICY.replace('tags: { role: web }', 'tags: {}'));
const HOUR = 3_600_000;
const START = FIXTURE_NOW - 48 * HOUR;
const ALICE = actorFrom('arn:aws:sts::111122223333:assumed-role/Admin/alice', 'arn:aws:iam::111122223333:role/Admin');
const DEPLOYER = actorFrom('arn:aws:sts::111122223333:assumed-role/Deployer-ci/run', 'arn:aws:iam::111122223333:role/Deployer-ci');

/** A small PRNG: one seed is one fleet, its activities and its changes (fast-check reports the seed). */
function prng(seed: number): { int(min: number, max: number): number; pick<T>(xs: readonly T[]): T; chance(p: number): boolean } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)] as (typeof xs)[number],
    chance: (p) => next() < p,
  };
}

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
const ROLES = ['web', 'db', 'batch'];
const TEAMS = ['a', 'b'];

function fleetMember(r: ReturnType<typeof prng>, n: number): Instance {
  const id = `i-0${hex(n, 16)}`;
  const launch = START + r.int(0, 40) * HOUR;
  return instance({
    instanceId: id,
    name: `host-${n}`,
    launchTime: launch,
    tags: { role: r.pick(ROLES), team: r.pick(TEAMS), Name: `host-${n}`, ...(r.chance(0.05) ? { 'pristine:exempt': 'true' } : {}) },
    privateIpAddress: `10.0.${n >> 8}.${n & 255}`,
    networkInterfaceIds: [`eni-0${hex(n, 16)}`],
    volumeIds: [`vol-0${hex(n, 16)}`],
  });
}

let seq = 0;
function activity(r: ReturnType<typeof prng>, over: Partial<Activity> & Pick<Activity, 'kind' | 'eventName'>): Activity {
  return {
    id: `ev-${++seq}`,
    source: 'cloudtrail',
    eventSource: over.kind === 'interactive-session' ? 'ssm.amazonaws.com' : 'ec2.amazonaws.com',
    at: START + r.int(0, 47) * HOUR + r.int(0, 2) * 1000, // ties in time happen
    region: REGION,
    accountId: FIXTURE_ACCOUNT,
    actor: r.chance(0.3) ? DEPLOYER : ALICE,
    instanceIds: [],
    sessionId: undefined,
    commandTargets: undefined,
    associationIds: undefined,
    refs: undefined,
    tagChanges: undefined,
    detail: {},
    ...over,
  };
}

const decided = new Set<string>();
const TARGETS: Target[][] = [[{ key: 'tag:role', values: ['web'] }], [{ key: 'tag:team', values: ['a'] }], [{ key: 'tag-key', values: ['team'] }], [{ key: 'tag:role', values: ['db', 'batch'] }, { key: 'tag:team', values: ['b'] }]];

/** Activities of every way of tying: by id, session, address, interface, volume, targets, association, and tag changes. */
function activities(r: ReturnType<typeof prng>, fleet: readonly Instance[], count: number, answers: Pick<ScopeFacts, 'commandTargets' | 'unresolvedCommands' | 'associationTargets' | 'endpointVpcs'>): Activity[] {
  const out: Activity[] = [];
  const sessions: string[] = [];
  // Every instance may have gone by now: nothing to act on.
  for (let k = 0; k < count && fleet.length > 0; k++) {
    const i = r.pick(fleet);
    switch (r.int(0, 8)) {
      case 0: {
        const sessionId = `alice-${++seq}`;
        sessions.push(sessionId);
        out.push(activity(r, { kind: 'interactive-session', eventName: 'StartSession', eventSource: 'ssm.amazonaws.com', instanceIds: [i.instanceId], sessionId, detail: { sessionId } }));
        break;
      }
      case 1:
        out.push(activity(r, { kind: 'interactive-session', eventName: 'ResumeSession', eventSource: 'ssm.amazonaws.com', sessionId: sessions.length ? r.pick(sessions) : 'alice-none' }));
        break;
      case 2:
        out.push(activity(r, { kind: 'instance-modified', eventName: 'ModifyInstanceAttribute', instanceIds: [i.instanceId], detail: { attributes: ['userData'] } }));
        break;
      case 3: {
        const commandId = `cmd-${++seq}`;
        const fate = r.int(0, 3);
        if (fate === 0) answers.commandTargets.set(commandId, fleet.filter(() => r.chance(0.5)).map((x) => x.instanceId));
        if (fate === 1) answers.unresolvedCommands.set(commandId, 'ListCommandInvocations failed: ThrottlingException');
        out.push(activity(r, { kind: 'remote-command', eventName: 'SendCommand', eventSource: 'ssm.amazonaws.com', commandTargets: { commandId, targets: r.pick(TARGETS) }, detail: { documentName: 'AWS-RunShellScript', commandId } }));
        break;
      }
      case 4: {
        const endpointId = `eice-${r.int(0, 1)}`;
        if (endpointId === 'eice-0') answers.endpointVpcs.set(endpointId, i.vpcId as string);
        out.push(activity(r, { kind: 'interactive-session', eventName: 'OpenTunnel', eventSource: 'ec2-instance-connect.amazonaws.com', refs: { privateIpAddress: i.privateIpAddress as string, endpointId } }));
        break;
      }
      case 5:
        out.push(
          activity(r, {
            kind: 'instance-modified',
            eventName: r.chance(0.5) ? 'ModifyVolume' : 'ModifyNetworkInterfaceAttribute',
            refs: r.chance(0.5) ? { volumeIds: [...i.volumeIds] } : { networkInterfaceIds: [...i.networkInterfaceIds] },
          }),
        );
        break;
      case 6:
        out.push(activity(r, { kind: 'tag-change', eventName: 'CreateTags', instanceIds: [i.instanceId], tagChanges: [{ op: 'add', key: r.pick(['role', 'team', 'pristine:exempt']), value: 'x' }] }));
        break;
      case 7: {
        const associationId = `assoc-${r.int(0, 2)}`;
        // Decided once: an answer that changes is another attribution altogether (carries() says so).
        if (!decided.has(associationId)) {
          decided.add(associationId);
          if (r.chance(0.8)) answers.associationTargets.set(associationId, r.pick(TARGETS));
        }
        out.push(
          activity(r, {
            kind: 'remote-command',
            eventName: r.chance(0.8) ? 'StartAssociationsOnce' : 'UpdateAssociation',
            eventSource: 'ssm.amazonaws.com',
            ...(r.chance(0.8) ? { associationIds: [associationId] } : { commandTargets: { commandId: associationId, targets: r.pick(TARGETS) } }),
            detail: { associationId },
          }),
        );
        break;
      }
      default:
        // Many instances by id at once: a broadcast.
        out.push(activity(r, { kind: 'instance-modified', eventName: 'StopInstances', instanceIds: fleet.filter(() => r.chance(0.9)).map((x) => x.instanceId) }));
    }
  }
  return out;
}

/** The next cycle's instances: some gone, some new, some retagged, readdressed or relaunched. */
function changed(r: ReturnType<typeof prng>, fleet: readonly Instance[], born: () => Instance): Instance[] {
  const out: Instance[] = [];
  for (const i of fleet) {
    if (r.chance(0.1)) continue;
    if (r.chance(0.1)) out.push({ ...i, tags: { ...i.tags, role: r.pick(ROLES) } });
    else if (r.chance(0.05)) out.push({ ...i, privateIpAddress: null, privateIpAddresses: [], networkInterfaceIds: [], volumeIds: [] });
    else if (r.chance(0.03)) out.push({ ...i, firstLaunch: i.firstLaunch + HOUR, launchTime: i.launchTime + HOUR });
    else out.push(i);
  }
  for (let k = r.int(0, 3); k > 0; k--) out.splice(r.int(0, out.length), 0, born());
  return out;
}

function cycleFacts(instances: Instance[], acts: Activity[], answers: Pick<ScopeFacts, 'commandTargets' | 'unresolvedCommands' | 'associationTargets' | 'endpointVpcs'>): ScopeFacts {
  return facts({
    window: { from: START, to: FIXTURE_NOW },
    instances,
    activities: acts,
    inventory: new Map(instances.map((i) => [i.instanceId, cleanInventory(baked, i.instanceId)])),
    ...answers,
    commandTargets: new Map(answers.commandTargets),
    unresolvedCommands: new Map(answers.unresolvedCommands),
    associationTargets: new Map(answers.associationTargets),
    endpointVpcs: new Map(answers.endpointVpcs),
  });
}

function seedOption(): { seed?: number } {
  const asked = process.env['PROPERTY_SEED'];
  if (asked === 'random') return {};
  return { seed: asked ? Number(asked) : 20261203 };
}

describe('a cycle carried over a change of instances', () => {
  it('judges as a fresh judge of the same facts, cycle after cycle', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 3, max: 90 }), (seed, size) => {
        const r = prng(seed);
        decided.clear();
        let n = 0;
        const born = () => fleetMember(r, n++);
        let fleet = Array.from({ length: size }, born);
        const answers = { commandTargets: new Map(), unresolvedCommands: new Map(), associationTargets: new Map(), endpointVpcs: new Map() };
        let acts = activities(r, fleet, r.int(5, 60), answers);
        let previous = new ScopeJudge(cycleFacts(fleet, acts, answers), POLICIES, MANIFESTS);
        previous.judgeAll(FIXTURE_NOW);
        for (let cycle = 1; cycle <= 3; cycle++) {
          fleet = changed(r, fleet, born);
          // New activities come after the ones taken (the evidence log's order); answers about them too.
          acts = [...acts, ...activities(r, fleet, r.int(0, 8), answers)];
          const next = cycleFacts(fleet, acts, answers);
          const carried = new ScopeJudge(next, POLICIES, MANIFESTS, { previous });
          expect(carried.notCarried).toBeNull();
          expect(carried.judgeAll(FIXTURE_NOW)).toEqual(new ScopeJudge(next, POLICIES, MANIFESTS).judgeAll(FIXTURE_NOW));
          previous = carried;
        }
      }),
      // A fixed seed in CI (the same runs every time); PROPERTY_SEED=random, or a seed fast-check reported, to explore.
      { numRuns: 150, ...seedOption() },
    );
  });
});
