import {
  DescribeAutoScalingGroupsCommand,
  SetDesiredCapacityCommand,
  TerminateInstanceInAutoScalingGroupCommand,
  UpdateAutoScalingGroupCommand,
  type AutoScalingGroup,
} from '@aws-sdk/client-auto-scaling';
import {
  DescribeInstanceAttributeCommand,
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  AssociateAddressCommand,
  DescribeLaunchTemplateVersionsCommand,
  ModifyInstanceAttributeCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type Instance as Ec2Instance,
} from '@aws-sdk/client-ec2';
import {
  DeregisterTargetsCommand,
  DescribeTargetGroupAttributesCommand,
  DescribeTargetHealthCommand,
  RegisterTargetsCommand,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import type { ScopeClients } from '../collect/clients.js';
import type { Scope } from '../core/facts.js';
import type { Instance } from '../core/facts.js';
import type { LoadedPolicy } from '../policy/schema.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Notice } from '../notify/types.js';
import type { ReplacementRow, StateStore } from '../state/store.js';
import { readLaunchSpec, type LaunchSpec } from './launch-spec.js';
import type { InstancePlacement, TargetGroupMembership } from './placement.js';
import { reproductionHolds } from '../core/reproduce.js';
import { isTransient } from './transient.js';

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
  asg?: { name: string; originalDesired: number; targetDesired: number; originalMax: number; before: string[] };
  registered?: boolean;
  /** the longest deregistration delay of the old instance's target groups (ms), read before it left them */
  drainMs?: number;
  /** when the old instance was deregistered (epoch ms): draining is not over before `deregisteredAt + drainMs` */
  deregisteredAt?: number;
  /** per wait step, when it gives up (kept across restarts so a crash does not reset the clock) */
  deadlines?: Record<string, number>;
  /** steps whose failure was already announced, so a retried step does not alert every cycle */
  announced?: string[];
}


const STANDALONE_STEPS = ['prepare', 'launch', 'wait-running', 'register', 'wait-healthy', 'move-address', 'deregister-old', 'wait-drained', 'terminate-old'] as const;
const ASG_STEPS = ['prepare', 'surge', 'wait-new', 'wait-healthy', 'deregister-old', 'wait-drained', 'terminate-old', 'restore'] as const;
type Step = (typeof STANDALONE_STEPS)[number] | (typeof ASG_STEPS)[number];

/** From here on the fresh instance serves and the old one is leaving: failures are retried, never rolled back. */
const POINT_OF_NO_RETURN: ReadonlySet<string> = new Set(['move-address', 'deregister-old', 'wait-drained', 'terminate-old', 'restore']);

type ProgressNotice = Extract<Notice, { type: 'progress' }>;

/** Where the old instance stands when a step past the point of no return fails: what a `failed` notice says. */
const OLD_INSTANCE_AFTER_FAILING: Partial<Record<string, ProgressNotice['oldInstance']>> = {
  'move-address': 'serving',
  'deregister-old': 'deregistering',
  'wait-drained': 'draining',
  'terminate-old': 'drained',
  restore: 'terminated',
};

/** The current step was interrupted (SIGTERM): its journal entry stays open and the next run resumes it. */
export class ParkedError extends Error {
  override name = 'ParkedError';
}

class StepError extends Error {
  override name = 'StepError';
}

