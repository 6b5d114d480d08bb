import type { EC2Client, Instance as Ec2Instance } from '@aws-sdk/client-ec2';
import type { Instance, Scope } from '../core/facts.js';
import { aws } from './aws-sdk.js';

/** IAM actions this collector calls. */
export const IAM_ACTIONS = ['ec2:DescribeInstances'] as const;

/**
 * When an instance was first launched. EC2's LaunchTime is the time it was last *started*: a
 * stop/start moves it. The primary network interface (device index 0) is attached at launch and
 * cannot be detached, so its attach time stays. Without one (it should not happen in a VPC), the
 * earliest of every attach time pristine can see, and LaunchTime.
 */
export function firstLaunchOf(i: Ec2Instance): number | null {
  const primary = i.NetworkInterfaces?.find((n) => n.Attachment?.DeviceIndex === 0)?.Attachment?.AttachTime;
  if (primary) return primary.getTime();
  const times = [
    i.LaunchTime?.getTime(),
    ...(i.NetworkInterfaces ?? []).map((n) => n.Attachment?.AttachTime?.getTime()),
    ...(i.BlockDeviceMappings ?? []).map((b) => b.Ebs?.AttachTime?.getTime()),
  ].filter((t): t is number => typeof t === 'number');
  return times.length ? Math.min(...times) : null;
}

export function toInstance(i: Ec2Instance, scope: Scope): Instance | null {
  if (!i.InstanceId || !i.ImageId || !i.LaunchTime) return null;
  const tags: Record<string, string> = {};
  for (const t of i.Tags ?? []) if (t.Key) tags[t.Key] = t.Value ?? '';
  const launchTime = i.LaunchTime.getTime();
  const ips = new Set<string>();
  if (i.PrivateIpAddress) ips.add(i.PrivateIpAddress);
  for (const n of i.NetworkInterfaces ?? []) for (const a of n.PrivateIpAddresses ?? []) if (a.PrivateIpAddress) ips.add(a.PrivateIpAddress);
  return {
    instanceId: i.InstanceId,
    region: scope.region,
    accountId: scope.accountId,
    imageId: i.ImageId,
    launchTime,
    firstLaunch: Math.min(firstLaunchOf(i) ?? launchTime, launchTime),
    state: i.State?.Name ?? 'unknown',
    name: tags['Name'] ?? null,
    tags,
    privateIpAddress: i.PrivateIpAddress ?? null,
    vpcId: i.VpcId ?? null,
    privateIpAddresses: [...ips],
    networkInterfaceIds: (i.NetworkInterfaces ?? []).flatMap((n) => (n.NetworkInterfaceId ? [n.NetworkInterfaceId] : [])),
    volumeIds: (i.BlockDeviceMappings ?? []).flatMap((b) => (b.Ebs?.VolumeId ? [b.Ebs.VolumeId] : [])),
    autoScalingGroup: tags['aws:autoscaling:groupName'] ?? null,
    instanceType: i.InstanceType ?? null,
    lifecycle: i.InstanceLifecycle ?? null,
  };
}

/** Every running instance in the scope, 1,000 a page. */
export async function listRunningInstances(ec2: EC2Client, scope: Scope, signal?: AbortSignal): Promise<Instance[]> {
  const out: Instance[] = [];
  const pages = aws.EC2.paginateDescribeInstances(
    { client: ec2, pageSize: 1000 },
    { Filters: [{ Name: 'instance-state-name', Values: ['running'] }] },
    { abortSignal: signal },
  );
  for await (const page of pages) {
    for (const r of page.Reservations ?? []) {
      for (const i of r.Instances ?? []) {
        const instance = toInstance(i, scope);
        if (instance) out.push(instance);
      }
    }
  }
  return out;
}
