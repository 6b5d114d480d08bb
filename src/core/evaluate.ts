import type { Manifest, ManifestIndex } from '../manifest/types.js';
import { manifestKey } from '../manifest/types.js';
import type { LoadedPolicy } from '../policy/schema.js';
import { isServiceLinked } from './actor.js';
import { Attributor, NO_ACTIVITIES, type Broadcast } from './attribute.js';
import { ALWAYS_ON, DETECTORS } from './detectors/registry.js';
import { DETECTOR_IDS, type DetectorId, type Finding } from './detectors/types.js';
import type { Activity, Actor, EvidenceSource, Gap, Instance, InventorySnapshot, ScopeFacts } from './facts.js';
import { anyGlob, compileGlob, memoized, type Matcher } from './glob.js';

export type Verdict = 'pristine' | 'tainted' | 'unknown';

export interface InstanceResult {
  instance: Instance;
  policy: string;
  verdict: Verdict;
  /** oldest first; may be shared with other judgements' results (never changed) */
  findings: readonly Finding[];
  /** evidence that could not be read for this instance: why a verdict is `unknown` (an empty list may be shared: never changed) */
  gaps: readonly Gap[];
}

export interface ScopeResult {
  accountId: string;
  region: string;
  results: InstanceResult[];
  /** instances no policy's scope selects */
  outOfScope: number;
  /** instances a policy excludes by tag, the exemption verified as set at launch or by an allowed principal */
  exempt: number;
}

/** A policy ready to match: globs compiled once. */
interface CompiledPolicy {
  policy: LoadedPolicy;
  scope: Array<[string, Matcher]>;
  exclude: Array<[string, Matcher]> | null;
  /** whether the policy allows what this actor does (any of its identities matches), asked once per actor */
  allows: (actor: Actor) => boolean;
  /** whether an activity could matter to an instance this policy judges: a caller it does not allow, and a detector concerned */
  mayMatter: (a: Activity) => boolean;
  /** the detectors that run, and the evidence they read: as the policy says, and with guard-tampered added */
  runs: { plain: DetectorRun; tampered: DetectorRun };
  /** options per detector: the policy's, or the defaults for one switched on by pristine itself */
  options: Map<DetectorId, unknown>;
  /** pristine's own tags, the policy's exemption tags and every tag a policy of the scope selects by */
  isGuardTag: (key: string) => boolean;
  /** pristine's own tags and the policy's exemption tags: added after launch, they do not exempt */
  guardsExemption: (key: string) => boolean;
}

interface DetectorRun {
  detectors: readonly DetectorId[];
  sources: ReadonlySet<EvidenceSource>;
}

function detectorRun(detectors: readonly DetectorId[]): DetectorRun {
  return { detectors, sources: new Set(detectors.flatMap((id) => DETECTORS[id].sources)) };
}

function compile(policy: LoadedPolicy, scopeKeys: ReadonlySet<string>): CompiledPolicy {
  // A fleet repeats the same tag values and callers: each glob is tested once per distinct string.
  const tagMatchers = (tags: Record<string, string>) => Object.entries(tags).map(([k, v]) => [k, memoized(compileGlob(v))] as [string, Matcher]);
  const excludeKeys = new Set(Object.keys(policy.scope.exclude?.tags ?? {}));
  const guardsExemption = (key: string) => key.startsWith('pristine:') || excludeKeys.has(key);
  const enabled = (Object.keys(policy.detect) as DetectorId[]).filter((id) => policy.detect[id] !== undefined);
  const allowed = memoized(anyGlob(policy.allow.principals));
  const detectors = [...new Set([...ALWAYS_ON, ...enabled])];
  const byActor = new WeakMap<Actor, boolean>();
  const options = new Map(DETECTOR_IDS.map((id) => [id, policy.detect[id] ?? DETECTORS[id].options.parse({})]));
  const runs = { plain: detectorRun(detectors), tampered: detectorRun([...new Set<DetectorId>([...detectors, 'guard-tampered'])]) };
  const allows = (actor: Actor): boolean => {
    let yes = byActor.get(actor);
    if (yes === undefined) {
      yes = actor.identities.some(allowed);
      byActor.set(actor, yes);
    }
    return yes;
  };
  return {
    policy,
    scope: tagMatchers(policy.scope.tags),
    exclude: policy.scope.exclude ? tagMatchers(policy.scope.exclude.tags) : null,
    allows,
    // Tag changes always may (the exemption check reads them); else a detector that could run must be concerned.
    mayMatter: (a) => {
      if (allows(a.actor)) return false;
      if (a.tagChanges !== undefined) return true;
      // A loop, not some(): a closure over each activity is an object made per call.
      const { detectors } = runs.tampered;
      for (let n = 0; n < detectors.length; n++) {
        const id = detectors[n] as DetectorId;
        if (DETECTORS[id].concerns(a, options.get(id))) return true;
      }
      return false;
    },
    runs,
    options,
    isGuardTag: (key) => guardsExemption(key) || scopeKeys.has(key),
    guardsExemption,
  };
}