export interface ReplacerDeps {
  store: StateStore;
  clientsFor: (scope: Scope) => ScopeClients;
  logger: Logger;
  signal?: AbortSignal;
  /** outcomes, for metrics */
  onOutcome?: (outcome: 'started' | 'done' | 'rolled-back' | 'failed' | 'held') => void;
  /** first and longest pause between polls while waiting */
  pollMs?: { first: number; max: number };
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
export function userTags(i: Pick<Ec2Instance, 'Tags'>, oldId: string, replacementId: number, guardKeys: readonly string[] = []): Array<{ Key: string; Value: string }> {
  const guards = new Set(guardKeys);
  const tags = (i.Tags ?? [])
    .filter((t) => t.Key && !t.Key.startsWith('aws:') && !t.Key.startsWith('pristine:') && !guards.has(t.Key))
    .map((t) => ({ Key: t.Key as string, Value: t.Value ?? '' }));
  return [...tags, { Key: 'pristine:replaces', Value: oldId }, { Key: 'pristine:replacement', Value: String(replacementId) }];
}

/**
 * Replaces tainted instances without an outage, one journaled step at a time.
 *
 * Standalone: launch the recorded image with the old instance's launch spec, wait for running and
 * status checks ok, register in every target group that holds the old one and wait healthy, then
 * deregister the old one, wait for draining and terminate it. Auto Scaling group member: raise the
 * desired capacity by one, wait for the group's new instance to be healthy, then drain the old one and
 * terminate it through the group, decrementing the capacity back.
 *
 * Each step is journaled before and after it runs and is safe to run twice, so a crash at any moment
 * is resumed from the journal: the launch step finds an instance it already started by its
 * `pristine:replacement` tag before it starts one. A failure before the old instance leaves the load
 * balancer rolls back (the fresh instance is removed, the old one keeps serving); after that it is retried.
 */
export class Replacer {
  constructor(private readonly deps: ReplacerDeps) {}

  // --- checks before anything starts -------------------------------------------------------------

