// A replacement is a faithful copy of the old instance, or it does not happen: volumes, credit
// specification, launch template and tags carried over (the exemption tag not), draining as long as the
// target group says, and instances pristine cannot reproduce held with the reason. Against moto.
import { AssociateAddressCommand, AllocateAddressCommand, AttachNetworkInterfaceCommand, CreateLaunchTemplateCommand, CreateNetworkInterfaceCommand, DescribeVolumesCommand, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { CreateLoadBalancerCommand, ElasticLoadBalancingClient, RegisterInstancesWithLoadBalancerCommand } from '@aws-sdk/client-elastic-load-balancing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREDENTIALS, MALLORY, REGION, Scenario, after, type CycleReport, type Launched } from '../support/scenario.js';

const DRAIN_SECONDS = 20;

const POLICY = `
policies:
  - name: web
    scope:
      tags: { role: web }
      exclude: { tags: { "pristine:exempt": "true" } }
    detect: { interactive-session: {}, guard-tampered: {} }
    respond:
      mode: enforce
      replace: { maxPerCycle: 5, maxUnavailable: 100%, minAge: 0s, healthTimeout: 2m }
      breaker: { taintedShare: 100% }
`;

describe('a replacement, faithful or held', () => {
  let s: Scenario;
  let faithful: Launched;
  let withAddress: Launched;
  let withInterface: Launched;
  let inClassic: Launched;
  let templateId: string;
  let tg: string;
  let report: CycleReport;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    const image = await s.image('web');
    const { subnetId } = await s.defaultSubnet();

    // Launched from a launch template, burstable with unlimited credits, a 20 GiB gp3 root, an exemption tag someone added by hand.
    const lt = await s.ec2.send(
      new CreateLaunchTemplateCommand({ LaunchTemplateName: 'web-lt', LaunchTemplateData: { ImageId: image, InstanceType: 't3.micro', CreditSpecification: { CpuCredits: 'unlimited' } } }),
    );
    templateId = lt.LaunchTemplate!.LaunchTemplateId!;
    const run = await s.ec2.send(
      new RunInstancesCommand({
        MinCount: 1,
        MaxCount: 1,
        LaunchTemplate: { LaunchTemplateId: templateId, Version: '1' },
        SubnetId: subnetId,
        CreditSpecification: { CpuCredits: 'unlimited' },
        BlockDeviceMappings: [{ DeviceName: '/dev/sda1', Ebs: { VolumeSize: 20, VolumeType: 'gp3', DeleteOnTermination: true } }],
        TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'role', Value: 'web' }, { Key: 'Name', Value: 'web-1' }, { Key: 'pristine:exempt', Value: 'true' }] }],
      }),
    );
    const i = run.Instances![0]!;
    faithful = { instanceId: i.InstanceId!, launchTime: i.LaunchTime!.getTime(), privateIpAddress: i.PrivateIpAddress! };
    s.cleanInventory(faithful.instanceId);
    s.fake.ec2.creditSpecs.set(faithful.instanceId, 'unlimited'); // moto reports every instance `standard`
    tg = await s.targetGroup('web', [faithful.instanceId], 80, { deregistrationDelaySeconds: DRAIN_SECONDS });

    withAddress = await s.launchOne(image, { role: 'web', Name: 'bastion' });
    const eip = await s.ec2.send(new AllocateAddressCommand({ Domain: 'vpc' }));
    await s.ec2.send(new AssociateAddressCommand({ AllocationId: eip.AllocationId, InstanceId: withAddress.instanceId }));

    withInterface = await s.launchOne(image, { role: 'web', Name: 'nat' });
    const eni = await s.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnetId }));
    await s.ec2.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: eni.NetworkInterface!.NetworkInterfaceId, InstanceId: withInterface.instanceId, DeviceIndex: 1 }));

    inClassic = await s.launchOne(image, { role: 'web', Name: 'legacy' });
    const elb = new ElasticLoadBalancingClient({ region: REGION, endpoint: s.moto.url, credentials: CREDENTIALS });
    await elb.send(new CreateLoadBalancerCommand({ LoadBalancerName: 'legacy-web', Listeners: [{ Protocol: 'HTTP', LoadBalancerPort: 80, InstancePort: 80 }], AvailabilityZones: [`${REGION}a`] }));
    await elb.send(new RegisterInstancesWithLoadBalancerCommand({ LoadBalancerName: 'legacy-web', Instances: [{ InstanceId: inClassic.instanceId }] }));
    elb.destroy();

    s.trail('ec2-create-tags-exempt', faithful.instanceId, faithful.launchTime + 1000, MALLORY);
    for (const l of [withAddress, withInterface, inClassic]) s.trail('ssm-start-session', l.instanceId, l.launchTime + 1000, MALLORY);
    await after(Math.max(faithful.launchTime, withAddress.launchTime, withInterface.launchTime, inClassic.launchTime) + 1500);
    s.fake.calls.length = 0;
    report = (await s.cycle([], {})).report;
  });
  afterAll(() => s?.stop());

  it('holds what it cannot reproduce, with the reason: an Elastic IP, a secondary interface, a Classic Load Balancer', () => {
    const action = (id: string) => report.actions.find((a) => a.instanceId === id)?.action;
    expect(action(withAddress.instanceId)).toEqual({ kind: 'hold', reason: expect.stringMatching(/holds the Elastic IP [\d.]+: set replace\.moveElasticIp/) });
    expect(action(withInterface.instanceId)).toEqual({ kind: 'hold', reason: expect.stringMatching(/1 secondary network interface/) });
    expect(action(inClassic.instanceId)).toEqual({ kind: 'hold', reason: expect.stringMatching(/Classic Load Balancer legacy-web/) });
    for (const id of [withAddress, withInterface, inClassic].map((l) => l.instanceId)) expect(report.replacements.some((r) => r.oldInstanceId === id)).toBe(false);
  });

  it('reproduces the volumes, the credit specification and the launch template, without the forged exemption', async () => {
    const r = report.replacements.find((x) => x.oldInstanceId === faithful.instanceId);
    expect(r).toMatchObject({ status: 'done' });
    const [fresh] = await s.instances([{ Name: 'instance-id', Values: [r!.newInstanceId!] }]);
    const tags = Object.fromEntries((fresh?.Tags ?? []).map((t) => [t.Key, t.Value]));
    expect(tags).toMatchObject({ role: 'web', Name: 'web-1', 'pristine:replaces': faithful.instanceId });
    expect(tags['pristine:exempt']).toBeUndefined();
    expect(fresh?.InstanceType).toBe('t3.micro');
    const volumes = await s.ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [fresh!.InstanceId!] }] }));
    expect(volumes.Volumes?.map((v) => [v.Size, v.VolumeType])).toContainEqual([20, 'gp3']);
    // What pristine asked EC2 for, whatever moto makes of it.
    const run = new URLSearchParams(s.fake.calls.find((c) => c.operation === 'RunInstances')!.body);
    expect(run.get('LaunchTemplate.LaunchTemplateId')).toBe(templateId);
    expect(run.get('CreditSpecification.CpuCredits')).toBe('unlimited');
    expect(run.get('BlockDeviceMapping.1.Ebs.VolumeSize')).toBe('20');
    expect(run.get('BlockDeviceMapping.1.Ebs.VolumeType')).toBe('gp3');
  });

  it('terminates the old instance only once the target group\'s deregistration delay has passed', async () => {
    const deregistered = s.fake.calls.find((c) => c.operation === 'DeregisterTargets')!;
    const terminated = s.fake.calls.find((c) => c.operation === 'TerminateInstances')!;
    expect(terminated.at - deregistered.at).toBeGreaterThanOrEqual(DRAIN_SECONDS * 1000);
    expect(await s.state(faithful.instanceId)).toBe('terminated');
    expect(Object.keys(await s.targets(tg))).not.toContain(faithful.instanceId);
  });
});

