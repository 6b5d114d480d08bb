import { ownIdentity } from './accounts/resolve.js';
import { runAudit, type AuditInputs, type AuditResult, type ScopeAudit } from './audit.js';
import type { ClientPool } from './collect/clients.js';
import { scopeKey, type Scope } from './core/facts.js';
import { DECISION_DUE, decisionReplies, type DecisionDue, type DecisionReply } from './core/decision-replies.js';
import { plan as makePlan, type Decision, type Plan, type PriorReplacement } from './core/plan.js';
import { describeError } from './errors.js';
import type { SlackOutcome } from './daemon/metrics.js';
import type { Logger } from './logger.js';
import { drainOutbox, type DrainResult } from './notify/outbox.js';
import type { PlannedAction, Transport } from './notify/types.js';
import type { LoadedPolicy } from './policy/schema.js';
import { exitCodeOf, type Report, type ReportInstance } from './report/model.js';
import { readPlacement, type InstancePlacement } from './respond/placement.js';
import { Replacer, candidateFor, type Candidate } from './respond/replacement.js';
import { drainQueues } from './evidence/queues.js';
import { LeaseLostError, type StateStore, type ReplacementRow } from './state/ports.js';
import { verdictInputOf } from './state/records.js';
import { SqliteStateStore } from './state/sqlite/store.js';

/** More newly tainted instances than this in one cycle, per channel: one digest instead of a message each. */
export const DIGEST_ABOVE = 5;

export interface CycleHooks {
  onReplacement?: (outcome: 'started' | 'done' | 'rolled-back' | 'failed' | 'held') => void;
  onSlack?: (outcome: SlackOutcome) => void;
}

export interface CycleOptions {
  inputs: AuditInputs;
  store: StateStore;
  pool: ClientPool;
  /** where notices go: Slack, or the terminal when no token is set */
  transport: Transport;
  logger: Logger;
  /** print the plan and change nothing: no AWS mutation, no Slack, no state written */
  dryRun: boolean;
  since: number | null;
  /** read what waits on the event queues before the audit (`pristine run`; the daemon consumes them continuously) */
  drainQueues?: boolean;
  concurrency?: number;
  signal?: AbortSignal;
  hooks?: CycleHooks;
  /** the previous cycle's scopes (a daemon's), carried over where their facts still hold */
  previous?: ReadonlyMap<string, ScopeAudit>;
  /**
   * A replica's share of the scopes, under leases: which to audit, and whether it still holds one once
   * audited (a scope whose lease passed to another replica meanwhile is that replica's to decide).
   */
  scopeLeases?: { claim(scopes: Scope[]): Promise<Scope[]>; holds(scope: Scope): Promise<boolean> };
  /** who this process is in the leases it takes (the outbox's); default: one name per process */
  owner?: string;
}

export interface CycleResult {
  report: Report;
  /** `replacements`: those this cycle started (they run in the background, see ReplacementWorker) */
  /** each scope's verdicts and the facts behind them (the daemon judges pushed events against them) */
  scopes: ScopeAudit[];
  plan: Plan;
  exitCode: number;
  replacements: ReplacementRow[];
  outbox: DrainResult | null;
  /**
   * every account the audit resolved, whichever replica audits its scopes (the event queues take them
   * all in); null when they could not all be found this time
   */
  accountIds: string[] | null;
}

/**
 * Rows an older pristine wrote have no account: they are pristine's own. Adopted before anything
 * drives a replacement they hold (one STS call, only while such rows exist).
 */
export async function adoptLegacy(store: StateStore, pool: ClientPool): Promise<void> {
  if (!(await store.hasLegacyRows())) return;
  await store.adoptLegacyRows((await ownIdentity(pool.sts())).accountId);
}

export function channelOf(policy: LoadedPolicy | undefined): string | null {
  return policy?.respond.notify?.slack?.channel ?? null;
}

