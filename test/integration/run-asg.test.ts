// Replacing an Auto Scaling group member goes through the group, and only when the group launches the
// recorded image. The real `pristine run` against moto's Auto Scaling and ELBv2.
import { DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling';
import { CreateLaunchTemplateVersionCommand, DescribeLaunchTemplatesCommand } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Scenario, after, type CycleReport } from '../support/scenario.js';

const POLICY = `
policies:
  - name: fleet
    scope: { tags: { team: core } }
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      notify: { slack: { channel: "#core" } }
      replace: { maxPerCycle: 5, maxUnavailable: 50%, minAge: 0s, healthTimeout: 2m }
      breaker: { taintedShare: 60% }
`;

describe('pristine run on Auto Scaling group members', () => {
  let s: Scenario;
  let tg: string;
  let members: string[];
  let drifting: string[];
  let report: CycleReport;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    const image = await s.image('core');
    const other = await s.image('core-next');
    tg = await s.targetGroup('core', []);
    members = await s.autoScalingGroup('core-asg', image, { team: 'core' }, { desired: 2, targetGroupArns: [tg] });
    drifting = await s.autoScalingGroup('drift-asg', image, { team: 'core' }, { desired: 2 });
    // The second group now launches another image than the one its instances were recorded with.
    const lt = await s.ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateNames: ['drift-asg-lt'] }));
    await s.ec2.send(new CreateLaunchTemplateVersionCommand({ LaunchTemplateId: lt.LaunchTemplates?.[0]?.LaunchTemplateId, LaunchTemplateData: { ImageId: other } }));
    const launched = await s.instances([{ Name: 'instance-id', Values: [members[0]!, drifting[0]!] }]);
    for (const i of launched) s.trail('ssm-start-session', i.InstanceId!, (i.LaunchTime?.getTime() ?? Date.now()) + 1000);
    await after(Math.max(...launched.map((i) => i.LaunchTime?.getTime() ?? 0)) + 1500);
    ({ report } = await s.cycle());
  });
  afterAll(() => s?.stop());

  it('replaces through the group: surge, the new member healthy in the target group, then the old one out, capacity back', async () => {
    const r = report.replacements.find((x) => x.oldInstanceId === members[0]);
    expect(r).toMatchObject({ status: 'done' });
    const group = (await s.autoscaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: ['core-asg'] }))).AutoScalingGroups?.[0];
    expect(group?.DesiredCapacity).toBe(2);
    const now = (group?.Instances ?? []).map((i) => i.InstanceId);
    expect(now).toContain(r?.newInstanceId);
    expect(now).not.toContain(members[0]);
    expect(await s.state(members[0]!)).toBe('terminated');
    const targets = await s.targets(tg);
    expect(targets[r!.newInstanceId!]).toBe('healthy');
    expect(targets[members[0]!]).toBeUndefined();
    const ops = s.fake.calls.map((c) => c.operation);
    expect(ops.indexOf('SetDesiredCapacity')).toBeLessThan(ops.indexOf('DeregisterTargets'));
    expect(ops.indexOf('DeregisterTargets')).toBeLessThan(ops.indexOf('TerminateInstanceInAutoScalingGroup'));
    expect(ops).not.toContain('RunInstances');
  });

  it('holds, and says why, when the group no longer launches the recorded image', async () => {
    const decision = report.actions.find((a) => a.instanceId === drifting[0]);
    expect(decision?.action).toMatchObject({ kind: 'hold', reason: expect.stringMatching(/drift-asg launches ami-\w+, not the recorded ami-\w+/) });
    expect(await s.state(drifting[0]!)).toBe('running');
    const alert = s.slack.topLevel('#core').find((m) => (m.text ?? '').includes(drifting[0]!));
    expect(JSON.stringify(alert?.blocks)).toContain('not the recorded');
  });
});
