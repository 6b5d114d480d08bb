import { z } from 'zod';
import { SourcesConfig } from '../evidence/sources/registry.js';
import { Duration, Region } from '../core/schema-types.js';

const AccountId = z.string().regex(/^\d{12}$/, 'expected a 12-digit AWS account id');
const RoleArn = z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, 'expected an IAM role ARN such as arn:aws:iam::111122223333:role/PristineAudit');

const Account = z.strictObject({
  id: AccountId,
  name: z.string().min(1).optional(),
  /** assumed from pristine's own identity, never chained; optional for pristine's own account */
  role: RoleArn.optional(),
  externalId: z.string().min(2).optional(),
});
export type AccountConfig = z.output<typeof Account>;

const Organization = z.strictObject({
  /** the role's name in each member account (e.g. the StackSet's PristineAudit) */
  role: z.string().regex(/^[\w+=,.@/-]+$/, 'expected an IAM role name such as PristineAudit'),
  externalId: z.string().min(2).optional(),
  include: z.strictObject({ ous: z.array(z.string().regex(/^(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|r-[a-z0-9]{4,32})$/, 'expected an OU id such as ou-ab12-cd34ef56 or a root id')).min(1) }).optional(),
  exclude: z.strictObject({ accounts: z.array(AccountId).default([]) }).optional(),
});
export type OrganizationConfig = z.output<typeof Organization>;

/** pristine.yaml: which accounts and regions to audit, and where evidence comes from. */
export const Config = z
  .strictObject({
    /** default: the account of pristine's own credentials */
    accounts: z.array(Account).min(1).optional(),
    /** discover the member accounts through AWS Organizations */
    organization: Organization.optional(),
    /** default: the policies' scope.regions, else the SDK's region */
    regions: z.array(Region).min(1).optional(),
    sources: SourcesConfig,
    /** how many (account, region) scopes are read side by side */
    concurrency: z.number().int().min(1).max(64).default(8),
    /** a replica (or a replacement's driver) that stops renewing its leases (it died, or hangs) loses them after this */
    leaseTtl: Duration.prefault('60s'),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.accounts?.forEach((a, i) => {
      if (seen.has(a.id)) ctx.addIssue({ code: 'custom', path: ['accounts', i, 'id'], message: `account ${a.id} is listed twice` });
      seen.add(a.id);
    });
  });
export type Config = z.output<typeof Config>;