describe('a transient AWS error during a replacement', () => {
  let s: Scenario;
  let web: Launched[];

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    web = await s.launch(await s.image('web'), { role: 'web' }, { count: 2 });
    await s.targetGroup('web', web.map((w) => w.instanceId));
    s.trail('ssm-start-session', web[0]!.instanceId, web[0]!.launchTime + 1000, MALLORY);
    await after(Math.max(...web.map((w) => w.launchTime)) + 1500);
  });
  afterAll(() => s?.stop());

  it('is tried again within the step\'s deadline: a throttled DescribeTargetHealth does not roll the replacement back', async () => {
    // Start it without driving it, then throttle the polls more than the SDK's own retries absorb.
    await s.cycle(['--wait', '0s'], {});
    s.fake.fail('DescribeTargetHealth', { code: 'Throttling', message: 'Rate exceeded', times: 8 });
    const { report, stderr } = await s.cycle(['--log-level', 'warn'], {});
    const throttled = s.fake.callsTo('DescribeTargetHealth').filter((c) => c.errorCode === 'Throttling');
    expect(throttled.length).toBeGreaterThanOrEqual(6);
    expect(report.replacements).toEqual([expect.objectContaining({ oldInstanceId: web[0]!.instanceId, status: 'done' })]);
    expect(stderr).toMatch(/transient AWS error/);
    expect(await s.state(web[0]!.instanceId)).toBe('terminated');
  });
});
