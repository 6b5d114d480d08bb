import { describe, expect, it } from 'vitest';
import { allDeclaredActions, iamPolicyFor, PERMISSIONS } from '../../src/permissions.js';
import { policies } from '../support/facts.js';

const observe = policies('policies:\n  - name: a\n    detect: { interactive-session: {} }\n');
const enforce = policies('policies:\n  - name: a\n    detect: { interactive-session: {} }\n    respond: { mode: enforce }\n');
const actionsOf = (doc: ReturnType<typeof iamPolicyFor>) => doc.Statement.flatMap((s) => s.Action as string[]);

describe('pristine policy iam', () => {
  it('grants only the read-only audit calls when every policy observes', () => {
    const actions = actionsOf(iamPolicyFor(observe));
    expect(actions.sort()).toEqual([...PERMISSIONS.audit].sort());
    expect(actions.every((a) => /:(Describe|Get|List|Lookup)/.test(a))).toBe(true);
  });

  it('adds what a replacement calls when a policy enforces, or when asked', () => {
    for (const doc of [iamPolicyFor(enforce), iamPolicyFor(observe, { replace: true })]) {
      const actions = actionsOf(doc);
      expect(actions).toEqual(expect.arrayContaining(['ec2:RunInstances', 'ec2:TerminateInstances', 'elasticloadbalancing:RegisterTargets', 'autoscaling:SetDesiredCapacity', 'iam:PassRole']));
      expect(new Set(actions)).toEqual(new Set([...PERMISSIONS.audit, ...PERMISSIONS.replace]));
      expect([...new Set(actions)].every((x) => allDeclaredActions().has(x))).toBe(true);
    }
  });

  it('limits iam:PassRole to passing roles to EC2', () => {
    const pass = iamPolicyFor(enforce).Statement.find((s) => (s.Action as string[]).includes('iam:PassRole'));
    expect(pass?.Condition).toEqual({ StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } });
    expect(pass?.Action).toEqual(['iam:PassRole']);
  });
});
