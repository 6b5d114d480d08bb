import { describe, expect, it } from 'vitest';
import { reproductionHolds, type Attachments } from '../../src/core/reproduce.js';
import { instance } from '../support/facts.js';

const none: Attachments = { classicLoadBalancers: [], ipTargetGroups: [], elasticIp: null, instanceStore: false };

describe('reproductionHolds: what a fresh instance could not reproduce', () => {
  it('is nothing for a plain instance behind instance target groups', () => {
    expect(reproductionHolds(instance(), none, { moveElasticIp: false })).toEqual([]);
  });

  it('holds an Elastic IP unless the policy moves it', () => {
    const eip = { ...none, elasticIp: { allocationId: 'eipalloc-1', publicIp: '203.0.113.9' } };
    expect(reproductionHolds(instance(), eip, { moveElasticIp: false })).toEqual(['it holds the Elastic IP 203.0.113.9: set replace.moveElasticIp to move it to the fresh instance']);
    expect(reproductionHolds(instance(), eip, { moveElasticIp: true })).toEqual([]);
  });

  it('holds a secondary interface or address, a Classic ELB, an ip target group, instance store, Spot', () => {
    const i = instance({ networkInterfaceIds: ['eni-1', 'eni-2'], lifecycle: 'spot', instanceType: 'm5d.large' });
    const reasons = reproductionHolds(i, { ...none, classicLoadBalancers: ['legacy-web'], ipTargetGroups: ['nlb-ip'], instanceStore: true }, { moveElasticIp: false });
    expect(reasons).toEqual([
      'it is a Spot instance: AWS may reclaim what pristine launches',
      'it has 1 secondary network interface(s), which pristine does not move',
      'its type m5d.large has instance store volumes, whose data a replacement loses',
      'it serves behind the Classic Load Balancer legacy-web, which pristine does not manage',
      'its address is a target of the ip target group nlb-ip, which pristine does not move',
    ]);
    expect(reproductionHolds(instance({ privateIpAddresses: ['10.0.1.15', '10.0.1.16'] }), none, { moveElasticIp: false })).toEqual([
      'it has secondary private addresses, which pristine does not move',
    ]);
  });
});