/**
 * One cycle: resume replacements left in flight, audit (reading only what is new since the last
 * cycle), record verdicts, plan, then alert and replace as each policy's `respond` says, and send
 * what waits in the outbox. With `dryRun` it stops after planning: this is the one place that decides
 * whether anything changes.
 */
export async function runCycle(opts: CycleOptions): Promise<CycleResult> {
  const { store, logger, inputs } = opts;
  const startedAt = Date.now();
  const cycleId = opts.dryRun ? null : await store.startCycle(startedAt);
  const policies = new Map(inputs.policies.map((p) => [p.name, p]));
  const replacements: ReplacementRow[] = [];
  const replacer = new Replacer({ store, clientsFor: opts.pool.get, logger, onOutcome: opts.hooks?.onReplacement });

  try {
    if (!opts.dryRun) {
      await adoptLegacy(store, opts.pool);
      if (opts.drainQueues && inputs.config.sources.queues.length > 0) {
        await drainQueues({ inputs, store, pool: opts.pool, logger, signal: opts.signal });
      }
    }

    // A dry run writes nothing: its evidence log lives in memory, read afresh from AWS.
    const evidence = opts.dryRun ? SqliteStateStore.open(':memory:') : store;
    const { report, scopes, accounts } = await runAudit(inputs, {
      since: opts.since,
      logger,
      store: evidence,
      pool: opts.pool,
      concurrency: opts.concurrency,
      signal: opts.signal,
      // A dry run's evidence log is read afresh into memory: nothing of a previous cycle matches it.
      previous: opts.dryRun ? undefined : opts.previous,
      claimScopes: opts.scopeLeases?.claim.bind(opts.scopeLeases),
    }).finally(async () => {
      if (evidence !== store) await evidence.close();
    });
    if (opts.signal?.aborted) {
      // Stopping: what was read is partial. Record nothing, decide nothing; the next start begins afresh.
      if (cycleId !== null) await store.finishCycle(cycleId, 'interrupted', 3, { interrupted: true });
      return { report, scopes, plan: { decisions: [], replace: [], breakers: [] }, exitCode: 3, replacements, outbox: null, accountIds: accountIdsOf(accounts) };
    }
    // A scope whose lease passed to another replica during the audit is that replica's: nothing of it is recorded here.
    const lost = new Set<string>();
    if (opts.scopeLeases) {
      for (const s of scopes) {
        if (await opts.scopeLeases.holds(s)) continue;
        lost.add(scopeKey(s));
        logger.warn({ scope: scopeKey(s) }, 'the lease on this scope passed to another replica during the audit: its verdicts are left to that replica');
      }
    }
    const results = scopes.filter((r) => !lost.has(scopeKey(r))).flatMap((r) => r.results.map((result) => ({ result, regionComplete: r.complete })));
    const reported = new Map(report.instances.map((i) => [i.instanceId, i]));

    const verdicts = results.map(({ result }) => verdictInputOf(result));

    // Where enforce candidates serve, read only for them.
    const prior = new Map<string, PriorReplacement>();
    const candidates = results.filter(({ result }) => result.verdict === 'tainted' && policies.get(result.policy)?.respond.mode === 'enforce');
    for (const { result } of candidates) {
      const r = await store.replacementOf(result.instance.instanceId);
      if (r) prior.set(result.instance.instanceId, { status: r.status, step: r.step, policy: r.policy, groups: groupsOf(r) });
    }
    for (const r of await store.inFlight()) if (!prior.has(r.oldInstanceId)) prior.set(r.oldInstanceId, { status: r.status, step: r.step, policy: r.policy, groups: groupsOf(r) });
    const placement = new Map<string, InstancePlacement>();
    const placementFailed = new Set<string>();
    for (const { accountId, region } of scopes) {
      const wanted = candidates
        .filter(({ result }) => result.instance.region === region && result.instance.accountId === accountId && !prior.has(result.instance.instanceId))
        .map(({ result }) => result.instance);
      if (wanted.length === 0) continue;
      try {
        for (const [id, p] of await readPlacement(opts.pool.get({ accountId, region }), wanted)) placement.set(id, p);
      } catch (err) {
        logger.warn({ scope: scopeKey({ accountId, region }), err: describeError(err) }, 'target groups or Auto Scaling groups could not be read');
        wanted.forEach((i) => placementFailed.add(i.instanceId));
      }
    }

    const planInput = {
      now: startedAt,
      results,
      policies,
      prior,
      placement,
      dryRun: opts.dryRun,
    };

    // Checks that need AWS but change nothing (termination protection, the group's image). An instance
    // they rule out gives its place under maxPerCycle and maxUnavailable to the next one: plan again.
    const byId = new Map(results.map(({ result }) => [result.instance.instanceId, result]));
    const candidateOf = async (d: Decision): Promise<Candidate> => {
      const result = byId.get(d.instanceId);
      const policy = policies.get(d.policy);
      if (!result || !policy) throw new Error(`no verdict for ${d.instanceId}`);
      return candidateFor(result.instance, policy, (await store.instance(d.instanceId))?.alertOutboxId ?? null, placement.get(d.instanceId));
    };
    const blocked = new Map<string, string>([...placementFailed].map((id) => [id, 'its target groups or Auto Scaling group could not be read'] as const));
    const checked = new Set<string>();
    let plan = makePlan({ ...planInput, blocked });
    for (;;) {
      const unchecked = plan.decisions.filter((d) => (d.action.kind === 'replace' || d.action.kind === 'dry-run') && !checked.has(d.instanceId));
      if (unchecked.length === 0) break;
      for (const d of unchecked) {
        checked.add(d.instanceId);
        try {
          const reason = await replacer.preflight(await candidateOf(d));
          if (reason) blocked.set(d.instanceId, reason);
        } catch (err) {
          blocked.set(d.instanceId, `could not check the instance before replacing it: ${describeError(err)}`);
        }
      }
      plan = makePlan({ ...planInput, blocked });
    }

    if (opts.dryRun) return { report, scopes, plan, exitCode: exitCodeOf(report), replacements, outbox: null, accountIds: accountIdsOf(accounts) };

    // A scope whose instances could not be listed (its role not assumed) is not audited: what it held
    // stays in `pristine status` as last seen, and its breaker stays as it was.
    const audited = scopes.filter((r) => !lost.has(scopeKey(r)) && r.listed);
    // Alerts raised between cycles that said this cycle decides: what it decided goes in their threads.
    const due = await decisionsDue(store);
    const owed = decisionReplies([...due.values()], plan.decisions, new Map(results.map(({ result }) => [result.instance.instanceId, result])), audited, startedAt);

    // The verdicts and what is news in them (taints never alerted, new evidence on ones that were) in one
    // transaction: a crash cannot record a finding and lose its message. Alerts first, so replacement
    // progress threads under them.
    await store.transaction(async () => {
      // Fenced: a scope whose lease passed to another replica since the check above records nothing (the
      // cycle fails, and the next one decides again).
      for (const s of opts.scopeLeases ? scopes : []) {
        if (lost.has(scopeKey(s)) || (await opts.scopeLeases?.holds(s))) continue;
        throw new LeaseLostError(`the lease on ${scopeKey(s)} passed to another replica during the cycle`);
      }
      const { newlyTainted, newFindings } = await store.recordVerdicts(startedAt, verdicts, audited);
      await enqueueBreakers(store, policies, plan.breakers, audited, startedAt);
      await enqueueAlerts(store, policies, new Map(plan.decisions.map((d) => [d.instanceId, d.action])), newlyTainted, newFindings, reported, startedAt);
      await replyDecisions(store, owed.filter((r) => r.kind === 'reply'), due, startedAt);
      for (const r of owed) if (r.kind === 'forget') await store.setMeta(`${DECISION_DUE}${r.instanceId}`, null);
    });
    for (const d of plan.decisions) if (d.action.kind === 'hold') opts.hooks?.onReplacement?.('held');

    // Started, not driven: the replacement worker advances them in the background.
    for (const id of plan.replace) {
      if (opts.signal?.aborted) break;
      const decision = plan.decisions.find((d) => d.instanceId === id);
      if (!decision) continue;
      const row = await replacer.create(await candidateOf(decision));
      if (row) replacements.push(row);
      // Its "Replacing…" reply (or the replacement already under way) is the decision an alert raised between cycles waits for.
      if (due.has(id)) await store.setMeta(`${DECISION_DUE}${id}`, null);
    }

    const outbox = await drainOutbox(store, opts.transport, logger, opts.hooks?.onSlack, opts.owner);
    const exitCode = exitCodeOf(report);
    if (cycleId !== null) await store.finishCycle(cycleId, outcomeOf(exitCode), exitCode, { ...report.summary, complete: report.complete, replaced: replacements.length });
    return { report, scopes, plan, exitCode, replacements, outbox, accountIds: accountIdsOf(accounts) };
  } catch (err) {
    if (cycleId !== null) await store.finishCycle(cycleId, 'failed', 3, { error: describeError(err) });
    throw err;
  }
}

