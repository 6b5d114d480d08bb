import type { Finding } from '../core/detectors/types.js';
import type { InstanceResult, RegionResult, Verdict } from '../core/evaluate.js';

/**
 * The JSON report, version 1: a contract other tools parse. Fields are only ever added.
 * `complete` is false when any evidence could not be read.
 */
export interface Report {
  version: 1;
  startedAt: string;
  finishedAt: string;
  complete: boolean;
  regions: Array<{ region: string; window: { from: string; to: string } }>;
  summary: { pristine: number; tainted: number; unknown: number; exempt: number; outOfScope: number };
  instances: ReportInstance[];
  errors: ReportError[];
  /** things skipped that did not stop the audit, e.g. a CloudTrail record of an unexpected shape */
  warnings: ReportError[];
}

export interface ReportFinding {
  detector: Finding['detector'];
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
  accountId: string | null;
  name: string | null;
  imageId: string;
  launchTime: string;
  autoScalingGroup: string | null;
  policy: string;
  verdict: Verdict;
  findings: ReportFinding[];
  /** evidence that could not be read for this instance */
  gaps: Array<{ source: string; message: string }>;
}

export interface ReportError {
  source: string;
  region?: string;
  message: string;
}

const iso = (ms: number) => new Date(ms).toISOString();

function toReportInstance(r: InstanceResult): ReportInstance {
  const i = r.instance;
  return {
    instanceId: i.instanceId,
    region: i.region,
    accountId: i.accountId,
    name: i.name,
    imageId: i.imageId,
    launchTime: iso(i.launchTime),
    autoScalingGroup: i.autoScalingGroup,
    policy: r.policy,
    verdict: r.verdict,
    findings: r.findings.map((f) => ({
      detector: f.detector,
      severity: f.severity,
      effect: f.effect,
      summary: f.summary,
      at: f.at === null ? null : iso(f.at),
      actor: f.actor,
      evidence: f.evidence,
    })),
    gaps: r.gaps.map((g) => ({ source: g.source, message: g.message })),
  };
}

export function buildReport(input: {
  startedAt: number;
  finishedAt: number;
  regions: Array<RegionResult & { window: { from: number; to: number } }>;
  errors: ReportError[];
  warnings: ReportError[];
}): Report {
  const instances = input.regions.flatMap((r) => r.results.map(toReportInstance));
  instances.sort((a, b) => a.region.localeCompare(b.region) || a.instanceId.localeCompare(b.instanceId));
  const count = (v: Verdict) => instances.filter((i) => i.verdict === v).length;
  return {
    version: 1,
    startedAt: iso(input.startedAt),
    finishedAt: iso(input.finishedAt),
    complete: input.errors.length === 0 && instances.every((i) => i.gaps.length === 0),
    regions: input.regions.map((r) => ({ region: r.region, window: { from: iso(r.window.from), to: iso(r.window.to) } })),
    summary: {
      pristine: count('pristine'),
      tainted: count('tainted'),
      unknown: count('unknown'),
      exempt: input.regions.reduce((n, r) => n + r.exempt, 0),
      outOfScope: input.regions.reduce((n, r) => n + r.outOfScope, 0),
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
