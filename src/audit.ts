import { createRegionClients, defaultRegion, destroyClients, type AwsCallListener, type RegionClients } from './collect/clients.js';
import { collectRegion } from './collect/region.js';
import { evaluateRegion } from './core/evaluate.js';
import { InputError } from './errors.js';
import type { Logger } from './logger.js';
import { loadManifests } from './manifest/load.js';
import type { ManifestIndex } from './manifest/types.js';
import { loadPolicies } from './policy/load.js';
import type { LoadedPolicy } from './policy/schema.js';
import { buildReport, type Report, type ReportError } from './report/model.js';

export interface AuditOptions {
  policiesDir: string;
  manifestsDir: string;
  /** start of the evidence window, epoch ms; null: each region from its oldest instance's launch */
  since: number | null;
  logger: Logger;
  onAwsCall?: AwsCallListener;
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
export async function loadAuditInputs(opts: Pick<AuditOptions, 'policiesDir' | 'manifestsDir'>): Promise<AuditInputs> {
  const policies = await loadPolicies(opts.policiesDir);
  const manifests = await loadManifests(opts.manifestsDir);
  return { policies, manifests, regions: await regionsOf(policies) };
}

/** One audit: collect each region's facts, evaluate them, and report. Read-only. */
export async function runAudit(inputs: AuditInputs, opts: AuditOptions): Promise<Report> {
  const startedAt = Date.now();
  const clients: RegionClients[] = inputs.regions.map((r) => createRegionClients(r, opts.onAwsCall));
  try {
    const errors: ReportError[] = [];
    const warnings: ReportError[] = [];
    // Regions have their own API limits: read them side by side.
    const regions = await Promise.all(
      clients.map(async (c) => {
        const collected = await collectRegion(c, { since: opts.since, now: startedAt, logger: opts.logger });
        errors.push(...collected.errors);
        warnings.push(...collected.warnings);
        const facts = collected.facts;
        return { ...evaluateRegion(facts, inputs.policies, inputs.manifests, startedAt), window: facts.window };
      }),
    );
    return buildReport({ startedAt, finishedAt: Date.now(), regions, errors, warnings });
  } finally {
    clients.forEach(destroyClients);
  }
}
