import { IAM_ACTIONS as CLOUDTRAIL } from './collect/cloudtrail.js';
import { IAM_ACTIONS as COMMANDS } from './collect/commands.js';
import { IAM_ACTIONS as INSTANCES } from './collect/instances.js';
import { IAM_ACTIONS as INVENTORY } from './collect/inventory.js';
import { IAM_ACTIONS as SESSIONS } from './collect/sessions.js';
import type { LoadedPolicy } from './policy/schema.js';
import { IAM_ACTIONS as PLACEMENT } from './respond/placement.js';
import { IAM_ACTIONS as REPLACEMENT } from './respond/replacement.js';

/** Every IAM action pristine may call, by what calls it: each collector and action declares its own. */
export const PERMISSIONS = {
  audit: [...INSTANCES, ...CLOUDTRAIL, ...SESSIONS, ...INVENTORY, ...COMMANDS],
  replace: [...PLACEMENT, ...REPLACEMENT],
} as const;

export function allDeclaredActions(): Set<string> {
  return new Set<string>([...PERMISSIONS.audit, ...PERMISSIONS.replace]);
}

/**
 * The least-privilege IAM policy document for these policies: audit always; replacement only with an
 * enforce policy, or when asked for (`pristine replace` works whatever the mode).
 */
export function iamPolicyFor(policies: readonly LoadedPolicy[], opts: { replace?: boolean } = {}): { Version: string; Statement: Array<Record<string, unknown>> } {
  const sorted = (xs: readonly string[]) => [...new Set(xs)].sort();
  const statements: Array<Record<string, unknown>> = [{ Sid: 'PristineAudit', Effect: 'Allow', Action: sorted(PERMISSIONS.audit), Resource: '*' }];
  if (opts.replace || policies.some((p) => p.respond.mode === 'enforce')) {
    const replace = PERMISSIONS.replace.filter((a) => a !== 'iam:PassRole');
    statements.push({ Sid: 'PristineReplace', Effect: 'Allow', Action: sorted(replace), Resource: '*' });
    statements.push({
      Sid: 'PristinePassInstanceRoles',
      Effect: 'Allow',
      Action: ['iam:PassRole'],
      Resource: '*',
      Condition: { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } },
    });
  }
  return { Version: '2012-10-17', Statement: statements };
}
