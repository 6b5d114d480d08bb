import type { AutoScalingGroup } from '@aws-sdk/client-auto-scaling';
import type { Instance as Ec2Instance } from '@aws-sdk/client-ec2';
import type { ScopeClients } from '../collect/clients.js';
import type { Scope } from '../core/facts.js';
import type { Instance } from '../core/facts.js';
import type { LoadedPolicy } from '../policy/schema.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Notice } from '../notify/types.js';
import { LeaseLostError, type Fence, type ReplacementRow, type StateStore } from '../state/ports.js';
import type { PollCache } from './polls.js';
import { readLaunchSpec, type LaunchSpec } from './launch-spec.js';
import type { InstancePlacement, TargetGroupMembership } from './placement.js';
import { reproductionHolds } from '../core/reproduce.js';
import { isTransient } from './transient.js';
import { aws } from '../collect/aws-sdk.js';

/**
 * IAM actions a replacement calls. RunInstances with tags needs ec2:CreateTags, and with an instance
 * profile iam:PassRole on its role.
 */
export const IAM_ACTIONS = [
  'ec2:DescribeInstances',
  'ec2:DescribeInstanceAttribute',
  'ec2:DescribeInstanceStatus',
  'ec2:DescribeLaunchTemplateVersions',
  'ec2:RunInstances',
  'ec2:CreateTags',
  'ec2:TerminateInstances',
  'iam:PassRole',
  'elasticloadbalancing:DescribeTargetHealth',
  'elasticloadbalancing:DescribeTargetGroupAttributes',
  'elasticloadbalancing:RegisterTargets',
  'elasticloadbalancing:DeregisterTargets',
  'autoscaling:DescribeAutoScalingGroups',
  'autoscaling:SetDesiredCapacity',
  'autoscaling:UpdateAutoScalingGroup',
  'autoscaling:TerminateInstanceInAutoScalingGroup',
  'autoscaling:SuspendProcesses',
  'autoscaling:ResumeProcesses',
] as const;

/** What a replacement remembers between steps (and across crashes): journaled with every step. */
export interface ReplacementData {
  [key: string]: unknown;
  kind: 'standalone' | 'asg';
  /** Slack channel of the instance's alert, for progress replies */
  channel: string | null;
  /** tag keys the fresh instance must not inherit: the policy's exemption tags (pristine:* never are) */
  guardTagKeys?: string[];
  /** the Elastic IP to move to the fresh instance once it is healthy (replace.moveElasticIp) */
  elasticIp?: { allocationId: string; publicIp: string } | null;
  healthTimeoutMs: number;
  targetGroups: TargetGroupMembership[];
  spec?: LaunchSpec;
  asg?: {
    name: string;
    /** the group's members when the surge was asked for (at planning, until then): its new instance is not among them */
    before: string[];
    originalMax: number;
    /** what the surge did, once it did: the desired capacity it found and set, when, and a raised maximum */
    surge?: { from: number; to: number; at: number; raisedMax: boolean };
    /** the scaling processes pristine suspended (and only those: a process already suspended stays so) */
    suspended?: string[];
  };
  registered?: boolean;
  /** the longest deregistration delay of the old instance's target groups (ms), read before it left them */
  drainMs?: number;
  /** when the old instance was deregistered (epoch ms): draining is not over before `deregisteredAt + drainMs` */
  deregisteredAt?: number;
  /** per step, when it gives up (kept across restarts so a crash does not reset the clock) */
  deadlines?: Record<string, number>;
  /** per wait step, how many polls found it not ready yet (the pause grows with it) */
  polls?: Record<string, number>;
  /** steps whose failure was already announced, so a retried step does not alert every time */
  announced?: string[];
  /** a replacement an older pristine started tagged its fresh instance with its row id */
  legacyTag?: string;
  /** the fencing token of the driver that began the current step */
  begunBy?: number;
}

const STANDALONE_STEPS = ['prepare', 'launch', 'wait-running', 'register', 'wait-healthy', 'move-address', 'deregister-old', 'wait-drained', 'terminate-old'] as const;
const ASG_STEPS = ['prepare', 'suspend', 'surge', 'wait-new', 'wait-healthy', 'deregister-old', 'wait-drained', 'terminate-old', 'restore'] as const;
type Step = (typeof STANDALONE_STEPS)[number] | (typeof ASG_STEPS)[number];

/** Steps that poll: one check a turn, the next one scheduled, until ready or the deadline. */
const WAIT_STEPS: ReadonlySet<string> = new Set(['wait-running', 'wait-healthy', 'wait-drained', 'wait-new']);

/** From here on the fresh instance serves and the old one is leaving: failures are retried, never rolled back. */
const POINT_OF_NO_RETURN: ReadonlySet<string> = new Set(['move-address', 'deregister-old', 'wait-drained', 'terminate-old', 'restore']);