function tagsMatch(tags: Record<string, string>, matchers: Array<[string, Matcher]>): boolean {
  for (let n = 0; n < matchers.length; n++) {
    const m = matchers[n] as [string, Matcher];
    const value = tags[m[0]];
    if (value === undefined || !m[1](value)) return false;
  }
  return true;
}

/**
 * A tag change that may move an instance between policies: after its first launch, by a principal the
 * policy does not allow. AWS's own service-linked roles (Auto Scaling, EC2 Fleet tagging what they
 * launched) act on the owner's configuration, and nobody else can use them: not tampering.
 */
function movesScope(a: Activity, instance: Instance, cp: CompiledPolicy): boolean {
  return a.at > instance.firstLaunch && !cp.allows(a.actor) && !isServiceLinked(a.actor);
}

/**
 * Whether a policy may have selected an instance at launch that it does not select now: some of the
 * tags it selects by were changed since by a principal it does not allow, and the others still match.
 */
function mayHaveMatched(instance: Instance, cp: CompiledPolicy, changes: readonly Activity[]): boolean {
  const changed = new Set<string>();
  for (const a of changes) {
    if (!movesScope(a, instance, cp)) continue;
    for (const t of a.tagChanges ?? []) changed.add(t.key);
  }
  return cp.scope.some(([key]) => changed.has(key)) && cp.scope.every(([key, match]) => changed.has(key) || (instance.tags[key] !== undefined && match(instance.tags[key] as string)));
}

const NO_GAPS: readonly Gap[] = Object.freeze([]);
const NO_FINDINGS: readonly Finding[] = Object.freeze([]);

/**
 * An instance's activities and findings are gathered here, then copied into a list of their own
 * length: one grown by push from empty holds room for sixteen more, and every instance's are kept.
 * (Judging is synchronous: nothing else uses these meanwhile.)
 */
const SCRATCH_ACTIVITIES: Activity[] = [];
const SCRATCH_FINDINGS: Finding[] = [];
const ownCopy = (list: Activity[]): readonly Activity[] => {
  if (list.length === 0) return NO_ACTIVITIES;
  const copy = list.slice();
  list.length = 0;
  return copy;
};

/** Gaps by the instance they concern; a gap naming no instance concerns every one. Built once per scope. */
class GapIndex {
  private readonly everyone: Gap[] = [];
  private readonly byInstance = new Map<string, Gap[]>();
  constructor(gaps: readonly Gap[]) {
    for (const g of gaps) {
      if (!g.instanceIds) this.everyone.push(g);
      else
        for (const id of g.instanceIds) {
          const list = this.byInstance.get(id);
          if (list) list.push(g);
          else this.byInstance.set(id, [g]);
        }
    }
  }
  for(instance: Instance, sources: ReadonlySet<EvidenceSource>): readonly Gap[] {
    const own = this.byInstance.get(instance.instanceId);
    if (this.everyone.length === 0 && !own) return NO_GAPS;
    const out: Gap[] = [];
    const concerns = (g: Gap) => sources.has(g.source) && (g.before === undefined || instance.firstLaunch < g.before);
    for (const g of this.everyone) if (concerns(g)) out.push(g);
    for (const g of own ?? []) if (concerns(g)) out.push(g);
    return out;
  }
}

function verdictOf(findings: readonly Finding[], gaps: readonly Gap[]): Verdict {
  if (findings.some((f) => f.effect === 'taint')) return 'tainted';
  if (gaps.length > 0 || findings.length > 0) return 'unknown';
  return 'pristine';
}

