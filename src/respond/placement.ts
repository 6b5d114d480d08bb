import { DescribeAutoScalingGroupsCommand, type AutoScalingGroup } from '@aws-sdk/client-auto-scaling';
import { DescribeTargetHealthCommand, paginateDescribeTargetGroups } from '@aws-sdk/client-elastic-load-balancing-v2';
import type { ScopeClients } from '../collect/clients.js';
import type { Placement } from '../core/plan.js';

/** IAM actions this reader calls. */
export const IAM_ACTIONS = ['elasticloadbalancing:DescribeTargetGroups', 'elasticloadbalancing:DescribeTargetHealth', 'autoscaling:DescribeAutoScalingGroups'] as const;

export interface TargetGroupMembership {
  arn: string;
  port: number;
}

export interface InstancePlacement extends Placement {
  targetGroups: TargetGroupMembership[];
  autoScalingGroup: AutoScalingGroup | null;
}

/**
 * Where each of the given instances serves: every target group that holds it (one DescribeTargetHealth
 * per target group in the region, not per instance) and its Auto Scaling group. Only called for
 * replacement candidates, so an audit in observe mode makes none of these calls.
 */
export async function readPlacement(
  clients: ScopeClients,
  instances: ReadonlyArray<{ instanceId: string; autoScalingGroup: string | null }>,
): Promise<Map<string, InstancePlacement>> {
  const out = new Map<string, InstancePlacement>();
  if (instances.length === 0) return out;
  const wanted = new Set(instances.map((i) => i.instanceId));
  for (const i of instances) out.set(i.instanceId, { groups: new Map(), targetGroups: [], autoScalingGroup: null });

  for await (const page of paginateDescribeTargetGroups({ client: clients.elbv2, pageSize: 400 }, {})) {
    for (const tg of page.TargetGroups ?? []) {
      if (!tg.TargetGroupArn || tg.TargetType !== 'instance') continue;
      const health = await clients.elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroupArn }));
      const members = (health.TargetHealthDescriptions ?? []).filter((d) => d.Target?.Id && d.TargetHealth?.State !== 'draining');
      for (const d of members) {
        const p = d.Target?.Id ? out.get(d.Target.Id) : undefined;
        if (!p || !wanted.has(d.Target?.Id ?? '')) continue;
        p.targetGroups.push({ arn: tg.TargetGroupArn, port: d.Target?.Port ?? tg.Port ?? 80 });
        p.groups.set(tg.TargetGroupArn, members.length);
      }
    }
  }

  const groupNames = [...new Set(instances.flatMap((i) => (i.autoScalingGroup ? [i.autoScalingGroup] : [])))];
  for (let i = 0; i < groupNames.length; i += 50) {
    const res = await clients.autoscaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: groupNames.slice(i, i + 50) }));
    for (const g of res.AutoScalingGroups ?? []) {
      for (const inst of instances) {
        if (inst.autoScalingGroup !== g.AutoScalingGroupName) continue;
        const p = out.get(inst.instanceId);
        if (!p) continue;
        p.autoScalingGroup = g;
        p.groups.set(`asg:${g.AutoScalingGroupName}`, g.DesiredCapacity ?? g.Instances?.length ?? 1);
      }
    }
  }
  return out;
}
