import pLimit from 'p-limit';
import { resolveAccounts, type ResolvedAccounts } from './accounts/resolve.js';
import { defaultRegion, queueRegion, type ClientPool } from './collect/clients.js';
import { CLOUDTRAIL_RETENTION_MS, collectScope } from './collect/scope.js';
import { loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { ScopeJudge, policyCovers, type ScopeResult } from './core/evaluate.js';
import { scopeKey, type Scope, type ScopeFacts } from './core/facts.js';
import { describeError, InputError } from './errors.js';
import type { Logger } from './logger.js';
import { loadManifests } from './manifest/load.js';
import type { ManifestIndex } from './manifest/types.js';
import { loadPolicies } from './policy/load.js';
import type { LoadedPolicy } from './policy/schema.js';
import { buildReport, type Report, type ReportError } from './report/model.js';
import { type StateStore } from './state/ports.js';

export interface AuditInputs {
  /** every policy, its `scope.regions` resolved: its own, else the config's `regions`, else the SDK's region */
  policies: LoadedPolicy[];
  manifests: ManifestIndex;
  /** the regions some policy covers */
  regions: string[];
  config: Config;
  /** the config file read, or null (every default) */
  configFile: string | null;
}

export interface AuditOptions {
  /** start of the evidence window, epoch ms; null: each scope from its oldest instance's first launch */
  since: number | null;
  logger: Logger;
  /** the evidence log and coverage: the state file, or a store in memory for a one-off audit */
  store: StateStore;
  /** SDK clients per scope and for pristine's own identity, owned by the caller (a daemon keeps them) */
  pool: ClientPool;
  /** how many scopes are read side by side; default: the config's `concurrency` */
  concurrency?: number;
  /** stops the reads early; the report then shows the evidence as incomplete */
  signal?: AbortSignal;
  /** the previous cycle's scopes, by scopeKey (a daemon's): what their facts still hold is not worked out again */
  previous?: ReadonlyMap<string, ScopeAudit>;
  /**
   * Which of the scopes this process audits (a replica's: those it holds a lease on); default: all.
   * The others are another replica's: this audit neither reads nor reports them.
   */
  claimScopes?: (scopes: Scope[]) => Promise<Scope[]>;
}

/** One scope's verdicts, with the facts behind them and whether its evidence was read in full. */
export interface ScopeAudit extends ScopeResult {
  window: { from: number; to: number };
  /** every source was read without an error and proved its span: nothing is replaced in a scope that is not */
  complete: boolean;
  /** its running instances were listed (false: the scope could not be read at all, e.g. its role not assumed) */
  listed: boolean;
  facts: ScopeFacts;
  /** the facts made ready to judge: events pushed before the next cycle are judged with it */
  judge?: ScopeJudge;
}

export interface AuditResult {
  report: Report;
  scopes: ScopeAudit[];
  accounts: ResolvedAccounts | null;
}

/** Each policy's regions: its own, else the config's, else the SDK's region. */
export async function resolvePolicyRegions(
  policies: readonly LoadedPolicy[],
  configRegions: readonly string[] | undefined,
  fallback: () => Promise<string | null> = defaultRegion,
): Promise<LoadedPolicy[]> {
  let regions: string[] | null = configRegions ? [...configRegions] : null;
  const out: LoadedPolicy[] = [];
  for (const p of policies) {
    if (p.scope.regions) {
      out.push(p);
      continue;
    }
    if (!regions) {
      const region = await fallback();
      if (!region) throw new InputError('no AWS region: set AWS_REGION (or a profile region), list `regions` in pristine.yaml, or name scope.regions in the policies');
      regions = [region];
    }
    out.push({ ...p, scope: { ...p.scope, regions } });
  }
  return out;
}

/** Everything the user gave, checked before any AWS call: a bad file stops the audit here (exit 2). */
export async function loadAuditInputs(opts: { policiesDir: string; manifestsDir: string; configFile?: string }): Promise<AuditInputs> {
  const { config, file } = await loadConfig(opts.configFile);
  const policies = await resolvePolicyRegions(await loadPolicies(opts.policiesDir), config.regions);
  const manifests = await loadManifests(opts.manifestsDir);
  const regions = [...new Set(policies.flatMap((p) => p.scope.regions ?? []))].sort();
  return { policies, manifests, regions, config, configFile: file };
}

/** The scopes to audit: every account and region some policy covers. */
export function scopesOf(inputs: Pick<AuditInputs, 'policies' | 'regions'>, accountIds: readonly string[]): Scope[] {
  const out: Scope[] = [];
  for (const accountId of accountIds) {
    for (const region of inputs.regions) {
      if (inputs.policies.some((p) => policyCovers(p, accountId, region))) out.push({ accountId, region });
    }
  }
  return out;
}

/**
 * One audit: find the accounts, read every scope (side by side, within the concurrency), evaluate,
 * and report. Read-only towards AWS; the store gains what was read (the evidence log and coverage).
 */
export async function runAudit(inputs: AuditInputs, opts: AuditOptions): Promise<AuditResult> {
  const startedAt = Date.now();
  const errors: ReportError[] = [];
  const warnings: ReportError[] = [];
  let accounts: ResolvedAccounts | null = null;
  try {
    accounts = await resolveAccounts(inputs.config, { sts: () => opts.pool.sts(), organizations: () => opts.pool.organizations() }, inputs.configFile);
  } catch (err) {
    if (err instanceof InputError) throw err;
    errors.push({ source: 'sts:GetCallerIdentity', message: `pristine's own identity could not be read: ${describeError(err)}` });
  }
  if (accounts) {
    errors.push(...accounts.errors);
    opts.pool.setAccounts(accounts.accounts);
    await opts.store.adoptLegacyRows(accounts.ownAccountId);
  }
  const all = accounts ? scopesOf(inputs, accounts.accounts.map((a) => a.id)) : [];
  const scopes = opts.claimScopes ? await opts.claimScopes(all) : all;
  const limit = pLimit(opts.concurrency ?? inputs.config.concurrency);
  const trailRegion = inputs.config.sources.s3.region ?? inputs.regions[0] ?? 'us-east-1';
  const audited = await Promise.all(
    scopes.map((scope) =>
      limit(async (): Promise<ScopeAudit> => {
        const collected = await collectScope(opts.pool.get(scope), {
          now: startedAt,
          logger: opts.logger,
          since: opts.since,
          store: opts.store,
          sources: inputs.config.sources,
          s3: () => opts.pool.s3(trailRegion),
          signal: opts.signal,
        });
        // Loops, not push(...spread): every unreadable record of a scope is a warning, and they can be more than a call takes.
        for (const e of collected.errors) errors.push(e);
        for (const w of collected.warnings) warnings.push(w);
        const { facts } = collected;
        const judge = new ScopeJudge(facts, inputs.policies, inputs.manifests, { previous: opts.previous?.get(scopeKey(scope))?.judge });
        if (judge.notCarried) opts.logger.debug({ scope: scopeKey(scope), why: judge.notCarried }, 'the previous cycle could not be carried over');
        return {
          ...judge.judgeAll(startedAt),
          judge,
          window: facts.window,
          complete: collected.errors.length === 0 && !facts.gaps.some((g) => !g.instanceIds),
          listed: collected.listed,
          facts,
        };
      }),
    ),
  );
  await opts.store.pruneActivities(startedAt - CLOUDTRAIL_RETENTION_MS);
  audited.sort((a, b) => scopeKey(a).localeCompare(scopeKey(b)));
  return { report: buildReport({ startedAt, finishedAt: Date.now(), scopes: audited, errors, warnings }), scopes: audited, accounts };
}

/** The regions pristine's queues live in (from their URLs), for clients with its own identity. */
export function queueRegionOf(url: string, fallback: string): string {
  return queueRegion(url) ?? fallback;
}