const iso = (ms: number) => new Date(ms).toISOString();
const TRAIL_ONLY: ReadonlySet<EvidenceSource> = new Set(['cloudtrail']);

/** Whether a policy judges instances of this scope: its (resolved) regions, and its accounts. */
export function policyCovers(policy: LoadedPolicy, accountId: string, region: string): boolean {
  if (policy.scope.regions && !policy.scope.regions.includes(region)) return false;
  return !policy.scope.accounts || anyGlob(policy.scope.accounts)(accountId);
}

/**
 * What judging an instance found, kept for the next judgement while its facts stay the same: the
 * attribution (the same attributor, the instance's list and the broadcasts unchanged), the policy,
 * the image, its manifest and the inventory, and `now` within what the detectors said (stableUntil).
 * One object an instance (what was found is in it, not in one of its own): a first cycle makes one
 * for each of the fleet's instances, and every object it keeps is copied by V8's young collections.
 */
interface Kept {
  attributor: Attributor;
  changedAt: number;
  broadcastVersion: number;
  policy: LoadedPolicy;
  firstLaunch: number;
  activities: readonly Activity[];
  /** what the detectors found: null until they ran (not when the instance was exempt) */
  findings: readonly Finding[] | null;
  /** what they ran on, set with `findings` */
  run: 'plain' | 'tampered';
  imageId: string;
  manifest: Manifest | null;
  inventory: InventorySnapshot | null;
  /** the `now` they were found at, and until when they stay as found */
  from: number;
  until: number;
}

/** The very same objects in the same order. */
function sameItems<T>(x: readonly T[], y: readonly T[]): boolean {
  if (x.length !== y.length) return false;
  for (let n = 0; n < x.length; n++) if (x[n] !== y[n]) return false;
  return true;
}

const sameInventory = (x: InventorySnapshot | null, y: InventorySnapshot | null): boolean =>
  x === y || (x !== null && y !== null && x.fingerprint === y.fingerprint && x.packages === y.packages && x.captureTime === y.captureTime);

/** How one instance came out: its verdict, or why it has none (exempt by a verified tag, selected by no policy). */
type InstanceOutcome = InstanceResult | 'exempt' | 'out-of-scope';

/**
 * One scope made ready to judge: policies compiled, activities attributed, gaps indexed. Judging an
 * instance then reads only what concerns it, so a cycle costs what its distinct facts cost, and an
 * event pushed between cycles re-judges the instances it names alone (`add`, then `judgeOnly`).
 */
export class ScopeJudge {
  private readonly compiled: CompiledPolicy[];
  /** the tags the scope's policies select instances by */
  private readonly scopeKeys: ReadonlySet<string>;
  private attributor: Attributor;
  private gapIndex: GapIndex;
  private readonly scope: { accountId: string; region: string };
  /** whether this judge's attribution was carried over from the previous cycle's */
  readonly carried: boolean;
  /** why it was not, when there was a previous cycle */
  readonly notCarried: string | null = null;
  /** by instance id: what its last judgement found (carried over with the attribution) */
  private kept = new Map<string, Kept>();