  /** Read-only: why this instance must not be replaced now, or null. */
  async preflight(c: Candidate): Promise<string | null> {
    if (c.holds.length) return `a fresh instance would not be a faithful copy: ${c.holds.join('; ')}`;
    const { ec2, autoscaling } = this.deps.clientsFor(c);
    const protection = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: c.instanceId, Attribute: 'disableApiTermination' }));
    if (protection.DisableApiTermination?.Value) return 'termination protection is on: a human must decide';
    const group = c.placement?.autoScalingGroup;
    if (group) {
      const image = await groupImage(this.deps.clientsFor(c), group);
      if (image !== c.imageId) {
        return `its Auto Scaling group ${group.AutoScalingGroupName} launches ${image ?? 'an image pristine cannot determine'}, not the recorded ${c.imageId}: replacing through the group would not restore the recorded image`;
      }
      const fresh = await autoscaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [group.AutoScalingGroupName ?? ''] }));
      const g = fresh.AutoScalingGroups?.[0];
      if (!g) return `its Auto Scaling group ${group.AutoScalingGroupName} no longer exists`;
      if ((g.Instances ?? []).some((i) => i.LifecycleState !== 'InService')) return `its Auto Scaling group ${g.AutoScalingGroupName} is already changing: next cycle`;
    }
    return null;
  }

  // --- running -----------------------------------------------------------------------------------

  /** Starts a replacement; null when the instance already has one (never replaced twice). */
  async start(c: Candidate): Promise<ReplacementRow | null> {
    const initial: ReplacementData = {
      kind: c.placement?.autoScalingGroup ? 'asg' : 'standalone',
      channel: c.channel,
      guardTagKeys: c.guardTagKeys,
      elasticIp: c.moveElasticIp ? (c.placement?.elasticIp ?? null) : null,
      healthTimeoutMs: c.healthTimeoutMs,
      targetGroups: c.placement?.targetGroups ?? [],
    };
    const { store } = this.deps;
    const row = store.transaction(() => {
      const created = store.createReplacement({
        oldInstanceId: c.instanceId,
        accountId: c.accountId,
        region: c.region,
        policy: c.policy,
        imageId: c.imageId,
        step: 'prepare',
        data: initial,
        alertOutboxId: c.alertOutboxId,
      });
      if (created) this.progress(created, 'prepare', 'started', `Replacing ${c.instanceId} with a fresh instance of ${c.imageId}.`);
      return created;
    });
    if (!row) return null;
    this.deps.onOutcome?.('started');
    return this.drive(row);
  }

  /** Continues a replacement from its journal (after a crash, a SIGTERM or a failed retryable step). */
  async resume(row: ReplacementRow): Promise<ReplacementRow> {
    return this.drive(row);
  }

  private async drive(start: ReplacementRow): Promise<ReplacementRow> {
    const { store, logger } = this.deps;
    let row = start;
    if (row.step === 'rollback') return this.rollback(row, row.error ?? 'resumed rollback');
    const steps: readonly Step[] = data(row).kind === 'asg' ? ASG_STEPS : STANDALONE_STEPS;
    const journal = store.journalOf(row.id);
    const last = journal[journal.length - 1];
    let index = steps.indexOf(row.step as Step);
    if (index < 0) index = 0;
    if (last && last.step === row.step && last.phase === 'end') index++;

    for (; index < steps.length; index++) {
      const step = steps[index] as Step;
      if (this.deps.signal?.aborted) return row; // parked between steps
      const d = data(row);
      // A step's deadline is journaled with its start, so a restart does not reset the clock.
      const deadline = ((d.deadlines ??= {})[step] ??= Date.now() + d.healthTimeoutMs + (step === 'wait-drained' ? (d.drainMs ?? 0) : 0));
      row = store.journal(row.id, step, 'begin', { data: d });
      const log = logger.child({ replacement: row.id, instanceId: row.oldInstanceId, step });
      try {
        log.info('replacement step started');
        // Throttling, a 5xx or a timeout is "not now": the step is tried again until its deadline.
        for (let pause = this.deps.pollMs?.first ?? 1000; ; pause = Math.min(this.deps.pollMs?.max ?? 15_000, pause * 2)) {
          try {
            await this.run(step, row, d);
            break;
          } catch (err) {
            if (!isTransient(err) || Date.now() + pause >= deadline) throw err;
            log.warn({ err: describeError(err), retryInMs: pause }, 'transient AWS error: the step is tried again');
            await this.sleep(pause);
          }
        }
        const newInstanceId = row.newInstanceId;
        row = store.transaction(() => {
          const ended = store.journal(row.id, step, 'end', { data: d, newInstanceId, error: null });
          this.milestone(ended, step);
          return ended;
        });
      } catch (err) {
        if (err instanceof ParkedError) {
          log.info('replacement parked; the next run resumes it');
          return row;
        }
        const message = `${step}: ${describeError(err)}`;
        log.warn({ err: describeError(err) }, 'replacement step failed');
        if (!POINT_OF_NO_RETURN.has(step)) return this.rollback(store.journal(row.id, step, 'fail', { data: d, error: message, detail: { error: message } }), message);
        // Said once per step, not every cycle the retry fails again.
        const first = !(d.announced ?? []).includes(step);
        if (first) d.announced = [...(d.announced ?? []), step];
        row = store.transaction(() => {
          const failed = store.journal(row.id, step, 'fail', { data: d, error: message, detail: { error: message } });
          if (first) {
            this.progress(failed, step, 'failed', `${message}. The fresh instance ${failed.newInstanceId ?? ''} is serving; pristine retries this step every cycle.`, OLD_INSTANCE_AFTER_FAILING[step]);
          }
          return failed;
        });
        if (first) this.deps.onOutcome?.('failed');
        return row;
      }
    }
    row = store.transaction(() => {
      const done = store.journal(row.id, 'done', 'end', { status: 'done', error: null });
      this.progress(done, 'done', 'done', `Replaced: ${done.newInstanceId} serves in place of ${done.oldInstanceId}, which is terminated.`, 'terminated');
      return done;
    });
    this.deps.onOutcome?.('done');
    return row;
  }

  /** A reply in the instance's alert thread, queued in the outbox when its policy notifies a channel. */
  /**
   * A reply in the instance's alert thread, queued in the outbox when its policy notifies a channel.
   * Called inside the transaction of the journal entry it tells of: a crash loses neither.
   */
  private progress(row: ReplacementRow, step: string, outcome: ProgressNotice['outcome'], message: string, oldInstance?: ProgressNotice['oldInstance']): void {
    const channel = data(row).channel;
    if (!channel) return;
    this.deps.store.enqueue(
      channel,
      { type: 'progress', instanceId: row.oldInstanceId, step, outcome, newInstanceId: row.newInstanceId, message, ...(oldInstance ? { oldInstance } : {}) },
      row.alertOutboxId,
    );
  }

  private milestone(row: ReplacementRow, step: Step): void {
    const say = (message: string) => this.progress(row, step, 'progress', message);
    if (step === 'launch' || step === 'wait-new') say(`Launched ${row.newInstanceId} from the recorded image.`);
    if (step === 'wait-healthy') say(`${row.newInstanceId} is healthy${data(row).targetGroups.length ? ' in every target group' : ''}; removing ${row.oldInstanceId}.`);
  }

  private async run(step: Step, row: ReplacementRow, d: ReplacementData): Promise<void> {
    const c = this.deps.clientsFor(scopeOf(row));
    switch (step) {
      case 'prepare':
        return d.kind === 'asg' ? this.prepareGroup(c, row, d) : this.prepareStandalone(c, row, d);
      case 'launch':
        return this.launch(c, row, d);
      case 'wait-running':
        return this.waitFor(d, step, () => this.statusOk(c, row.newInstanceId as string), `${row.newInstanceId} did not reach running with status checks ok`);
      case 'register':
        for (const tg of d.targetGroups) {
          await c.elbv2.send(new RegisterTargetsCommand({ TargetGroupArn: tg.arn, Targets: [{ Id: row.newInstanceId as string, Port: tg.port }] }));
        }
        d.registered = true;
        return;
      case 'wait-healthy':
        return this.waitFor(d, step, () => this.healthyEverywhere(c, row.newInstanceId as string, d.targetGroups), `${row.newInstanceId} did not become healthy in its target groups`);
      case 'move-address':
        // After health, before the old instance drains: the address follows the service.
        if (d.elasticIp) {
          await c.ec2.send(new AssociateAddressCommand({ AllocationId: d.elasticIp.allocationId, InstanceId: row.newInstanceId as string, AllowReassociation: true }));
        }
        return;
      case 'deregister-old':
        // How long each group drains, read before the old instance leaves it: never terminate before that.
        d.drainMs = await longestDeregistrationDelay(c, d.targetGroups);
        await deregister(c, row.oldInstanceId, d.targetGroups);
        d.deregisteredAt = Date.now();
        return;
      case 'wait-drained': {
        // At least the groups' deregistration delay, and until the old instance is gone or unused in each.
        // Past the delay and the health timeout the load balancer has closed the connections itself: go on.
        const earliest = (d.deregisteredAt ?? 0) + (d.drainMs ?? 0);
        await this.waitFor(d, step, async () => Date.now() >= earliest && (await this.drained(c, row.oldInstanceId, d.targetGroups)), '', { giveUp: 'continue' });
        return;
      }
      case 'terminate-old':
        return this.terminateOld(c, row, d);
      case 'surge':
        return this.surge(c, d);
      case 'wait-new':
        return this.waitFor(d, step, async () => this.findNew(c, row, d), `the group did not bring a healthy new instance`);
      case 'restore':
        return this.restoreMax(c, d);
    }
  }

  // --- standalone -------------------------------------------------------------------------------

  private async describe(c: ScopeClients, instanceId: string): Promise<Ec2Instance | null> {
    try {
      const out = await c.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
      return out.Reservations?.[0]?.Instances?.[0] ?? null;
    } catch (err) {
      if (errName(err) === 'InvalidInstanceID.NotFound') return null;
      throw err;
    }
  }

  private async prepareStandalone(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<void> {
    const old = await this.describe(c, row.oldInstanceId);
    if (!old || old.State?.Name !== 'running') throw new StepError(`${row.oldInstanceId} is ${old?.State?.Name ?? 'gone'}, not running`);
    const userData = await c.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: row.oldInstanceId, Attribute: 'userData' }));
    d.spec = await readLaunchSpec(c, old, row.imageId, userData.UserData?.Value, userTags(old, row.oldInstanceId, row.id, d.guardTagKeys ?? []));
  }

  /** Finds the instance this replacement already launched (a crash may have hidden it), or launches it. */
  private async launch(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<void> {
    const existing = await c.ec2.send(
      new DescribeInstancesCommand({
        Filters: [
          { Name: 'tag:pristine:replacement', Values: [String(row.id)] },
          { Name: 'tag:pristine:replaces', Values: [row.oldInstanceId] },
          { Name: 'instance-state-name', Values: ['pending', 'running'] },
        ],
      }),
    );
    const found = existing.Reservations?.flatMap((r) => r.Instances ?? [])[0]?.InstanceId;
    if (found) row.newInstanceId = found;
    if (!d.spec) throw new StepError('no launch spec recorded');
    const { Tags, SourceDestCheck, ...spec } = d.spec;
    if (!found) {
      const out = await c.ec2.send(
        new RunInstancesCommand({
          ...spec,
          MinCount: 1,
          MaxCount: 1,
          // Idempotent on AWS: a retried launch of this replacement returns the same instance.
          ClientToken: `pristine-${row.oldInstanceId}-${row.id}`,
          TagSpecifications: [{ ResourceType: 'instance', Tags }],
        }),
      );
      const id = out.Instances?.[0]?.InstanceId;
      if (!id) throw new StepError('RunInstances returned no instance');
      row.newInstanceId = id;
    }
    // RunInstances cannot turn the source/dest check off (a NAT instance has it off): set it, again if resumed.
    if (SourceDestCheck === false) {
      await c.ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: row.newInstanceId as string, SourceDestCheck: { Value: false } }));
    }
  }

  private async statusOk(c: ScopeClients, instanceId: string): Promise<boolean> {
    const out = await c.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [instanceId], IncludeAllInstances: true }));
    const s = out.InstanceStatuses?.[0];
    if (s?.InstanceState?.Name === 'terminated' || s?.InstanceState?.Name === 'shutting-down') throw new StepError(`${instanceId} is ${s.InstanceState.Name}`);
    return s?.InstanceState?.Name === 'running' && s.InstanceStatus?.Status === 'ok' && s.SystemStatus?.Status === 'ok';
  }

  private async healthyEverywhere(c: ScopeClients, instanceId: string, groups: readonly TargetGroupMembership[]): Promise<boolean> {
    for (const tg of groups) {
      const out = await c.elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.arn, Targets: [{ Id: instanceId, Port: tg.port }] }));
      if (out.TargetHealthDescriptions?.[0]?.TargetHealth?.State !== 'healthy') return false;
    }
    return true;
  }

  private async drained(c: ScopeClients, instanceId: string, groups: readonly TargetGroupMembership[]): Promise<boolean> {
    for (const tg of groups) {
      const out = await c.elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.arn, Targets: [{ Id: instanceId, Port: tg.port }] }));
      const state = out.TargetHealthDescriptions?.[0]?.TargetHealth?.State;
      if (state && state !== 'unused') return false;
    }
    return true;
  }

  private async terminateOld(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<void> {
    const old = await this.describe(c, row.oldInstanceId);
    if (!old || old.State?.Name === 'terminated' || old.State?.Name === 'shutting-down') return;
    if (d.kind === 'asg') {
      await c.autoscaling.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: row.oldInstanceId, ShouldDecrementDesiredCapacity: true }));
    } else {
      await c.ec2.send(new TerminateInstancesCommand({ InstanceIds: [row.oldInstanceId] }));
    }
  }

  // --- Auto Scaling group members -------------------------------------------------------------

  private async group(c: ScopeClients, name: string): Promise<AutoScalingGroup> {
    const out = await c.autoscaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] }));
    const g = out.AutoScalingGroups?.[0];
    if (!g) throw new StepError(`Auto Scaling group ${name} not found`);
    return g;
  }

  private async prepareGroup(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<void> {
    const old = await this.describe(c, row.oldInstanceId);
    const name = old?.Tags?.find((t) => t.Key === 'aws:autoscaling:groupName')?.Value;
    if (!old || old.State?.Name !== 'running' || !name) throw new StepError(`${row.oldInstanceId} is no longer a running member of an Auto Scaling group`);
    const g = await this.group(c, name);
    const desired = g.DesiredCapacity ?? 0;
    d.asg = {
      name,
      originalDesired: desired,
      targetDesired: desired + 1,
      originalMax: g.MaxSize ?? desired,
      before: (g.Instances ?? []).flatMap((i) => (i.InstanceId ? [i.InstanceId] : [])),
    };
    d.targetGroups = (g.TargetGroupARNs ?? []).map((arn) => ({ arn, port: d.targetGroups.find((t) => t.arn === arn)?.port ?? 80 }));
  }

  /** Absolute values, so running it twice changes nothing more. */
  private async surge(c: ScopeClients, d: ReplacementData): Promise<void> {
    const asg = d.asg as NonNullable<ReplacementData['asg']>;
    if (asg.targetDesired > asg.originalMax) {
      await c.autoscaling.send(new UpdateAutoScalingGroupCommand({ AutoScalingGroupName: asg.name, MaxSize: asg.targetDesired }));
    }
    await c.autoscaling.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: asg.name, DesiredCapacity: asg.targetDesired, HonorCooldown: false }));
  }

  private async findNew(c: ScopeClients, row: ReplacementRow, d: ReplacementData): Promise<boolean> {
    const asg = d.asg as NonNullable<ReplacementData['asg']>;
    const g = await this.group(c, asg.name);
    const fresh = (g.Instances ?? []).find((i) => i.InstanceId && !asg.before.includes(i.InstanceId));
    if (!fresh?.InstanceId) return false;
    row.newInstanceId = fresh.InstanceId;
    return fresh.LifecycleState === 'InService' && fresh.HealthStatus === 'Healthy';
  }

  private async restoreMax(c: ScopeClients, d: ReplacementData): Promise<void> {
    const asg = d.asg;
    if (asg && asg.targetDesired > asg.originalMax) {
      await c.autoscaling.send(new UpdateAutoScalingGroupCommand({ AutoScalingGroupName: asg.name, MaxSize: asg.originalMax }));
    }
  }

  // --- waiting, rolling back ------------------------------------------------------------------

  private async waitFor(d: ReplacementData, step: string, ready: () => Promise<boolean>, failure: string, opts: { giveUp?: 'fail' | 'continue' } = {}): Promise<void> {
    const deadlines = (d.deadlines ??= {});
    const deadline = (deadlines[step] ??= Date.now() + d.healthTimeoutMs);
    let pause = this.deps.pollMs?.first ?? 1000;
    const longest = this.deps.pollMs?.max ?? 15_000;
    for (;;) {
      let lastError: unknown = null;
      try {
        if (await ready()) return;
      } catch (err) {
        // A poll that was throttled or timed out says nothing about the instance: poll again.
        if (!isTransient(err)) throw err;
        lastError = err;
        this.deps.logger.warn({ step, err: describeError(err) }, 'transient AWS error while waiting: polling again');
      }
      if (Date.now() >= deadline) {
        if (opts.giveUp === 'continue') return;
        if (lastError) throw lastError;
        throw new StepError(`${failure} within ${Math.round(d.healthTimeoutMs / 1000)} s`);
      }
      await this.sleep(Math.min(pause, Math.max(0, deadline - Date.now())));
      pause = Math.min(longest, pause * 1.5);
    }
  }

  private async sleep(ms: number): Promise<void> {
    const signal = this.deps.signal;
    if (signal?.aborted) throw new ParkedError('stopping');
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        signal?.removeEventListener('abort', abort);
        resolve();
      };
      const timer = setTimeout(done, ms);
      const abort = () => {
        clearTimeout(timer);
        reject(new ParkedError('stopping'));
      };
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  /** Removes the fresh instance; the old one was never taken out of service. Safe to run again. */
  private async rollback(start: ReplacementRow, reason: string): Promise<ReplacementRow> {
    const { store } = this.deps;
    const d = data(start);
    let row = store.journal(start.id, 'rollback', 'begin', { data: d, error: reason });
    const c = this.deps.clientsFor(scopeOf(row));
    try {
      let fresh = row.newInstanceId;
      if (!fresh && d.kind === 'standalone') {
        const found = await c.ec2.send(
          new DescribeInstancesCommand({ Filters: [{ Name: 'tag:pristine:replacement', Values: [String(row.id)] }, { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }] }),
        );
        fresh = found.Reservations?.flatMap((r) => r.Instances ?? [])[0]?.InstanceId ?? null;
      }
      if (d.kind === 'asg' && d.asg && !fresh) {
        const g = await this.group(c, d.asg.name);
        fresh = (g.Instances ?? []).find((i) => i.InstanceId && !d.asg?.before.includes(i.InstanceId))?.InstanceId ?? null;
      }
      if (fresh) {
        await deregister(c, fresh, d.targetGroups);
        const inst = await this.describe(c, fresh);
        if (inst && inst.State?.Name !== 'terminated' && inst.State?.Name !== 'shutting-down') {
          if (d.kind === 'asg') await c.autoscaling.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: fresh, ShouldDecrementDesiredCapacity: true }));
          else await c.ec2.send(new TerminateInstancesCommand({ InstanceIds: [fresh] }));
        }
      } else if (d.kind === 'asg' && d.asg) {
        const g = await this.group(c, d.asg.name);
        if ((g.DesiredCapacity ?? 0) > d.asg.originalDesired) {
          await c.autoscaling.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: d.asg.name, DesiredCapacity: d.asg.originalDesired, HonorCooldown: false }));
        }
      }
      await this.restoreMax(c, d);
    } catch (err) {
      // Still open: the next run retries the rollback from the journal.
      row = store.journal(row.id, 'rollback', 'fail', { error: `${reason}; rollback: ${describeError(err)}` });
      this.deps.logger.error({ replacement: row.id, err: describeError(err) }, 'rollback failed; it is retried next run');
      return row;
    }
    row = store.transaction(() => {
      const back = store.journal(row.id, 'rollback', 'end', { status: 'rolled-back', error: reason });
      this.progress(back, 'rollback', 'rolled-back', `Replacement rolled back (${reason}). A human needs to look. Retry with \`pristine replace ${back.oldInstanceId}\`.`, 'serving');
      return back;
    });
    this.deps.onOutcome?.('rolled-back');
    return row;
  }
}