/** Scaling processes that would fight a surge: rebalancing across zones, and alarms scaling the group in. */
const SUSPENDED_PROCESSES = ['AZRebalance', 'AlarmNotification'];

type ProgressNotice = Extract<Notice, { type: 'progress' }>;

/** Where the old instance stands when a step past the point of no return fails: what a `failed` notice says. */
const OLD_INSTANCE_AFTER_FAILING: Partial<Record<string, ProgressNotice['oldInstance']>> = {
  'move-address': 'serving',
  'deregister-old': 'deregistering',
  'wait-drained': 'draining',
  'terminate-old': 'drained',
  restore: 'terminated',
};

class StepError extends Error {
  override name = 'StepError';
}

export type ReplacementOutcome = 'started' | 'done' | 'rolled-back' | 'failed' | 'held';

export interface ReplacerDeps {
  store: StateStore;
  clientsFor: (scope: Scope) => ScopeClients;
  logger: Logger;
  /** outcomes, for metrics */
  onOutcome?: (outcome: ReplacementOutcome) => void;
  /** a notice was queued for Slack (the daemon sends it without waiting for the next cycle) */
  onNotice?: () => void;
  /** first and longest pause between polls of a wait step, and before retrying a failed step past the point of no return */
  pollMs?: { first: number; max: number; retry?: number };
}

export interface Candidate {
  instanceId: string;
  accountId: string;
  region: string;
  imageId: string;
  policy: string;
  healthTimeoutMs: number;
  channel: string | null;
  alertOutboxId: number | null;
  placement: InstancePlacement | undefined;
  /** the policy's exemption tag keys: never copied to the fresh instance */
  guardTagKeys: string[];
  /** what a fresh instance could not reproduce (an Elastic IP, a secondary interface, a Classic ELB…): held when any */
  holds: string[];
  moveElasticIp: boolean;
}

/** What a replacement needs to know about an instance: from its verdict, its policy, its alert and where it serves. */
export function candidateFor(instance: Instance, policy: LoadedPolicy, alertOutboxId: number | null, placement: InstancePlacement | undefined): Candidate {
  return {
    instanceId: instance.instanceId,
    accountId: instance.accountId,
    region: instance.region,
    imageId: instance.imageId,
    policy: policy.name,
    healthTimeoutMs: policy.respond.replace.healthTimeout,
    channel: policy.respond.notify?.slack?.channel ?? null,
    alertOutboxId,
    placement,
    guardTagKeys: Object.keys(policy.scope.exclude?.tags ?? {}),
    holds: placement ? reproductionHolds(instance, placement, { moveElasticIp: policy.respond.replace.moveElasticIp }) : [],
    moveElasticIp: policy.respond.replace.moveElasticIp,
  };
}

const errName = (err: unknown) => (err as { name?: string }).name ?? '';
/** ELBv2's InvalidTarget: the target is not (or no longer) registered. The SDK names it InvalidTargetException. */
const notRegistered = (err: unknown) => errName(err) === 'InvalidTargetException' || errName(err) === 'InvalidTarget';
const data = (row: ReplacementRow) => row.data as ReplacementData;

/** A replacement's scope. Rows an older pristine wrote are adopted into its own account before anything drives them. */
function scopeOf(row: ReplacementRow): Scope {
  if (row.accountId === null) throw new StepError(`replacement ${row.id} has no account: it was written by an older pristine and not adopted yet`);
  return { accountId: row.accountId, region: row.region };
}

/**
 * The old instance's tags for the fresh one, without AWS's own (`aws:*` cannot be set) and without the
 * guard tags: `pristine:*` and the policy's exemption tag keys. An instance tainted for a forged
 * exemption must not hand that exemption on to its replacement.
 */
export function userTags(i: Pick<Ec2Instance, 'Tags'>, oldId: string, replacementId: string, guardKeys: readonly string[] = []): Array<{ Key: string; Value: string }> {
  const guards = new Set(guardKeys);
  const tags = (i.Tags ?? [])
    .filter((t) => t.Key && !t.Key.startsWith('aws:') && !t.Key.startsWith('pristine:') && !guards.has(t.Key))
    .map((t) => ({ Key: t.Key as string, Value: t.Value ?? '' }));
  return [...tags, { Key: 'pristine:replaces', Value: oldId }, { Key: 'pristine:replacement', Value: replacementId }];
}

/** What a wait step waits for, for `pristine status`. */
function waitingFor(step: string, row: ReplacementRow): string {
  const d = data(row);
  switch (step) {
    case 'wait-running':
      return `${row.newInstanceId ?? 'the fresh instance'} to run with status checks ok`;
    case 'wait-healthy':
      return `${row.newInstanceId ?? 'the fresh instance'} to be healthy in ${d.targetGroups.length} target group(s)`;
    case 'wait-drained':
      return `${row.oldInstanceId} to drain (at least ${Math.round((d.drainMs ?? 0) / 1000)} s)`;
    default:
      return `the Auto Scaling group ${d.asg?.name ?? ''} to bring a healthy new instance`;
  }
}