  /**
   * `previous`: the same scope's judge of the cycle before. When the facts attribute as they did
   * then (see Attributor.carries), its attribution is taken over and only the new activities are
   * attributed; else everything is, as on a first cycle. The verdicts are the same either way.
   */
  constructor(
    private readonly facts: ScopeFacts,
    private readonly policies: readonly LoadedPolicy[],
    private readonly manifests: ManifestIndex,
    options: { attributor?: Attributor; previous?: ScopeJudge } = {},
  ) {
    const covering = policies.filter((p) => policyCovers(p, facts.accountId, facts.region));
    // A tag any policy selects by decides which policy judges an instance, or whether one does: changed
    // after launch by a principal the policy does not allow, it is tampering, like an exemption tag.
    const scopeKeys = new Set(covering.flatMap((p) => Object.keys(p.scope.tags)));
    this.compiled = covering.map((p) => compile(p, scopeKeys));
    this.scopeKeys = scopeKeys;
    const prev = options.previous;
    const carry = !prev ? null : prev.policies !== policies ? { why: 'the policies changed' } : prev.attributor.carries(facts);
    if (carry && 'why' in carry) this.notCarried = carry.why;
    if (options.attributor) this.attributor = options.attributor;
    else if (prev && carry && 'fresh' in carry) {
      this.attributor = prev.attributor;
      if (carry.reindex) this.attributor.reindex(facts);
      else this.attributor.rebase(facts);
      this.attributor.add(carry.fresh);
    } else {
      const compiled = this.compiled;
      // What no policy of the scope could find anything in (an allowed caller, a document every policy
      // ignores) is attributed, and kept in no instance's list.
      this.attributor = Attributor.of(facts, (a) => {
        for (let n = 0; n < compiled.length; n++) if ((compiled[n] as CompiledPolicy).mayMatter(a)) return false;
        return true;
      });
    }
    if (this.attributor.stale) this.attributor = this.attributor.again();
    this.carried = !options.attributor && this.attributor === prev?.attributor;
    if (this.carried && prev && !(carry && 'fresh' in carry && carry.reindex)) this.kept = prev.kept;
    else if (prev && !options.attributor && prev.scope.accountId === facts.accountId && prev.scope.region === facts.region) {
      // Other instances (carried over them, or attributed afresh): what an instance was found to have
      // stays while its activities are the very same (see judge). Only the instances still here.
      for (const i of facts.instances) {
        const k = prev.kept.get(i.instanceId);
        if (k) this.kept.set(i.instanceId, k);
      }
    }
    this.gapIndex = new GapIndex([...facts.gaps, ...this.attributor.gaps]);
    this.scope = { accountId: facts.accountId, region: facts.region };
  }

  /**
   * The judge of events pushed after this cycle: the same attribution, without the cycle's gaps (a
   * pushed event can only taint; whether the rest of the evidence was read is the next cycle's say).
   */
  forPushedEvents(): ScopeJudge {
    return new ScopeJudge({ ...this.facts, gaps: [] }, this.policies, this.manifests, { attributor: this.attributor });
  }

  /** Takes in activities that arrived after the cycle; returns the ids of the instances they concern. */
  add(activities: readonly Activity[]): Set<string> {
    const before = this.attributor.gaps.length;
    const concerned = this.attributor.add(activities);
    if (this.attributor.stale) this.attributor = this.attributor.again();
    if (this.attributor.gaps.length !== before) this.gapIndex = new GapIndex([...this.facts.gaps, ...this.attributor.gaps]);
    return concerned;
  }

