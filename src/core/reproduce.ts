import type { Instance } from './facts.js';

/** What pristine knows of where an instance serves beyond its instance target groups and Auto Scaling group. */
export interface Attachments {
  /** Classic Load Balancers that list it */
  classicLoadBalancers: string[];
  /** `ip` target groups that hold one of its addresses */
  ipTargetGroups: string[];
  /** the Elastic IP associated with it */
  elasticIp: { allocationId: string; publicIp: string } | null;
  /** its instance type has instance store volumes */
  instanceStore: boolean;
}

/**
 * Why a fresh instance would not be a faithful copy, or would cut a path traffic takes to the old one:
 * pristine holds the replacement for a human rather than guess. Pure.
 */
export function reproductionHolds(instance: Instance, a: Attachments, opts: { moveElasticIp: boolean }): string[] {
  const reasons: string[] = [];
  if (instance.lifecycle === 'spot') reasons.push('it is a Spot instance: AWS may reclaim what pristine launches');
  if (instance.networkInterfaceIds.length > 1) reasons.push(`it has ${instance.networkInterfaceIds.length - 1} secondary network interface(s), which pristine does not move`);
  else if (instance.privateIpAddresses.length > 1) reasons.push('it has secondary private addresses, which pristine does not move');
  if (a.elasticIp && !opts.moveElasticIp) reasons.push(`it holds the Elastic IP ${a.elasticIp.publicIp}: set replace.moveElasticIp to move it to the fresh instance`);
  if (a.instanceStore) reasons.push(`its type ${instance.instanceType ?? ''} has instance store volumes, whose data a replacement loses`);
  if (a.classicLoadBalancers.length) reasons.push(`it serves behind the Classic Load Balancer ${a.classicLoadBalancers.join(', ')}, which pristine does not manage`);
  if (a.ipTargetGroups.length) reasons.push(`its address is a target of the ip target group ${a.ipTargetGroups.join(', ')}, which pristine does not move`);
  return reasons;
}
