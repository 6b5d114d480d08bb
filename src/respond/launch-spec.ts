import type { BlockDeviceMapping, Instance as Ec2Instance, RunInstancesCommandInput } from '@aws-sdk/client-ec2';
import type { ScopeClients } from '../collect/clients.js';
import { aws } from '../collect/aws-sdk.js';

/** IAM actions reading what a replacement must reproduce, and setting what RunInstances cannot. */
export const IAM_ACTIONS = [
  'ec2:DescribeImages',
  'ec2:DescribeInstanceCreditSpecifications',
  'ec2:DescribeVolumes',
  'ec2:ModifyInstanceAttribute',
  'ec2:AssociateAddress',
] as const;

/** The old instance's launch spec, as RunInstances takes it, and what is set after the launch. */
export type LaunchSpec = Pick<
  RunInstancesCommandInput,
  | 'ImageId'
  | 'InstanceType'
  | 'SubnetId'
  | 'SecurityGroupIds'
  | 'IamInstanceProfile'
  | 'KeyName'
  | 'UserData'
  | 'MetadataOptions'
  | 'Monitoring'
  | 'EbsOptimized'
  | 'Placement'
  | 'BlockDeviceMappings'
  | 'CreditSpecification'
  | 'CpuOptions'
  | 'LaunchTemplate'
> & {
  Tags: Array<{ Key: string; Value: string }>;
  /** set with ModifyInstanceAttribute once launched: RunInstances cannot (NAT instances turn it off) */
  SourceDestCheck?: boolean;
};

/** Burstable families have a credit specification (standard or unlimited). */
const BURSTABLE = /^t\d/;

/**
 * The block devices of the fresh instance: the image's devices (their snapshots), with the sizes,
 * types, IOPS, throughput and encryption of the old instance's own volumes; volumes the instance was
 * launched with beyond the image's are made empty, alike.
 */
async function blockDevices(c: ScopeClients, old: Ec2Instance, imageId: string): Promise<BlockDeviceMapping[] | undefined> {
  const mapped = (old.BlockDeviceMappings ?? []).filter((b) => b.DeviceName && b.Ebs?.VolumeId);
  if (mapped.length === 0) return undefined;
  const [image, volumes] = await Promise.all([
    c.ec2.send(new aws.EC2.DescribeImagesCommand({ ImageIds: [imageId] })),
    c.ec2.send(new aws.EC2.DescribeVolumesCommand({ VolumeIds: mapped.map((b) => b.Ebs?.VolumeId as string) })),
  ]);
  const fromImage = new Set((image.Images?.[0]?.BlockDeviceMappings ?? []).map((b) => b.DeviceName));
  const byId = new Map((volumes.Volumes ?? []).map((v) => [v.VolumeId, v]));
  return mapped.map((b) => {
    const v = byId.get(b.Ebs?.VolumeId);
    return {
      DeviceName: b.DeviceName,
      Ebs: {
        DeleteOnTermination: b.Ebs?.DeleteOnTermination ?? true,
        VolumeSize: v?.Size,
        VolumeType: v?.VolumeType,
        ...(v?.Iops !== undefined && (v.VolumeType === 'io1' || v.VolumeType === 'io2' || v.VolumeType === 'gp3') ? { Iops: v.Iops } : {}),
        ...(v?.Throughput !== undefined && v.VolumeType === 'gp3' ? { Throughput: v.Throughput } : {}),
        // A volume the image provides keeps the image's snapshot; encryption follows the old volume's.
        ...(v?.Encrypted ? { Encrypted: true, ...(v.KmsKeyId ? { KmsKeyId: v.KmsKeyId } : {}) } : fromImage.has(b.DeviceName) ? {} : { Encrypted: false }),
      },
    };
  });
}

/**
 * The old instance's launch spec: the recorded image with its type, network, profile, key, user
 * data, metadata options, monitoring, placement, volumes, credit specification, CPU options,
 * source/dest check, and its launch template (id and version) when it was launched from one.
 */
export async function readLaunchSpec(c: ScopeClients, old: Ec2Instance, imageId: string, userData: string | undefined, tags: LaunchSpec['Tags']): Promise<LaunchSpec> {
  const md = old.MetadataOptions;
  const tag = (key: string) => old.Tags?.find((t) => t.Key === key)?.Value;
  const templateId = tag('aws:ec2launchtemplate:id');
  const credit = old.InstanceType && BURSTABLE.test(old.InstanceType)
    ? (await c.ec2.send(new aws.EC2.DescribeInstanceCreditSpecificationsCommand({ InstanceIds: [old.InstanceId as string] }))).InstanceCreditSpecifications?.[0]?.CpuCredits
    : undefined;
  return {
    ImageId: imageId,
    InstanceType: old.InstanceType,
    SubnetId: old.SubnetId,
    SecurityGroupIds: (old.SecurityGroups ?? []).flatMap((g) => (g.GroupId ? [g.GroupId] : [])),
    IamInstanceProfile: old.IamInstanceProfile?.Arn ? { Arn: old.IamInstanceProfile.Arn } : undefined,
    KeyName: old.KeyName,
    UserData: userData,
    MetadataOptions: md ? { HttpTokens: md.HttpTokens, HttpPutResponseHopLimit: md.HttpPutResponseHopLimit, HttpEndpoint: md.HttpEndpoint, InstanceMetadataTags: md.InstanceMetadataTags } : undefined,
    Monitoring: { Enabled: old.Monitoring?.State === 'enabled' || old.Monitoring?.State === 'pending' },
    EbsOptimized: old.EbsOptimized,
    Placement: old.Placement?.AvailabilityZone ? { AvailabilityZone: old.Placement.AvailabilityZone, Tenancy: old.Placement.Tenancy, GroupName: old.Placement.GroupName || undefined } : undefined,
    BlockDeviceMappings: await blockDevices(c, old, imageId),
    ...(credit ? { CreditSpecification: { CpuCredits: credit } } : {}),
    ...(old.CpuOptions?.CoreCount && old.CpuOptions.ThreadsPerCore ? { CpuOptions: { CoreCount: old.CpuOptions.CoreCount, ThreadsPerCore: old.CpuOptions.ThreadsPerCore } } : {}),
    ...(templateId ? { LaunchTemplate: { LaunchTemplateId: templateId, Version: tag('aws:ec2launchtemplate:version') ?? '$Default' } } : {}),
    ...(old.SourceDestCheck === false ? { SourceDestCheck: false } : {}),
    Tags: tags,
  };
}
