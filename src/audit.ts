import { defaultRegion, type RegionClients } from './collect/clients.js';
import { collectRegion, fullWindows } from './collect/region.js';
import { evaluateRegion, type RegionResult } from './core/evaluate.js';
import type { EvidenceMemory } from './state/evidence-memory.js';
import { InputError } from './errors.js';
import type { Logger } from './logger.js';
import { loadManifests } from './manifest/load.js';
import type { ManifestIndex } from './manifest/types.js';
import { loadPolicies } from './policy/load.js';
import type { LoadedPolicy } from './policy/schema.js';
import { buildReport, type Report, type ReportError } from './report/model.js';

export interface AuditOptions {
  /** start of the evidence window, epoch ms; null: each region from its oldest instance's launch */
  since: number | null;
  logger: Logger;
  /** with a state store: read only what is new since the last cycle */
  memory?: EvidenceMemory;
  /** SDK clients per region, owned by the caller (a daemon keeps them across cycles) */
  clientsFor: (region: string) => RegionClients;
  /** stops the reads early; the report then shows the evidence as incomplete */
  signal?: AbortSignal;
}

export interface AuditResult {
  report: Report;
  /** the verdicts behind the report, with whether each region's evidence was read in full */
  regions: Array<RegionResult & { complete: boolean }>;
}

export interface AuditInputs {
  policies: LoadedPolicy[];
  manifests: ManifestIndex;
  regions: string[];
}

/** The regions the policies name; a policy that names none covers the SDK's region. */
export async function regionsOf(policies: readonly LoadedPolicy[], fallback: () => Promise<string | null> = defaultRegion): Promise<string[]> {
  const regions = new Set<string>();
  let needsDefault = false;
  for (const p of policies) {
    if (p.scope.regions) p.scope.regions.forEach((r) => regions.add(r));
    else needsDefault = true;
  }
  if (needsDefault) {
    const region = await fallback();
    if (!region) throw new InputError('no AWS region: set AWS_REGION (or a profile region), or name scope.regions in the policies');
    regions.add(region);
  }
  return [...regions].sort();
}

/** Everything the user gave, checked before any AWS call: a bad file stops the audit here (exit 2). */
export async function loadAuditInputs(opts: { policiesDir: string; manifestsDir: string }): Promise<AuditInputs> {
  const policies = await loadPolicies(opts.policiesDir);
  const manifests = await loadManifests(opts.manifestsDir);
  return { policies, manifests, regions: await regionsOf(policies) };
}

/** One audit: collect each region's facts, evaluate them, and report. Read-only towards AWS. */
export async function runAudit(inputs: AuditInputs, opts: AuditOptions): Promise<AuditResult> {
  const startedAt = Date.now();
  const errors: ReportError[] = [];
  const warnings: ReportError[] = [];
  // Regions have their own API limits: read them side by side.
  const regions = await Promise.all(
    inputs.regions.map(async (region) => {
      const windows = opts.memory ? opts.memory.windows(region, startedAt) : fullWindows(opts.since, startedAt);
      const collected = await collectRegion(opts.clientsFor(region), { now: startedAt, logger: opts.logger, windows, signal: opts.signal });
      errors.push(...collected.errors);
      warnings.push(...collected.warnings);
      const facts = collected.facts;
      opts.memory?.merge(facts, startedAt);
      return {
        ...evaluateRegion(facts, inputs.policies, inputs.manifests, startedAt),
        window: facts.window,
        complete: collected.errors.length === 0,
      };
    }),
  );
  return { report: buildReport({ startedAt, finishedAt: Date.now(), regions, errors, warnings }), regions };
}