  private judge(instance: Instance, now: number): InstanceOutcome {
    const { facts, scope, attributor } = this;
    const id = instance.instanceId;
    const changes = attributor.tagChangesOf(id);
    let cp = this.compiled.find((c) => tagsMatch(instance.tags, c.scope));
    // Retagged out of every policy's scope: judged by the first policy it may have been in at launch.
    if (!cp && changes.length > 0) cp = this.compiled.find((c) => mayHaveMatched(instance, c, changes));
    if (!cp) return 'out-of-scope';
    const policy = cp;
    const { scopeKeys } = this;
    const retagged = changes.length > 0 && changes.some((a) => movesScope(a, instance, policy) && a.tagChanges?.some((t) => scopeKeys.has(t.key)));
    let kept = this.kept.get(id);
    const changedAt = attributor.changedAt(id);
    if (
      !kept ||
      kept.attributor !== attributor ||
      kept.changedAt !== changedAt ||
      kept.broadcastVersion !== attributor.broadcastVersion ||
      kept.policy !== cp.policy ||
      kept.firstLaunch !== instance.firstLaunch
    ) {
      const activities = this.activitiesOf(instance, cp);
      // Another attribution, or something new somewhere: the same activities keep what was found in them.
      const same = kept !== undefined && kept.policy === cp.policy && kept.firstLaunch === instance.firstLaunch && sameItems(kept.activities, activities) ? kept : null;
      kept = {
        attributor,
        changedAt,
        broadcastVersion: attributor.broadcastVersion,
        policy: cp.policy,
        firstLaunch: instance.firstLaunch,
        activities: same ? same.activities : activities,
        findings: same ? same.findings : null,
        run: same ? same.run : 'plain',
        imageId: same ? same.imageId : instance.imageId,
        manifest: same ? same.manifest : null,
        inventory: same ? same.inventory : null,
        from: same ? same.from : 0,
        until: same ? same.until : 0,
      };
      this.kept.set(id, kept);
    }
    const { activities } = kept;
    // A tag a policy selects by, changed after launch: tampering (it chooses the policy, or whether any
    // judges), found whether or not the policy asks for guard-tampered, as with an exemption tag.
    let run = retagged ? cp.runs.tampered : cp.runs.plain;
    // Most instances have none: they share one empty list.
    let gaps: Gap[] | null = null;
    const beforeWindow = instance.firstLaunch < facts.window.from;

    if (cp.exclude && tagsMatch(instance.tags, cp.exclude)) {
      const trailGaps = this.gapIndex.for(instance, TRAIL_ONLY);
      const tampered = activities.some((a) => !isServiceLinked(a.actor) && a.tagChanges?.some((t) => t.op === 'add' && cp.guardsExemption(t.key)));
      if (tampered) run = cp.runs.tampered;
      else if (trailGaps.length > 0 || beforeWindow) {
        gaps = [{
          source: 'cloudtrail',
          ...scope,
          instanceIds: [instance.instanceId],
          message: `exempt by tag, but who set the tag could not be checked: ${trailGaps[0]?.message ?? `activity before ${iso(facts.window.from)} was not examined`}`,
        }];
      } else return 'exempt';
    }

    const findings = this.findingsOf(instance, cp, run, kept, now);
    const { sources } = run;
    const more = this.gapIndex.for(instance, sources);
    if (more.length > 0) {
      gaps ??= [];
      for (let n = 0; n < more.length; n++) gaps.push(more[n] as Gap);
    }
    if (beforeWindow && sources.has('cloudtrail')) {
      (gaps ??= []).push({
        source: 'cloudtrail',
        ...scope,
        instanceIds: [instance.instanceId],
        message: `first launched ${iso(instance.firstLaunch)}, before the evidence window (from ${iso(facts.window.from)}): earlier activity was not examined`,
      });
    }
    const all = gaps ?? NO_GAPS;
    return { instance, policy: cp.policy.name, verdict: verdictOf(findings, all), findings, gaps: all };
  }

  /** The detectors' findings, oldest first: as kept when their facts are the same, else found again (and kept). */
  private findingsOf(instance: Instance, cp: CompiledPolicy, run: DetectorRun, kept: Kept, now: number): readonly Finding[] {
    const which = run === cp.runs.plain ? 'plain' : 'tampered';
    const manifest = this.manifests.get(manifestKey(instance.region, instance.imageId)) ?? null;
    const inventory = this.facts.inventory.get(instance.instanceId) ?? null;
    if (
      kept.findings !== null &&
      kept.run === which &&
      kept.imageId === instance.imageId &&
      kept.manifest === manifest &&
      sameInventory(kept.inventory, inventory) &&
      kept.from <= now &&
      now <= kept.until
    ) {
      return kept.findings;
    }
    const ctx = { instance, activities: kept.activities, manifest, inventory, isGuardTag: cp.isGuardTag, now };
    const findings = SCRATCH_FINDINGS;
    findings.length = 0;
    let until = Infinity;
    const { detectors } = run;
    for (let n = 0; n < detectors.length; n++) {
      const id = detectors[n] as DetectorId;
      const detector = DETECTORS[id];
      if (detector.onlyInActivities && kept.activities.length === 0) continue;
      const options = cp.options.get(id);
      const found = detector.evaluate(ctx, options);
      for (let f = 0; f < found.length; f++) findings.push(found[f] as Finding);
      if (detector.stableUntil) until = Math.min(until, detector.stableUntil(ctx, options));
    }
    const out = findings.length === 0 ? NO_FINDINGS : Object.freeze(findings.slice().sort((a, b) => (a.at ?? Infinity) - (b.at ?? Infinity)));
    findings.length = 0;
    kept.findings = out;
    kept.run = which;
    kept.imageId = instance.imageId;
    kept.manifest = manifest;
    kept.inventory = inventory;
    kept.from = now;
    kept.until = until;
    return out;
  }

