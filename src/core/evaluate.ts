import type { ManifestIndex } from '../manifest/types.js';
import { manifestKey } from '../manifest/types.js';
import type { LoadedPolicy } from '../policy/schema.js';
import { attribute } from './attribute.js';
import { ALWAYS_ON, DETECTORS } from './detectors/registry.js';
import { DETECTOR_IDS, type DetectorId, type Finding } from './detectors/types.js';
import type { Activity, EvidenceSource, Gap, Instance, ScopeFacts } from './facts.js';
import { anyGlob, compileGlob, type Matcher } from './glob.js';

export type Verdict = 'pristine' | 'tainted' | 'unknown';

export interface InstanceResult {
  instance: Instance;
  policy: string;
  verdict: Verdict;
  findings: Finding[];
  /** evidence that could not be read for this instance: why a verdict is `unknown` */
  gaps: Gap[];
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
  allowed: Matcher;
  detectors: DetectorId[];
  /** options per detector: the policy's, or the defaults for one switched on by pristine itself */
  options: Map<DetectorId, unknown>;
  isGuardTag: (key: string) => boolean;
}

function compile(policy: LoadedPolicy): CompiledPolicy {
  const tagMatchers = (tags: Record<string, string>) => Object.entries(tags).map(([k, v]) => [k, compileGlob(v)] as [string, Matcher]);
  const excludeKeys = new Set(Object.keys(policy.scope.exclude?.tags ?? {}));
  const enabled = (Object.keys(policy.detect) as DetectorId[]).filter((id) => policy.detect[id] !== undefined);
  return {
    policy,
    scope: tagMatchers(policy.scope.tags),
    exclude: policy.scope.exclude ? tagMatchers(policy.scope.exclude.tags) : null,
    allowed: anyGlob(policy.allow.principals),
    detectors: [...new Set([...ALWAYS_ON, ...enabled])],
    options: new Map(DETECTOR_IDS.map((id) => [id, policy.detect[id] ?? DETECTORS[id].options.parse({})])),
    isGuardTag: (key) => key.startsWith('pristine:') || excludeKeys.has(key),
  };
}

function tagsMatch(tags: Record<string, string>, matchers: Array<[string, Matcher]>): boolean {
  return matchers.every(([key, match]) => tags[key] !== undefined && match(tags[key] as string));
}

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
  for(instance: Instance, sources: ReadonlySet<EvidenceSource>): Gap[] {
    const own = this.byInstance.get(instance.instanceId) ?? [];
    return [...this.everyone, ...own].filter((g) => sources.has(g.source) && (g.before === undefined || instance.firstLaunch < g.before));
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
 * `only` limits the verdicts to some instances (a pushed event re-judges the instances it names).
 */
export function evaluateScope(
  facts: ScopeFacts,
  policies: readonly LoadedPolicy[],
  manifests: ManifestIndex,
  now: number,
  only?: ReadonlySet<string>,
): ScopeResult {
  const compiled = policies.filter((p) => policyCovers(p, facts.accountId, facts.region)).map(compile);
  const { byInstance, gaps: attributionGaps } = attribute(facts);
  const gapIndex = new GapIndex([...facts.gaps, ...attributionGaps]);
  const out: ScopeResult = { accountId: facts.accountId, region: facts.region, results: [], outOfScope: 0, exempt: 0 };

  for (const instance of facts.instances) {
    if (only && !only.has(instance.instanceId)) continue;
    const cp = compiled.find((c) => tagsMatch(instance.tags, c.scope));
    if (!cp) {
      out.outOfScope++;
      continue;
    }
    const activities: Activity[] = (byInstance.get(instance.instanceId) ?? []).filter(
      (a) => a.at > instance.firstLaunch && !a.actor.identities.some((id) => cp.allowed(id)),
    );
    const detectors = new Set<DetectorId>(cp.detectors);
    const gaps: Gap[] = [];
    const trailGaps = gapIndex.for(instance, TRAIL_ONLY);
    const beforeWindow = instance.firstLaunch < facts.window.from;
    const scope = { accountId: facts.accountId, region: facts.region };

    if (cp.exclude && tagsMatch(instance.tags, cp.exclude)) {
      const tampered = activities.some((a) => a.tagChanges?.some((t) => t.op === 'add' && cp.isGuardTag(t.key)));
      if (tampered) detectors.add('guard-tampered');
      else if (trailGaps.length > 0 || beforeWindow) {
        gaps.push({
          source: 'cloudtrail',
          ...scope,
          instanceIds: [instance.instanceId],
          message: `exempt by tag, but who set the tag could not be checked: ${trailGaps[0]?.message ?? `activity before ${iso(facts.window.from)} was not examined`}`,
        });
      } else {
        out.exempt++;
        continue;
      }
    }

    const ctx = {
      instance,
      activities,
      manifest: manifests.get(manifestKey(instance.region, instance.imageId)) ?? null,
      inventory: facts.inventory.get(instance.instanceId) ?? null,
      isGuardTag: cp.isGuardTag,
      now,
    };
    const findings: Finding[] = [];
    const sources = new Set<EvidenceSource>();
    for (const id of detectors) {
      const detector = DETECTORS[id];
      for (const s of detector.sources) sources.add(s);
      findings.push(...detector.evaluate(ctx, cp.options.get(id)));
    }
    gaps.push(...gapIndex.for(instance, sources));
    if (beforeWindow && sources.has('cloudtrail')) {
      gaps.push({
        source: 'cloudtrail',
        ...scope,
        instanceIds: [instance.instanceId],
        message: `first launched ${iso(instance.firstLaunch)}, before the evidence window (from ${iso(facts.window.from)}): earlier activity was not examined`,
      });
    }
    findings.sort((a, b) => (a.at ?? Infinity) - (b.at ?? Infinity));
    out.results.push({ instance, policy: cp.policy.name, verdict: verdictOf(findings, gaps), findings, gaps });
  }
  return out;
}
