import { paginateDescribeInstances, type EC2Client, type Instance as Ec2Instance } from '@aws-sdk/client-ec2';
import type { Instance } from '../core/facts.js';

/** IAM actions this collector calls. */
export const IAM_ACTIONS = ['ec2:DescribeInstances'] as const;

function toInstance(i: Ec2Instance, region: string, accountId: string | null): Instance | null {
  if (!i.InstanceId || !i.ImageId || !i.LaunchTime) return null;
  const tags: Record<string, string> = {};
  for (const t of i.Tags ?? []) if (t.Key) tags[t.Key] = t.Value ?? '';
  return {
    instanceId: i.InstanceId,
    region,
    accountId,
    imageId: i.ImageId,
    launchTime: i.LaunchTime.getTime(),
    state: i.State?.Name ?? 'unknown',
    name: tags['Name'] ?? null,
    tags,
    privateIpAddress: i.PrivateIpAddress ?? null,
    autoScalingGroup: tags['aws:autoscaling:groupName'] ?? null,
  };
}

/** Every running instance in the region, 1,000 a page. */
export async function listRunningInstances(ec2: EC2Client, region: string, signal?: AbortSignal): Promise<Instance[]> {
  const out: Instance[] = [];
  const pages = paginateDescribeInstances(
    { client: ec2, pageSize: 1000 },
    { Filters: [{ Name: 'instance-state-name', Values: ['running'] }] },
    { abortSignal: signal },
  );
  for await (const page of pages) {
    for (const r of page.Reservations ?? []) {
      for (const i of r.Instances ?? []) {
        const instance = toInstance(i, region, r.OwnerId ?? null);
        if (instance) out.push(instance);
      }
    }
  }
  return out;
}
