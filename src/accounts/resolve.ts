import type { Account as OrgAccount, OrganizationsClient } from '@aws-sdk/client-organizations';
import type { STSClient } from '@aws-sdk/client-sts';
import type { AccountAccess } from '../collect/clients.js';
import type { Config } from '../config/schema.js';
import { describeError, InputError } from '../errors.js';
import { aws } from '../collect/aws-sdk.js';

/** IAM actions account discovery calls, with pristine's own identity. */
export const IAM_ACTIONS = ['sts:GetCallerIdentity'] as const;
export const ORGANIZATION_IAM_ACTIONS = ['organizations:ListAccounts', 'organizations:ListAccountsForParent', 'organizations:ListOrganizationalUnitsForParent'] as const;

/** An account pristine audits, and how it acts there. */
export interface Account extends AccountAccess {
  name: string | null;
  /** how pristine came to audit it */
  from: 'own' | 'accounts' | 'organization';
}

export interface ResolvedAccounts {
  /** the account of pristine's own credentials */
  ownAccountId: string;
  partition: string;
  accounts: Account[];
  /** discovery that failed: the report says so, and is incomplete */
  errors: Array<{ source: string; message: string }>;
}

/** pristine's own account and partition, from STS GetCallerIdentity. */
export async function ownIdentity(sts: STSClient): Promise<{ accountId: string; partition: string }> {
  const me = await sts.send(new aws.STS.GetCallerIdentityCommand({}));
  if (!me.Account) throw new Error('STS GetCallerIdentity returned no account');
  return { accountId: me.Account, partition: /^arn:([^:]+):/.exec(me.Arn ?? '')?.[1] ?? 'aws' };
}

/** Every account under an OU or root, nested OUs included. */
async function accountsUnder(org: OrganizationsClient, parentId: string): Promise<OrgAccount[]> {
  const out: OrgAccount[] = [];
  for await (const page of aws.Organizations.paginateListAccountsForParent({ client: org }, { ParentId: parentId })) out.push(...(page.Accounts ?? []));
  for await (const page of aws.Organizations.paginateListOrganizationalUnitsForParent({ client: org }, { ParentId: parentId })) {
    for (const ou of page.OrganizationalUnits ?? []) if (ou.Id) out.push(...(await accountsUnder(org, ou.Id)));
  }
  return out;
}

/**
 * The accounts to audit: those the config lists, those AWS Organizations lists (active ones, within the
 * included OUs, minus the excluded), and otherwise pristine's own. pristine's own account is read
 * with its own credentials unless the config names a role for it. A listed account other than its own
 * needs a role (exit 2). An Organizations call that fails is an error in the report, not a crash: the
 * accounts it would have listed are missing, so the audit is incomplete.
 */
export async function resolveAccounts(config: Config, clients: { sts: () => STSClient; organizations: () => OrganizationsClient }, configFile: string | null): Promise<ResolvedAccounts> {
  const own = await ownIdentity(clients.sts());
  const out: ResolvedAccounts = { ownAccountId: own.accountId, partition: own.partition, accounts: [], errors: [] };
  const byId = new Map<string, Account>();
  config.accounts?.forEach((a, i) => {
    if (!a.role && a.id !== own.accountId) {
      throw new InputError(`${configFile ?? 'config'}: accounts[${i}].role: account ${a.id} is not pristine's own (${own.accountId}): name the role to assume in it`);
    }
    byId.set(a.id, { id: a.id, name: a.name ?? null, role: a.role ?? null, externalId: a.externalId ?? null, from: 'accounts' });
  });
  if (config.organization) {
    const o = config.organization;
    try {
      const org = clients.organizations();
      let listed: OrgAccount[];
      if (o.include) {
        listed = [];
        for (const ou of o.include.ous) listed.push(...(await accountsUnder(org, ou)));
      } else {
        listed = [];
        for await (const page of aws.Organizations.paginateListAccounts({ client: org }, {})) listed.push(...(page.Accounts ?? []));
      }
      const excluded = new Set(o.exclude?.accounts ?? []);
      for (const a of listed) {
        if (!a.Id || excluded.has(a.Id) || byId.has(a.Id)) continue;
        // Suspended and closing accounts have no instances to audit and refuse the role.
        if ((a.State ?? a.Status) && (a.State ?? a.Status) !== 'ACTIVE') continue;
        const self = a.Id === own.accountId;
        byId.set(a.Id, {
          id: a.Id,
          name: a.Name ?? null,
          role: self ? null : `arn:${own.partition}:iam::${a.Id}:role/${o.role}`,
          externalId: self ? null : (o.externalId ?? null),
          from: 'organization',
        });
      }
    } catch (err) {
      out.errors.push({ source: 'organizations', message: `listing the organisation's accounts failed: ${describeError(err)}` });
    }
  }
  if (byId.size === 0 && !config.organization) byId.set(own.accountId, { id: own.accountId, name: null, role: null, externalId: null, from: 'own' });
  out.accounts = [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  return out;
}