/** The accounts audited; null when they could not all be found (an organisation not listed, pristine's own identity unread). */
const accountIdsOf = (accounts: AuditResult['accounts']): string[] | null => (accounts && accounts.errors.length === 0 ? accounts.accounts.map((a) => a.id) : null);

export function outcomeOf(exitCode: number): 'ok' | 'tainted' | 'incomplete' | 'failed' {
  return exitCode === 0 ? 'ok' : exitCode === 1 ? 'tainted' : exitCode === 3 ? 'incomplete' : 'failed';
}

function groupsOf(r: ReplacementRow): string[] {
  const d = r.data as { targetGroups?: Array<{ arn: string }>; asg?: { name: string } };
  return [...(d.targetGroups ?? []).map((t) => t.arn), ...(d.asg ? [`asg:${d.asg.name}`] : [])];
}

/**
 * A breaker is news when it trips, not every cycle it stays tripped. Whether it was said is kept per
 * policy and scope (account and region), the scopes this cycle audited: replicas auditing other scopes
 * neither reset it nor say it again, and a scope is cleared only when read in full. (`breaker:POLICY`,
 * as an older pristine kept it, counts as said.)
 */
export async function enqueueBreakers(
  store: StateStore,
  policies: ReadonlyMap<string, LoadedPolicy>,
  breakers: Plan['breakers'],
  audited: ReadonlyArray<Scope & { complete: boolean }>,
  now: number,
): Promise<void> {
  const keys = (policy: string, scopes: readonly Scope[] = audited) => scopes.map((s) => `breaker:${policy}:${scopeKey(s)}`);
  // Only a scope read in full says the breaker no longer holds there: one half read (a source failed) may
  // just not show what tripped it.
  const settled = audited.filter((s) => s.complete);
  const tripped = new Set(breakers.map((b) => b.policy));
  for (const b of breakers) {
    const channel = channelOf(policies.get(b.policy));
    let said = (await store.meta(`breaker:${b.policy}`)) !== null;
    for (const k of keys(b.policy)) if (!said && (await store.meta(k)) !== null) said = true;
    if (!said && channel) await store.enqueue(channel, { type: 'breaker', ...b }, null, now);
    for (const k of keys(b.policy)) await store.setMeta(k, String(now));
    await store.setMeta(`breaker:${b.policy}`, null);
  }
  for (const [p, policy] of policies) {
    if (tripped.has(p)) continue;
    // Only an enforcing policy has a breaker that trips.
    if (policy.respond.mode === 'enforce') for (const k of keys(p, settled)) await store.setMeta(k, null);
    await store.setMeta(`breaker:${p}`, null);
  }
}