  /**
   * Per policy, the broadcasts holding an activity by a principal the policy does not allow, with those
   * activities: worked out once per policy (again when a broadcast changes), not per instance. A
   * fleet-wide deploy by an allowed pipeline costs an instance nothing.
   */
  private readonly relevant = new Map<CompiledPolicy, { of: Attributor; version: number; list: Array<{ b: Broadcast; activities: Activity[] }> }>();
  private broadcastsFor(cp: CompiledPolicy): Array<{ b: Broadcast; activities: Activity[] }> {
    const version = this.attributor.broadcastVersion;
    let known = this.relevant.get(cp);
    if (!known || known.of !== this.attributor || known.version !== version) {
      const list = this.attributor.broadcasts.flatMap((b) => {
        const activities = b.activities.filter((a) => !cp.allows(a.actor));
        return activities.length > 0 ? [{ b, activities }] : [];
      });
      known = { of: this.attributor, version, list };
      this.relevant.set(cp, known);
    }
    return known.list;
  }

  /** The activities on an instance after its first launch, by principals its policy does not allow, oldest first. */
  private activitiesOf(instance: Instance, cp: CompiledPolicy): readonly Activity[] {
    const id = instance.instanceId;
    const { firstLaunch } = instance;
    const out = SCRATCH_ACTIVITIES;
    out.length = 0;
    const own = this.attributor.byInstance.get(id);
    if (own) {
      for (let n = 0; n < own.length; n++) {
        const a = own[n] as Activity;
        if (a.at > firstLaunch && !cp.allows(a.actor)) out.push(a);
      }
    }
    const relevant = this.broadcastsFor(cp);
    // Many instances have none: they share one empty list.
    if (relevant.length === 0) return ownCopy(out);
    const position = this.attributor.index.byId.get(id) ?? -1;
    let merged = false;
    for (let r = 0; r < relevant.length; r++) {
      const { b, activities } = relevant[r] as { b: Broadcast; activities: Activity[] };
      if (b.members[position] !== 1) continue;
      for (let n = 0; n < activities.length; n++) {
        const a = activities[n] as Activity;
        if (a.at <= firstLaunch) continue;
        out.push(a);
        merged = true;
      }
    }
    if (merged) out.sort((x, y) => this.attributor.order(x, y));
    return ownCopy(out);
  }

  /** The verdicts of some instances (those judged, not exempt or out of scope), in the scope's order. */
  judgeOnly(instanceIds: Iterable<string>, now: number): InstanceResult[] {
    // The attribution's instances: a judge of pushed events shares it with the next cycle's judge, which
    // may have taken other instances into it (see Attributor.reindex) before this one is replaced.
    const { index } = this.attributor;
    const positions: number[] = [];
    for (const id of instanceIds) {
      const n = index.byId.get(id);
      if (n !== undefined) positions.push(n);
    }
    const out: InstanceResult[] = [];
    for (const n of positions.sort((a, b) => a - b)) {
      const o = this.judge(index.instances[n] as Instance, now);
      if (o !== 'exempt' && o !== 'out-of-scope') out.push(o);
    }
    return out;
  }

  /** Every instance of the scope, in the scope's order. */
  judgeAll(now: number): ScopeResult {
    const out: ScopeResult = { accountId: this.facts.accountId, region: this.facts.region, results: [], outOfScope: 0, exempt: 0 };
    for (const instance of this.facts.instances) {
      const o = this.judge(instance, now);
      if (o === 'exempt') out.exempt++;
      else if (o === 'out-of-scope') out.outOfScope++;
      else out.results.push(o);
    }
    return out;
  }
}

/**
 * Facts of one scope (account and region) to a verdict per in-scope instance. Pure: no I/O, no
 * clock (`now` is given).
 *
 * - The first policy (file-name order, then file order) whose scope matches an instance judges it.
 * - Only activity after the instance's first launch counts (a stop/start does not reset it);
 *   activity by the policy's allowed principals never taints.
 * - An exemption tag set after the first launch by anyone else does not exempt: the instance stays in
 *   scope, with a guard-tampered finding. One that cannot be checked (CloudTrail unreadable) does not exempt either.
 * - Evidence a detector needs that could not be read makes the verdict `unknown`, never `pristine`.
 *
 * (A ScopeJudge does the same a piece at a time: some instances, or events pushed afterwards.)
 */
export function evaluateScope(facts: ScopeFacts, policies: readonly LoadedPolicy[], manifests: ManifestIndex, now: number): ScopeResult {
  return new ScopeJudge(facts, policies, manifests).judgeAll(now);
}
