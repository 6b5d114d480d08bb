import { IAM_ACTIONS as ACCOUNTS, ORGANIZATION_IAM_ACTIONS as ORGANIZATION } from './accounts/resolve.js';
import { IAM_ACTIONS as INSTANCES } from './collect/instances.js';
import { IAM_ACTIONS as REFERENCES } from './collect/references.js';
import type { Config } from './config/schema.js';
import { SOURCES } from './evidence/sources/registry.js';
import type { LoadedPolicy } from './policy/schema.js';
import { IAM_ACTIONS as LAUNCH_SPEC } from './respond/launch-spec.js';
import { IAM_ACTIONS as PLACEMENT } from './respond/placement.js';
import { IAM_ACTIONS as REPLACEMENT } from './respond/replacement.js';

/** Every IAM action pristine may call, by what calls it: each collector, source and action declares its own. */
export const PERMISSIONS = {
  /** read-only calls in each audited account */
  audit: [...INSTANCES, ...REFERENCES, ...SOURCES.flatMap((s) => s.iam.member)],
  /** calls of a replacement, in the instance's account */
  replace: [...PLACEMENT, ...LAUNCH_SPEC, ...REPLACEMENT],
  /** calls with pristine's own identity: who it is, the organisation, the event queues and the trail bucket */
  own: [...ACCOUNTS, ...ORGANIZATION, ...SOURCES.flatMap((s) => ('pristine' in s.iam ? s.iam.pristine : []))],
} as const;

export function allDeclaredActions(): Set<string> {
  return new Set<string>([...PERMISSIONS.audit, ...PERMISSIONS.replace, ...PERMISSIONS.own, 'sts:AssumeRole']);
}

export interface PolicyDocument {
  Version: string;
  Statement: Array<Record<string, unknown>>;
}

const sorted = (xs: readonly string[]) => [...new Set(xs)].sort();

/** The member-account side: the audit's reads, and what a replacement calls when a policy enforces (or when asked). */
function memberStatements(policies: readonly LoadedPolicy[], opts: { replace?: boolean }): Array<Record<string, unknown>> {
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
  return statements;
}

/** `arn:aws:sqs:REGION:ACCOUNT:NAME` from a queue URL; `*` when the URL is not of the usual form. */
export function queueArn(url: string): string {
  const m = /^https:\/\/sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/(\d{12})\/([^/?]+)/.exec(url);
  return m ? `arn:aws:sqs:${m[1]}:${m[2]}:${m[3]}` : '*';
}

/** pristine's own identity: queues and trail bucket in any case; with other accounts, the roles it assumes and the organisation. */
function ownStatements(config: Config): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  const roles = [
    ...(config.accounts ?? []).flatMap((a) => (a.role ? [a.role] : [])),
    ...(config.organization ? [`arn:aws:iam::*:role/${config.organization.role}`] : []),
  ];
  if (roles.length) out.push({ Sid: 'PristineAssumeMemberRoles', Effect: 'Allow', Action: ['sts:AssumeRole'], Resource: sorted(roles) });
  if (config.organization) out.push({ Sid: 'PristineListAccounts', Effect: 'Allow', Action: sorted(ORGANIZATION), Resource: '*' });
  const queues = config.sources.queues;
  if (queues.length) {
    out.push({ Sid: 'PristineEventQueues', Effect: 'Allow', Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:ReceiveMessage'], Resource: sorted(queues.map(queueArn)) });
  }
  if (queues.length || config.sources.s3.requireDigests) {
    const bucket = config.sources.s3.bucket;
    // Without a configured bucket, pristine reads the bucket the queue announces: CloudTrail's keys only.
    const objects = bucket ? [`arn:aws:s3:::${bucket}/*`] : ['arn:aws:s3:::*/AWSLogs/*'];
    out.push({ Sid: 'PristineTrailFiles', Effect: 'Allow', Action: ['s3:GetObject'], Resource: objects });
    if (config.sources.s3.requireDigests) out.push({ Sid: 'PristineTrailDigests', Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [bucket ? `arn:aws:s3:::${bucket}` : 'arn:aws:s3:::*'] });
  }
  return out;
}

/**
 * The least-privilege IAM policy document for these policies, for a single account: audit always;
 * replacement only with an enforce policy, or when asked for (`pristine replace` works whatever the
 * mode); and the event queues and trail bucket when the config names them.
 */
export function iamPolicyFor(policies: readonly LoadedPolicy[], opts: { replace?: boolean; config?: Config } = {}): PolicyDocument {
  return { Version: '2012-10-17', Statement: [...memberStatements(policies, opts), ...(opts.config ? ownStatements(opts.config) : [])] };
}

/** Whether pristine reaches beyond its own account (then it needs two policies: its own, and the member role's). */
export function isMultiAccount(config: Config): boolean {
  return Boolean(config.organization || config.accounts?.some((a) => a.role));
}

/**
 * For an organisation: pristine's own policy (assume the member roles, list the organisation, read the
 * queues and the trail bucket, and audit its own account when that is in scope) and the member role's (the audit's reads, and replacement when enforced).
 */
export function iamPoliciesFor(policies: readonly LoadedPolicy[], config: Config, opts: { replace?: boolean } = {}): { pristine: PolicyDocument; memberRole: PolicyDocument } {
  // Its own account is audited with its own credentials when the organisation includes it or a listed account has no role.
  const ownAudited = Boolean(config.organization) || (config.accounts ?? []).some((a) => !a.role);
  return {
    pristine: { Version: '2012-10-17', Statement: [...ownStatements(config), ...(ownAudited ? memberStatements(policies, opts) : [])] },
    memberRole: { Version: '2012-10-17', Statement: memberStatements(policies, opts) },
  };
}