/** The decisions alerts raised between cycles wait for (see judgePushed), by instance id. */
async function decisionsDue(store: StateStore): Promise<Map<string, DecisionDue & { channel: string | null }>> {
  const out = new Map<string, DecisionDue & { channel: string | null }>();
  for (const [key, value] of await store.metaWithPrefix(DECISION_DUE)) {
    const instanceId = key.slice(DECISION_DUE.length);
    const v = JSON.parse(value) as { accountId: string; region: string; channel?: string | null; at?: number };
    out.set(instanceId, { instanceId, accountId: v.accountId, region: v.region, at: v.at ?? 0, channel: v.channel ?? null });
  }
  return out;
}

/** Each owed decision, a reply in its alert's thread; then no longer due. Call in the cycle's transaction. */
async function replyDecisions(
  store: StateStore,
  replies: ReadonlyArray<Extract<DecisionReply, { kind: 'reply' }>>,
  due: ReadonlyMap<string, { channel: string | null }>,
  now: number,
): Promise<void> {
  for (const r of replies) {
    const channel = due.get(r.instanceId)?.channel ?? null;
    const alert = (await store.instance(r.instanceId))?.alertOutboxId ?? null;
    if (channel && alert !== null) {
      await store.enqueue(channel, { type: 'progress', instanceId: r.instanceId, step: 'decision', outcome: 'held', message: r.message }, alert, now);
    }
    await store.setMeta(`${DECISION_DUE}${r.instanceId}`, null);
  }
}