/** Takes the instance out of every target group; one that is not (or no longer) in a group is fine. */
async function deregister(c: ScopeClients, instanceId: string, groups: readonly TargetGroupMembership[]): Promise<void> {
  for (const tg of groups) {
    try {
      await c.elbv2.send(new DeregisterTargetsCommand({ TargetGroupArn: tg.arn, Targets: [{ Id: instanceId, Port: tg.port }] }));
    } catch (err) {
      if (!notRegistered(err)) throw err;
    }
  }
}

/** The longest `deregistration_delay.timeout_seconds` of these target groups, in ms (ELB's default: 300 s). */
async function longestDeregistrationDelay(c: ScopeClients, groups: readonly TargetGroupMembership[]): Promise<number> {
  let longest = 0;
  for (const tg of groups) {
    const out = await c.elbv2.send(new DescribeTargetGroupAttributesCommand({ TargetGroupArn: tg.arn }));
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
    new DescribeLaunchTemplateVersionsCommand({
      LaunchTemplateId: lt.LaunchTemplateId,
      LaunchTemplateName: lt.LaunchTemplateId ? undefined : lt.LaunchTemplateName,
      Versions: [lt.Version ?? '$Default'],
    }),
  );
  return out.LaunchTemplateVersions?.[0]?.LaunchTemplateData?.ImageId ?? null;
}