/**
 * Replaces tainted instances without an outage: a state machine advanced one step or one poll per
 * turn, in the background (see ReplacementWorker), under a lease whose fencing token every journal
 * write checks.
 *
 * Standalone: launch the recorded image with the old instance's launch spec, wait for running and
 * status checks ok, register in every target group that holds the old one and wait healthy, move its
 * Elastic IP if asked, then deregister the old one, wait for its groups' deregistration delay and for
 * draining, and terminate it. Auto Scaling group member: suspend the processes that would fight a surge,
 * raise the desired capacity by one, wait for the group's new instance to be healthy, drain the old one
 * and terminate it through the group (which decrements the capacity), then resume the processes.
 *
 * Each step is journaled before and after it runs and is safe to run twice, so a crash at any moment
 * is resumed from the journal: the launch step finds an instance it already started by its UUID tag
 * (and ClientToken) before it starts one. A failure before the old instance leaves the load balancer
 * rolls back (the fresh instance is removed, the old one keeps serving); after that it is retried.
 */
export class Replacer {
  constructor(private readonly deps: ReplacerDeps) {}

  // --- checks before anything starts -------------------------------------------------------------

  /** Read-only: why this instance must not be replaced now, or null. */
  async preflight(c: Candidate): Promise<string | null> {
    if (c.holds.length) return `a fresh instance would not be a faithful copy: ${c.holds.join('; ')}`;
    const { ec2, autoscaling } = this.deps.clientsFor(c);
    const protection = await ec2.send(new aws.EC2.DescribeInstanceAttributeCommand({ InstanceId: c.instanceId, Attribute: 'disableApiTermination' }));
    if (protection.DisableApiTermination?.Value) return 'termination protection is on: a human must decide';
    const group = c.placement?.autoScalingGroup;
    if (group) {
      const image = await groupImage(this.deps.clientsFor(c), group);
      if (image !== c.imageId) {
        return `its Auto Scaling group ${group.AutoScalingGroupName} launches ${image ?? 'an image pristine cannot determine'}, not the recorded ${c.imageId}: replacing through the group would not restore the recorded image`;
      }
      const fresh = await autoscaling.send(new aws.AutoScaling.DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [group.AutoScalingGroupName ?? ''] }));
      const g = fresh.AutoScalingGroups?.[0];
      if (!g) return `its Auto Scaling group ${group.AutoScalingGroupName} no longer exists`;
      if ((g.Instances ?? []).some((i) => i.LifecycleState !== 'InService')) return `its Auto Scaling group ${g.AutoScalingGroupName} is already changing: next cycle`;
    }
    return null;
  }

  // --- starting --------------------------------------------------------------------------------------

  /**
   * Records a replacement, due at once, with its 'started' notice in the same transaction; the worker
   * drives it. Null when the instance already has one (never replaced twice).
   */
  async create(c: Candidate): Promise<ReplacementRow | null> {
    const { store } = this.deps;
    const initial: ReplacementData = {
      kind: c.placement?.autoScalingGroup ? 'asg' : 'standalone',
      channel: c.channel,
      guardTagKeys: c.guardTagKeys,
      elasticIp: c.moveElasticIp ? (c.placement?.elasticIp ?? null) : null,
      healthTimeoutMs: c.healthTimeoutMs,
      targetGroups: c.placement?.targetGroups ?? [],
    };
    const row = await store.transaction(async () => {
      const created = await store.createReplacement({
        oldInstanceId: c.instanceId,
        accountId: c.accountId,
        region: c.region,
        policy: c.policy,
        imageId: c.imageId,
        step: 'prepare',
        data: initial,
        alertOutboxId: c.alertOutboxId,
      });
      if (created) await this.progress(created, 'prepare', 'started', `Replacing ${c.instanceId} with a fresh instance of ${c.imageId}.`);
      return created;
    });
    if (row) this.deps.onOutcome?.('started');
    return row;
  }

  // --- one turn ----------------------------------------------------------------------------------------

  /**
   * Advances a replacement by one step, or one poll of a wait step, and schedules its next turn. Throws
   * LeaseLostError when another driver took it over meanwhile: this one then stops.
   */
  async turn(start: ReplacementRow, fence: Fence, polls: PollCache): Promise<ReplacementRow> {
    const { store, logger } = this.deps;
    let row = start;
    if (row.status !== 'in-progress') return row;
    if (row.step === 'rollback') return this.rollback(row, row.error ?? 'resumed rollback', fence);
    const steps: readonly Step[] = data(row).kind === 'asg' ? ASG_STEPS : STANDALONE_STEPS;
    const last = await store.lastJournal(row.id);
    let index = Math.max(0, steps.indexOf(row.step as Step));
    if (last && last.step === row.step && last.phase === 'end') index++;
    if (index >= steps.length) return this.finish(row, fence);
    const step = steps[index] as Step;
    const d = data(row);
    const log = logger.child({ replacement: row.id, instanceId: row.oldInstanceId, step });
    const c = this.deps.clientsFor(scopeOf(row));
    const now = Date.now();
    // A step's deadline is journaled with its start, so a restart does not reset the clock.
    const deadline = ((d.deadlines ??= {})[step] ??= now + d.healthTimeoutMs + (step === 'wait-drained' ? (d.drainMs ?? 0) : 0));
    // Polls of one wait step are one attempt; a step taken up again by another driver (after a crash) or
    // after a failure is a new attempt, journaled as such.
    if (!(last && last.step === step && last.phase === 'begin' && d.begunBy === fence.token)) {
      d.begunBy = fence.token;
      row = await store.journal(row.id, step, 'begin', { data: d }, now, fence);
      log.info('replacement step started');
    }
    try {
      if (WAIT_STEPS.has(step)) {
        const ready = await this.poll(step, row, d, c, polls);
        if (!ready && !(step === 'wait-drained' && Date.now() >= deadline)) {
          if (Date.now() >= deadline) throw new StepError(`${waitingFor(step, row)}: not within ${Math.round(d.healthTimeoutMs / 1000)} s`);
          const n = ((d.polls ??= {})[step] = (d.polls[step] ?? 0) + 1);
          // Whole milliseconds: 1.5^n of a second is not (the stores keep epoch ms; PostgreSQL's BIGINT refuses a fraction).
          const pause = Math.round(Math.min(this.deps.pollMs?.max ?? 15_000, (this.deps.pollMs?.first ?? 1000) * 1.5 ** (n - 1)));
          await store.schedule(row.id, Math.min(Date.now() + pause, deadline), waitingFor(step, row), fence, d);
          return (await store.replacement(row.id)) as ReplacementRow;
        }
      } else {
        // What a step must remember before an AWS call it cannot take back (it is journaled before the call).
        const keep = () => store.schedule(row.id, Date.now(), null, fence, d);
        await this.run(step, row, d, c, keep);
      }
      const newInstanceId = row.newInstanceId;
      row = await store.transaction(async () => {
        const ended = await store.journal(row.id, step, 'end', { data: d, newInstanceId, error: null }, Date.now(), fence);
        await this.milestone(ended, step);
        await store.schedule(ended.id, Date.now(), null, fence);
        return ended;
      });
      return row;
    } catch (err) {
      if (err instanceof LeaseLostError) throw err;
      const message = `${step}: ${describeError(err)}`;
      // Throttling, a 5xx or a timeout is "not now": the step is tried again, within its deadline.
      if (isTransient(err) && Date.now() < deadline) {
        const pause = this.deps.pollMs?.first ?? 1000;
        log.warn({ err: describeError(err), retryInMs: pause }, 'transient AWS error: the step is tried again');
        await store.schedule(row.id, Date.now() + pause, `a retry of ${step} after a transient error`, fence, d);
        return (await store.replacement(row.id)) as ReplacementRow;
      }
      log.warn({ err: describeError(err) }, 'replacement step failed');
      if (!POINT_OF_NO_RETURN.has(step)) return this.rollback(await store.journal(row.id, step, 'fail', { data: d, error: message, detail: { error: message } }, Date.now(), fence), message, fence);
      // Said once per step, not every time the retry fails again.
      const first = !(d.announced ?? []).includes(step);
      if (first) d.announced = [...(d.announced ?? []), step];
      row = await store.transaction(async () => {
        const failed = await store.journal(row.id, step, 'fail', { data: d, error: message, detail: { error: message } }, Date.now(), fence);
        if (first) {
          await this.progress(failed, step, 'failed', `${message}. The fresh instance ${failed.newInstanceId ?? ''} is serving; pristine retries this step.`, OLD_INSTANCE_AFTER_FAILING[step]);
        }
        await store.schedule(failed.id, Date.now() + (this.deps.pollMs?.retry ?? 60_000), `a retry of ${step}`, fence);
        return failed;
      });
      if (first) this.deps.onOutcome?.('failed');
      return row;
    }
  }

  private async finish(start: ReplacementRow, fence: Fence): Promise<ReplacementRow> {
    const { store } = this.deps;
    const row = await store.transaction(async () => {
      const done = await store.journal(start.id, 'done', 'end', { status: 'done', error: null }, Date.now(), fence);
      await this.progress(done, 'done', 'done', `Replaced: ${done.newInstanceId} serves in place of ${done.oldInstanceId}, which is terminated.`, 'terminated');
      return done;
    });
    await store.releaseLease(row.id, fence.owner);
    this.deps.logger.info({ replacement: row.id, instanceId: row.oldInstanceId, newInstanceId: row.newInstanceId }, 'replacement done');
    this.deps.onOutcome?.('done');
    return row;
  }

  /**
   * A reply in the instance's alert thread, queued in the outbox when its policy notifies a channel.
   * Called inside the transaction of the journal entry it tells of: a crash loses neither.
   */
  private async progress(row: ReplacementRow, step: string, outcome: ProgressNotice['outcome'], message: string, oldInstance?: ProgressNotice['oldInstance']): Promise<void> {
    const channel = data(row).channel;
    if (!channel) return;
    this.deps.onNotice?.();
    await this.deps.store.enqueue(
      channel,
      { type: 'progress', instanceId: row.oldInstanceId, step, outcome, newInstanceId: row.newInstanceId, message, ...(oldInstance ? { oldInstance } : {}) },
      row.alertOutboxId,
    );
  }

  private async milestone(row: ReplacementRow, step: Step): Promise<void> {
    const say = (message: string) => this.progress(row, step, 'progress', message);
    if (step === 'launch' || step === 'wait-new') await say(`Launched ${row.newInstanceId} from the recorded image.`);
    if (step === 'wait-healthy') await say(`${row.newInstanceId} is healthy${data(row).targetGroups.length ? ' in every target group' : ''}; removing ${row.oldInstanceId}.`);
  }

  /** One check of a wait step, from what this turn read for every replacement at once. */
  private async poll(step: Step, row: ReplacementRow, d: ReplacementData, c: ScopeClients, polls: PollCache): Promise<boolean> {
    const scope = scopeOf(row);
    switch (step) {
      case 'wait-running': {
        const s = await polls.status(scope, row.newInstanceId as string);
        const state = s?.InstanceState?.Name;
        if (state === 'terminated' || state === 'shutting-down') throw new StepError(`${row.newInstanceId} is ${state}`);
        return state === 'running' && s?.InstanceStatus?.Status === 'ok' && s.SystemStatus?.Status === 'ok';
      }
      case 'wait-healthy':
        for (const tg of d.targetGroups) {
          if ((await polls.targetStates(scope, tg.arn)).get(`${row.newInstanceId}:${tg.port}`) !== 'healthy') return false;
        }
        return true;
      case 'wait-drained': {
        // At least the groups' deregistration delay, and until the old instance is gone or unused in each.
        if (Date.now() < (d.deregisteredAt ?? 0) + (d.drainMs ?? 0)) return false;
        for (const tg of d.targetGroups) {
          const state = (await polls.targetStates(scope, tg.arn)).get(`${row.oldInstanceId}:${tg.port}`);
          if (state && state !== 'unused') return false;
        }
        return true;
      }
      default:
        return this.findNew(c, row, d);
    }
  }

  private async run(step: Step, row: ReplacementRow, d: ReplacementData, c: ScopeClients, keep: () => Promise<void>): Promise<void> {
    switch (step) {
      case 'prepare':
        return d.kind === 'asg' ? this.prepareGroup(c, row, d) : this.prepareStandalone(c, row, d);
      case 'launch':
        return this.launch(c, row, d);
      case 'register':
        for (const tg of d.targetGroups) {
          await c.elbv2.send(new aws.ELBv2.RegisterTargetsCommand({ TargetGroupArn: tg.arn, Targets: [{ Id: row.newInstanceId as string, Port: tg.port }] }));
        }
        d.registered = true;
        return;
      case 'move-address':
        // After health, before the old instance drains: the address follows the service.
        if (d.elasticIp) {
          await c.ec2.send(new aws.EC2.AssociateAddressCommand({ AllocationId: d.elasticIp.allocationId, InstanceId: row.newInstanceId as string, AllowReassociation: true }));
        }
        return;
      case 'deregister-old':
        // How long each group drains, read before the old instance leaves it: never terminate before that.
        d.drainMs = await longestDeregistrationDelay(c, d.targetGroups);
        await deregister(c, row.oldInstanceId, d.targetGroups);
        d.deregisteredAt = Date.now();
        return;
      case 'terminate-old':
        return this.terminateOld(c, row, d);
      case 'suspend':
        return this.suspend(c, d);
      case 'surge':
        return this.surge(c, d, keep);
      case 'restore':
        return this.restore(c, d);
      default:
        throw new StepError(`${step} is a wait step`);
    }
  }

  // --- standalone -------------------------------------------------------------------------------

  private async describe(c: ScopeClients, instanceId: string): Promise<Ec2Instance | null> {
    try {
      const out = await c.ec2.send(new aws.EC2.DescribeInstancesCommand({ InstanceIds: [instanceId] }));
      return out.Reservations?.[0]?.Instances?.[0] ?? null;
    } catch (err) {
      if (errName(err) === 'InvalidInstanceID.NotFound') return null;
      throw err;
    }
  }

  private async prepareStandalone(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<void> {
    const old = await this.describe(c, row.oldInstanceId);
    if (!old || old.State?.Name !== 'running') throw new StepError(`${row.oldInstanceId} is ${old?.State?.Name ?? 'gone'}, not running`);
    const userData = await c.ec2.send(new aws.EC2.DescribeInstanceAttributeCommand({ InstanceId: row.oldInstanceId, Attribute: 'userData' }));
    d.spec = await readLaunchSpec(c, old, row.imageId, userData.UserData?.Value, userTags(old, row.oldInstanceId, row.uuid, d.guardTagKeys ?? []));
  }

  /**
   * The fresh instance this replacement launched, if any: tagged with its UUID (or, for a replacement an
   * older pristine started, its row id) and with the old instance's id, and launched after it started.
   * Never by a row id alone: row ids start again at 1 with a new state file.
   */
  private async findLaunched(c: ScopeClients, row: ReplacementRow, states: string[]): Promise<string | null> {
    const d = data(row);
    const out = await c.ec2.send(
      new aws.EC2.DescribeInstancesCommand({
        Filters: [
          { Name: 'tag:pristine:replacement', Values: [row.uuid, ...(d.legacyTag ? [d.legacyTag] : [])] },
          { Name: 'tag:pristine:replaces', Values: [row.oldInstanceId] },
          { Name: 'instance-state-name', Values: states },
        ],
      }),
    );
    const startedAt = row.startedAt - 60_000; // the clocks of AWS and of this machine may differ a little
    const found = (out.Reservations ?? []).flatMap((r) => r.Instances ?? []).filter((i) => !i.LaunchTime || i.LaunchTime.getTime() >= startedAt);
    return found[0]?.InstanceId ?? null;
  }

  /** Finds the instance this replacement already launched (a crash may have hidden it), or launches it. */
  private async launch(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<void> {
    const found = await this.findLaunched(c, row, ['pending', 'running']);
    if (found) row.newInstanceId = found;
    if (!d.spec) throw new StepError('no launch spec recorded');
    const { Tags, SourceDestCheck, ...spec } = d.spec;
    if (!found) {
      const out = await c.ec2.send(
        new aws.EC2.RunInstancesCommand({
          ...spec,
          MinCount: 1,
          MaxCount: 1,
          // Idempotent on AWS: a retried launch of this replacement returns the same instance.
          ClientToken: `pristine-${row.uuid}`,
          TagSpecifications: [{ ResourceType: 'instance', Tags }],
        }),
      );
      const id = out.Instances?.[0]?.InstanceId;
      if (!id) throw new StepError('RunInstances returned no instance');
      row.newInstanceId = id;
    }
    // RunInstances cannot turn the source/dest check off (a NAT instance has it off): set it, again if resumed.
    if (SourceDestCheck === false) {
      await c.ec2.send(new aws.EC2.ModifyInstanceAttributeCommand({ InstanceId: row.newInstanceId as string, SourceDestCheck: { Value: false } }));
    }
  }

  private async terminateOld(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<void> {
    const old = await this.describe(c, row.oldInstanceId);
    if (!old || old.State?.Name === 'terminated' || old.State?.Name === 'shutting-down') return;
    if (d.kind === 'asg') {
      // Through the group, one less: relative, so a group that scaled meanwhile keeps its new size.
      await c.autoscaling.send(new aws.AutoScaling.TerminateInstanceInAutoScalingGroupCommand({ InstanceId: row.oldInstanceId, ShouldDecrementDesiredCapacity: true }));
    } else {
      await c.ec2.send(new aws.EC2.TerminateInstancesCommand({ InstanceIds: [row.oldInstanceId] }));
    }
  }

  // --- Auto Scaling group members -------------------------------------------------------------

  private async group(c: ScopeClients, name: string): Promise<AutoScalingGroup> {
    const out = await c.autoscaling.send(new aws.AutoScaling.DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] }));
    const g = out.AutoScalingGroups?.[0];
    if (!g) throw new StepError(`Auto Scaling group ${name} not found`);
    return g;
  }

  private async prepareGroup(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<void> {
    const old = await this.describe(c, row.oldInstanceId);
    const name = old?.Tags?.find((t) => t.Key === 'aws:autoscaling:groupName')?.Value;
    if (!old || old.State?.Name !== 'running' || !name) throw new StepError(`${row.oldInstanceId} is no longer a running member of an Auto Scaling group`);
    const g = await this.group(c, name);
    d.asg = { name, originalMax: g.MaxSize ?? 0, before: (g.Instances ?? []).flatMap((i) => (i.InstanceId ? [i.InstanceId] : [])) };
    d.targetGroups = (g.TargetGroupARNs ?? []).map((arn) => ({ arn, port: d.targetGroups.find((t) => t.arn === arn)?.port ?? 80 }));
  }

  /** Rebalancing and alarm scaling would fight the surge; those pristine suspends it resumes (journaled, so a crash resumes them too). */
  private async suspend(c: ScopeClients, d: ReplacementData): Promise<void> {
    const asg = d.asg as NonNullable<ReplacementData['asg']>;
    if (!asg.suspended) {
      const g = await this.group(c, asg.name);
      const already = new Set((g.SuspendedProcesses ?? []).map((p) => p.ProcessName));
      asg.suspended = SUSPENDED_PROCESSES.filter((p) => !already.has(p));
    }
    if (asg.suspended.length) await c.autoscaling.send(new aws.AutoScaling.SuspendProcessesCommand({ AutoScalingGroupName: asg.name, ScalingProcesses: asg.suspended }));
  }

  /**
   * One more than the group wants now, read at the moment of the surge (not at planning): a group that
   * scaled meanwhile keeps its size plus one. The surge is kept before it is asked for: run again after a
   * crash (even one right after AWS took the call), it sees its own surge and adds none.
   */
  private async surge(c: ScopeClients, d: ReplacementData, keep: () => Promise<void>): Promise<void> {
    const asg = d.asg as NonNullable<ReplacementData['asg']>;
    const g = await this.group(c, asg.name);
    const desired = g.DesiredCapacity ?? 0;
    if (asg.surge && desired >= asg.surge.to) return;
    const to = desired + 1;
    const raisedMax = to > (g.MaxSize ?? 0);
    asg.surge = { from: desired, to, at: Date.now(), raisedMax: raisedMax || (asg.surge?.raisedMax ?? false) };
    // The members of now, not of planning: one the group launched meanwhile (replacing a failed member)
    // is not the surge's, though it may be in service first.
    asg.before = (g.Instances ?? []).flatMap((i) => (i.InstanceId ? [i.InstanceId] : []));
    await keep();
    if (raisedMax) await c.autoscaling.send(new aws.AutoScaling.UpdateAutoScalingGroupCommand({ AutoScalingGroupName: asg.name, MaxSize: to }));
    await c.autoscaling.send(new aws.AutoScaling.SetDesiredCapacityCommand({ AutoScalingGroupName: asg.name, DesiredCapacity: to, HonorCooldown: false }));
  }

  /** The group's new instance: not a member when the surge was asked for, and launched after it (the first such, if the group scaled meanwhile). */
  private async findNew(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<boolean> {
    const asg = d.asg as NonNullable<ReplacementData['asg']>;
    const g = await this.group(c, asg.name);
    const candidates = (g.Instances ?? []).filter((i) => i.InstanceId && !asg.before.includes(i.InstanceId));
    if (candidates.length === 0) return false;
    let fresh = candidates[0];
    if (candidates.length > 1) {
      const described = await c.ec2.send(new aws.EC2.DescribeInstancesCommand({ InstanceIds: candidates.map((i) => i.InstanceId as string) }));
      const launched = (described.Reservations ?? []).flatMap((r) => r.Instances ?? []).filter((i) => (i.LaunchTime?.getTime() ?? 0) >= (asg.surge?.at ?? 0) - 60_000);
      launched.sort((a, b) => (a.LaunchTime?.getTime() ?? 0) - (b.LaunchTime?.getTime() ?? 0));
      fresh = candidates.find((i) => i.InstanceId === launched[0]?.InstanceId) ?? fresh;
    }
    if (!fresh?.InstanceId) return false;
    row.newInstanceId = fresh.InstanceId;
    return fresh.LifecycleState === 'InService' && fresh.HealthStatus === 'Healthy';
  }

  /** The maximum back where it was (unless the group now needs more), and the suspended processes resumed. */
  private async restore(c: ScopeClients, d: ReplacementData): Promise<void> {
    const asg = d.asg;
    if (!asg) return;
    if (asg.surge?.raisedMax) {
      const g = await this.group(c, asg.name);
      const max = Math.max(asg.originalMax, g.DesiredCapacity ?? 0);
      if ((g.MaxSize ?? 0) > max) await c.autoscaling.send(new aws.AutoScaling.UpdateAutoScalingGroupCommand({ AutoScalingGroupName: asg.name, MaxSize: max }));
    }
    if (asg.suspended?.length) await c.autoscaling.send(new aws.AutoScaling.ResumeProcessesCommand({ AutoScalingGroupName: asg.name, ScalingProcesses: asg.suspended }));
  }

  // --- rolling back ------------------------------------------------------------------------------

  /** Removes the fresh instance; the old one was never taken out of service. Safe to run again. */
  private async rollback(start: ReplacementRow, reason: string, fence: Fence): Promise<ReplacementRow> {
    const { store } = this.deps;
    const d = data(start);
    let row = await store.journal(start.id, 'rollback', 'begin', { data: d, error: reason }, Date.now(), fence);
    const c = this.deps.clientsFor(scopeOf(row));
    try {
      let fresh = row.newInstanceId;
      if (!fresh && d.kind === 'standalone') fresh = await this.findLaunched(c, row, ['pending', 'running', 'stopping', 'stopped']);
      if (d.kind === 'asg' && d.asg && !fresh && d.asg.surge) {
        await this.findNew(c, row, d).catch(() => false);
        fresh = row.newInstanceId;
      }
      if (fresh) {
        await deregister(c, fresh, d.targetGroups);
        const inst = await this.describe(c, fresh);
        if (inst && inst.State?.Name !== 'terminated' && inst.State?.Name !== 'shutting-down') {
          // Through the group, one less (relative), or terminated outright.
          if (d.kind === 'asg') await c.autoscaling.send(new aws.AutoScaling.TerminateInstanceInAutoScalingGroupCommand({ InstanceId: fresh, ShouldDecrementDesiredCapacity: true }));
          else await c.ec2.send(new aws.EC2.TerminateInstancesCommand({ InstanceIds: [fresh] }));
        }
      } else if (d.kind === 'asg' && d.asg?.surge) {
        // The surge happened but no instance came: take back our one, only while the group still holds it.
        const g = await this.group(c, d.asg.name);
        if ((g.DesiredCapacity ?? 0) >= d.asg.surge.to) {
          await c.autoscaling.send(new aws.AutoScaling.SetDesiredCapacityCommand({ AutoScalingGroupName: d.asg.name, DesiredCapacity: (g.DesiredCapacity ?? 1) - 1, HonorCooldown: false }));
        }
      }
      await this.restore(c, d);
    } catch (err) {
      if (err instanceof LeaseLostError) throw err;
      // Still open: retried from the journal.
      row = await store.journal(row.id, 'rollback', 'fail', { error: `${reason}; rollback: ${describeError(err)}` }, Date.now(), fence);
      await store.schedule(row.id, Date.now() + (this.deps.pollMs?.retry ?? 60_000), 'a retry of the rollback', fence);
      this.deps.logger.error({ replacement: row.id, err: describeError(err) }, 'rollback failed; it is tried again');
      return row;
    }
    row = await store.transaction(async () => {
      const back = await store.journal(row.id, 'rollback', 'end', { status: 'rolled-back', error: reason }, Date.now(), fence);
      await this.progress(back, 'rollback', 'rolled-back', `Replacement rolled back (${reason}). A human needs to look. Retry with \`pristine replace ${back.oldInstanceId}\`.`, 'serving');
      return back;
    });
    await store.releaseLease(row.id, fence.owner);
    this.deps.logger.warn({ replacement: row.id, instanceId: row.oldInstanceId, reason }, 'replacement rolled back');
    this.deps.onOutcome?.('rolled-back');
    return row;
  }
}

/** Takes the instance out of every target group; one that is not (or no longer) in a group is fine. */
async function deregister(c: ScopeClients, instanceId: string, groups: readonly TargetGroupMembership[]): Promise<void> {
  for (const tg of groups) {
    try {
      await c.elbv2.send(new aws.ELBv2.DeregisterTargetsCommand({ TargetGroupArn: tg.arn, Targets: [{ Id: instanceId, Port: tg.port }] }));
    } catch (err) {
      if (!notRegistered(err)) throw err;
    }
  }
}

/** The longest `deregistration_delay.timeout_seconds` of these target groups, in ms (ELB's default: 300 s). */
async function longestDeregistrationDelay(c: ScopeClients, groups: readonly TargetGroupMembership[]): Promise<number> {
  let longest = 0;
  for (const tg of groups) {
    const out = await c.elbv2.send(new aws.ELBv2.DescribeTargetGroupAttributesCommand({ TargetGroupArn: tg.arn }));
    const value = out.Attributes?.find((a) => a.Key === 'deregistration_delay.timeout_seconds')?.Value;
    const seconds = value === undefined ? 300 : Number(value);
    longest = Math.max(longest, Number.isFinite(seconds) ? seconds * 1000 : 300_000);
  }
  return longest;
}

/** The image an Auto Scaling group launches now, from its launch template version; null when it cannot tell. */
async function groupImage(c: ScopeClients, g: AutoScalingGroup): Promise<string | null> {
  const lt = g.LaunchTemplate ?? g.MixedInstancesPolicy?.LaunchTemplate?.LaunchTemplateSpecification;
  if (!lt?.LaunchTemplateId && !lt?.LaunchTemplateName) return null;
  const out = await c.ec2.send(
    new aws.EC2.DescribeLaunchTemplateVersionsCommand({
      LaunchTemplateId: lt.LaunchTemplateId,
      LaunchTemplateName: lt.LaunchTemplateId ? undefined : lt.LaunchTemplateName,
      Versions: [lt.Version ?? '$Default'],
    }),
  );
  return out.LaunchTemplateVersions?.[0]?.LaunchTemplateData?.ImageId ?? null;
}