/**
 * Queues what is news: one alert per newly tainted instance (a digest when a channel gets more than a
 * handful), and a reply in its thread for new evidence on one already alerted. Call in a transaction
 * with the verdicts it follows from.
 */
export async function enqueueAlerts(
  store: StateStore,
  policies: ReadonlyMap<string, LoadedPolicy>,
  actionOf: ReadonlyMap<string, PlannedAction>,
  newlyTainted: readonly string[],
  newFindings: ReadonlyMap<string, string[]>,
  reported: ReadonlyMap<string, ReportInstance>,
  now: number,
): Promise<void> {
  const byChannel = new Map<string, ReportInstance[]>();
  for (const id of newlyTainted) {
    const instance = reported.get(id);
    const channel = instance ? channelOf(policies.get(instance.policy)) : null;
    if (!instance || !channel) continue;
    byChannel.set(channel, [...(byChannel.get(channel) ?? []), instance]);
  }
  for (const [channel, instances] of byChannel) {
    const item = (i: ReportInstance) => ({ instance: i, findings: i.findings, action: actionOf.get(i.instanceId) ?? ({ kind: 'observe' } as PlannedAction) });
    if (instances.length > DIGEST_ABOVE) {
      // The alert is recorded only where none was (another replica may have alerted first): a digest
      // that no longer alerts anything new is not sent.
      const id = await store.enqueue(channel, { type: 'digest', items: instances.map(item) }, null, now);
      let alerted = 0;
      for (const i of instances) if (await store.setAlert(i.instanceId, id)) alerted++;
      if (alerted === 0) await store.markDropped(id, 'already alerted by another replica', now);
    } else {
      for (const i of instances) {
        const id = await store.enqueue(channel, { type: 'taint', ...item(i) }, null, now);
        if (!(await store.setAlert(i.instanceId, id))) await store.markDropped(id, 'already alerted by another replica', now);
      }
    }
  }
  for (const [id, keys] of newFindings) {
    const instance = reported.get(id);
    const alert = (await store.instance(id))?.alertOutboxId ?? null;
    const channel = instance ? channelOf(policies.get(instance.policy)) : null;
    if (!instance || !channel || alert === null) continue;
    const fresh = instance.findings.filter((f) => keys.includes(f.key));
    await store.enqueue(
      channel,
      { type: 'progress', instanceId: id, step: 'evidence', outcome: 'progress', message: `New evidence: ${fresh.map((f) => `${f.detector}: ${f.summary}`).join('; ')}` },
      alert,
      now,
    );
  }
}
