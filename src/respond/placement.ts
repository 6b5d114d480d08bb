import type { AutoScalingGroup } from '@aws-sdk/client-auto-scaling';
import type { _InstanceType } from '@aws-sdk/client-ec2';
import type { ScopeClients } from '../collect/clients.js';
import type { Instance } from '../core/facts.js';
import type { Placement } from '../core/plan.js';
import type { Attachments } from '../core/reproduce.js';
import { aws } from '../collect/aws-sdk.js';

/** IAM actions this reader calls. */
export const IAM_ACTIONS = [
  'elasticloadbalancing:DescribeTargetGroups',
  'elasticloadbalancing:DescribeTargetHealth',
  'elasticloadbalancing:DescribeLoadBalancers',
  'autoscaling:DescribeAutoScalingGroups',
  'ec2:DescribeAddresses',
  'ec2:DescribeInstanceTypes',
] as const;

export interface TargetGroupMembership {
  arn: string;
  port: number;
}

export interface InstancePlacement extends Placement, Attachments {
  targetGroups: TargetGroupMembership[];
  autoScalingGroup: AutoScalingGroup | null;
}

type Wanted = Pick<Instance, 'instanceId' | 'autoScalingGroup' | 'privateIpAddresses'> & { instanceType?: string | null };

/**
 * Where each of the given instances serves, read fleet-wide, never per instance: every target group
 * that holds it (one DescribeTargetHealth per target group), `ip` target groups that hold its addresses,
 * Classic Load Balancers that list it, its Elastic IP, whether its type has instance store, and its Auto
 * Scaling group. Only called for replacement candidates, so an audit in observe mode makes none of
 * these calls.
 */
export async function readPlacement(clients: ScopeClients, instances: readonly Wanted[]): Promise<Map<string, InstancePlacement>> {
  const out = new Map<string, InstancePlacement>();
  if (instances.length === 0) return out;
  for (const i of instances) {
    out.set(i.instanceId, { groups: new Map(), targetGroups: [], autoScalingGroup: null, classicLoadBalancers: [], ipTargetGroups: [], elasticIp: null, instanceStore: false });
  }
  const byIp = new Map<string, string>();
  for (const i of instances) for (const ip of i.privateIpAddresses ?? []) byIp.set(ip, i.instanceId);

  for await (const page of aws.ELBv2.paginateDescribeTargetGroups({ client: clients.elbv2, pageSize: 400 }, {})) {
    for (const tg of page.TargetGroups ?? []) {
      if (!tg.TargetGroupArn || (tg.TargetType !== 'instance' && tg.TargetType !== 'ip')) continue;
      const health = await clients.elbv2.send(new aws.ELBv2.DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroupArn }));
      const members = (health.TargetHealthDescriptions ?? []).filter((d) => d.Target?.Id && d.TargetHealth?.State !== 'draining');
      for (const d of members) {
        const id = tg.TargetType === 'ip' ? byIp.get(d.Target?.Id ?? '') : d.Target?.Id;
        const p = id ? out.get(id) : undefined;
        if (!p) continue;
        if (tg.TargetType === 'ip') {
          if (!p.ipTargetGroups.includes(tg.TargetGroupName ?? tg.TargetGroupArn)) p.ipTargetGroups.push(tg.TargetGroupName ?? tg.TargetGroupArn);
          continue;
        }
        p.targetGroups.push({ arn: tg.TargetGroupArn, port: d.Target?.Port ?? tg.Port ?? 80 });
        p.groups.set(tg.TargetGroupArn, members.length);
      }
    }
  }

  const classic = await clients.elb.send(new aws.ELB.DescribeLoadBalancersCommand({}));
  for (const lb of classic.LoadBalancerDescriptions ?? []) {
    for (const member of lb.Instances ?? []) {
      const p = member.InstanceId ? out.get(member.InstanceId) : undefined;
      if (p && lb.LoadBalancerName) p.classicLoadBalancers.push(lb.LoadBalancerName);
    }
  }

  const addresses = await clients.ec2.send(new aws.EC2.DescribeAddressesCommand({ Filters: [{ Name: 'instance-id', Values: instances.map((i) => i.instanceId) }] }));
  for (const a of addresses.Addresses ?? []) {
    const p = a.InstanceId ? out.get(a.InstanceId) : undefined;
    if (p && a.AllocationId && a.PublicIp) p.elasticIp = { allocationId: a.AllocationId, publicIp: a.PublicIp };
  }

  const types = [...new Set(instances.flatMap((i) => (i.instanceType ? [i.instanceType] : [])))];
  if (types.length) {
    const described = await clients.ec2.send(new aws.EC2.DescribeInstanceTypesCommand({ InstanceTypes: types as _InstanceType[] }));
    const withStore = new Set((described.InstanceTypes ?? []).filter((t) => t.InstanceStorageInfo?.Disks?.length).map((t) => t.InstanceType));
    for (const i of instances) if (i.instanceType && withStore.has(i.instanceType as _InstanceType)) (out.get(i.instanceId) as InstancePlacement).instanceStore = true;
  }

  const groupNames = [...new Set(instances.flatMap((i) => (i.autoScalingGroup ? [i.autoScalingGroup] : [])))];
  for (let i = 0; i < groupNames.length; i += 50) {
    const res = await clients.autoscaling.send(new aws.AutoScaling.DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: groupNames.slice(i, i + 50) }));
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
