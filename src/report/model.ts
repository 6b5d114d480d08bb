import type { Finding } from '../core/detectors/types.js';
import type { InstanceResult, ScopeResult, Verdict } from '../core/evaluate.js';

/**
 * The JSON report, version 1: a contract other tools parse. Fields are only ever added.
 * `complete` is false when any evidence could not be read.
 */
export interface Report {
  version: 1;
  startedAt: string;
  finishedAt: string;
  complete: boolean;
  /** one entry per region: the widest window examined there */
  regions: Array<{ region: string; window: { from: string; to: string } }>;
  /** one entry per (account, region) audited, and whether all its evidence was read */
  scopes: Array<{ accountId: string; region: string; window: { from: string; to: string }; complete: boolean }>;
  summary: { pristine: number; tainted: number; unknown: number; exempt: number; outOfScope: number };
  instances: ReportInstance[];
  errors: ReportError[];
  /** things skipped that did not stop the audit, e.g. a CloudTrail record of an unexpected shape */
  warnings: ReportError[];
}

export interface ReportFinding {
  detector: Finding['detector'];
  /** a stable identity: the same evidence keeps its key from cycle to cycle */
  key: string;
  severity: Finding['severity'];
  effect: Finding['effect'];
  summary: string;
  at: string | null;
  actor: string | null;
  evidence: Record<string, unknown>;
}

export interface ReportInstance {
  instanceId: string;
  region: string;
  accountId: string;
  name: string | null;
  imageId: string;
  launchTime: string;
  /** when the instance was first launched (a stop/start moves launchTime, not this) */
  firstLaunchTime: string;
  autoScalingGroup: string | null;
  policy: string;
  verdict: Verdict;
  /** may be shared with other reports' entries (frozen) */
  findings: readonly ReportFinding[];
  /** evidence that could not be read for this instance (an empty list may be shared: frozen) */
  gaps: ReadonlyArray<{ source: string; message: string }>;
}

export interface ReportError {
  source: string;
  accountId?: string;
  region?: string;
  message: string;
}

const iso = (ms: number) => new Date(ms).toISOString();
/** localeCompare's order, with the collator made once */
const collate = new Intl.Collator().compare;

/**
 * A judge shares an instance's findings (frozen) from cycle to cycle while they hold: so are their
 * report entries, made once.
 */
const reported = new WeakMap<readonly Finding[], readonly ReportFinding[]>();

function reportFindings(findings: readonly Finding[]): readonly ReportFinding[] {
  const known = reported.get(findings);
  if (known) return known;
  const out = findings.map((f) => ({
    detector: f.detector,
    key: f.key,
    severity: f.severity,
    effect: f.effect,
    summary: f.summary,
    at: f.at === null ? null : iso(f.at),
    actor: f.actor,
    evidence: f.evidence,
  }));
  if (Object.isFrozen(findings)) reported.set(findings, Object.freeze(out));
  return out;
}

export function toReportInstance(r: InstanceResult): ReportInstance {
  const i = r.instance;
  const launchTime = iso(i.launchTime);
  return {
    instanceId: i.instanceId,
    region: i.region,
    accountId: i.accountId,
    name: i.name,
    imageId: i.imageId,
    launchTime,
    firstLaunchTime: i.firstLaunch === i.launchTime ? launchTime : iso(i.firstLaunch),
    autoScalingGroup: i.autoScalingGroup,
    policy: r.policy,
    verdict: r.verdict,
    findings: reportFindings(r.findings),
    gaps: r.gaps.length === 0 ? NO_GAPS : r.gaps.map((g) => ({ source: g.source, message: g.message })),
  };
}

/** The entry of an instance without gaps (most): one list, shared. */
const NO_GAPS: ReportInstance['gaps'] = Object.freeze([]);

const PLAIN = /^[a-z0-9-]*$/;

/** Plain strings in code-unit order (`<`). */
const plainOrder = (x: string, y: string): number => (x === y ? 0 : x < y ? -1 : 1);

/**
 * By region, account and instance id, in localeCompare's order. Ids and regions are lower-case
 * letters, digits and dashes, which that order ranks as plain code units do: then they are compared
 * with `<` (a region and an account are mostly the very same string), and the collator is only for
 * anything else.
 */
function sortInstances(instances: ReportInstance[]): void {
  if (instances.every((i) => PLAIN.test(i.region) && PLAIN.test(i.accountId) && PLAIN.test(i.instanceId))) {
    instances.sort((a, b) => plainOrder(a.region, b.region) || plainOrder(a.accountId, b.accountId) || plainOrder(a.instanceId, b.instanceId));
    return;
  }
  instances.sort((a, b) => collate(a.region, b.region) || collate(a.accountId, b.accountId) || collate(a.instanceId, b.instanceId));
}

export function buildReport(input: {
  startedAt: number;
  finishedAt: number;
  scopes: Array<ScopeResult & { window: { from: number; to: number }; complete: boolean }>;
  errors: ReportError[];
  warnings: ReportError[];
}): Report {
  const instances = input.scopes.flatMap((r) => r.results.map(toReportInstance));
  sortInstances(instances);
  const byRegion = new Map<string, { from: number; to: number }>();
  for (const s of input.scopes) {
    const w = byRegion.get(s.region);
    byRegion.set(s.region, w ? { from: Math.min(w.from, s.window.from), to: Math.max(w.to, s.window.to) } : { ...s.window });
  }
  const verdicts: Record<Verdict, number> = { pristine: 0, tainted: 0, unknown: 0 };
  let gapless = true;
  for (let n = 0; n < instances.length; n++) {
    const i = instances[n] as ReportInstance;
    verdicts[i.verdict]++;
    if (i.gaps.length > 0) gapless = false;
  }
  return {
    version: 1,
    startedAt: iso(input.startedAt),
    finishedAt: iso(input.finishedAt),
    complete: input.errors.length === 0 && gapless && input.scopes.every((s) => s.complete),
    regions: [...byRegion].sort(([a], [b]) => a.localeCompare(b)).map(([region, w]) => ({ region, window: { from: iso(w.from), to: iso(w.to) } })),
    scopes: input.scopes.map((s) => ({ accountId: s.accountId, region: s.region, window: { from: iso(s.window.from), to: iso(s.window.to) }, complete: s.complete })),
    summary: {
      pristine: verdicts.pristine,
      tainted: verdicts.tainted,
      unknown: verdicts.unknown,
      exempt: input.scopes.reduce((n, r) => n + r.exempt, 0),
      outOfScope: input.scopes.reduce((n, r) => n + r.outOfScope, 0),
    },
    instances,
    errors: input.errors,
    warnings: input.warnings,
  };
}

export const EXIT = { ok: 0, tainted: 1, badInput: 2, incomplete: 3 } as const;

/**
 * 0: every in-scope instance is pristine. 1: at least one is tainted (this wins: it is certain).
 * 3: nothing tainted, but some evidence could not be read or some instance is `unknown`.
 */
export function exitCodeOf(report: Report): number {
  if (report.summary.tainted > 0) return EXIT.tainted;
  if (!report.complete || report.summary.unknown > 0) return EXIT.incomplete;
  return EXIT.ok;
}
