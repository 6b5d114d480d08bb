import type { InstanceStatus } from '@aws-sdk/client-ec2';
import type { ScopeClients } from '../collect/clients.js';
import { scopeKey, type Scope } from '../core/facts.js';
import { aws } from '../collect/aws-sdk.js';

/** DescribeInstanceStatus takes at most 100 instance ids a call. */
const STATUS_BATCH = 100;

/**
 * What every replacement waiting in one turn of the worker needs to know, read once for all of them:
 * one DescribeInstanceStatus per 100 fresh instances of a scope, and one DescribeTargetHealth per target
 * group (all its targets). A cache lives for one turn: the next turn reads afresh.
 */
export class PollCache {
  private readonly wanted = new Map<string, { scope: Scope; ids: Set<string> }>();
  private readonly statuses = new Map<string, Promise<Map<string, InstanceStatus>>>();
  private readonly targets = new Map<string, Promise<Map<string, string>>>();

  constructor(private readonly clientsFor: (scope: Scope) => ScopeClients) {}

  /** Announces an instance whose status this turn will ask for, so that one call reads them all. */
  want(scope: Scope, instanceId: string): void {
    const key = scopeKey(scope);
    const entry = this.wanted.get(key) ?? { scope, ids: new Set<string>() };
    entry.ids.add(instanceId);
    this.wanted.set(key, entry);
  }

  async status(scope: Scope, instanceId: string): Promise<InstanceStatus | undefined> {
    this.want(scope, instanceId);
    const key = scopeKey(scope);
    let read = this.statuses.get(key);
    if (!read || !(await read).has(instanceId)) {
      const ids = [...(this.wanted.get(key)?.ids ?? [])];
      read = (async () => {
        const out = new Map<string, InstanceStatus>();
        for (let i = 0; i < ids.length; i += STATUS_BATCH) {
          const page = await this.clientsFor(scope).ec2.send(new aws.EC2.DescribeInstanceStatusCommand({ InstanceIds: ids.slice(i, i + STATUS_BATCH), IncludeAllInstances: true }));
          for (const s of page.InstanceStatuses ?? []) if (s.InstanceId) out.set(s.InstanceId, s);
        }
        return out;
      })();
      this.statuses.set(key, read);
      read.catch(() => this.statuses.delete(key));
    }
    return (await read).get(instanceId);
  }

  /** `id:port` -> state, for every target registered in the group (a target absent is not registered). */
  async targetStates(scope: Scope, targetGroupArn: string): Promise<Map<string, string>> {
    let read = this.targets.get(targetGroupArn);
    if (!read) {
      read = (async () => {
        const out = await this.clientsFor(scope).elbv2.send(new aws.ELBv2.DescribeTargetHealthCommand({ TargetGroupArn: targetGroupArn }));
        return new Map((out.TargetHealthDescriptions ?? []).map((d) => [`${d.Target?.Id ?? ''}:${d.Target?.Port ?? ''}`, d.TargetHealth?.State ?? 'unknown']));
      })();
      this.targets.set(targetGroupArn, read);
      read.catch(() => this.targets.delete(targetGroupArn));
    }
    return read;
  }
}
