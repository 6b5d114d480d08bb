import type { SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { scopeKey, type InventorySnapshot, type Package } from '../../../core/facts.js';
import { describeError } from '../../../errors.js';
import { InventoryCatalog } from './catalog.js';
import type { PullContext, PullResult, SourceDefinition } from '../types.js';
import { aws } from '../../../collect/aws-sdk.js';

export const IAM_ACTIONS = ['ssm:GetInventory'] as const;

/** `sources.ssmInventory`: no options yet; the key is reserved. */
export const SsmInventoryConfig = z.strictObject({}).prefault({});
export type SsmInventoryConfig = z.output<typeof SsmInventoryConfig>;

const TYPE = 'AWS:Application';

/** One inventory's AWS:Application rows as packages (versions normalised), outside any catalog. */
export function toPackages(content: ReadonlyArray<Record<string, string>>): Package[] {
  return new InventoryCatalog().toPackages(content);
}

/** The inventories of each scope, kept for the life of the process: what is unchanged is not normalised again. */
const catalogs = new Map<string, InventoryCatalog>();
function catalogOf(key: string): InventoryCatalog {
  let c = catalogs.get(key);
  if (!c) {
    c = new InventoryCatalog();
    catalogs.set(key, c);
  }
  return c;
}

/**
 * Installed packages of every managed instance in the scope: GetInventory serves 50 instances a
 * call, where ListInventoryEntries would need a call per 50 packages per instance. Each result is
 * fingerprinted by its ContentHash; a catalog given here remembers them between reads.
 */
export async function readInventory(
  ssm: SSMClient,
  signal?: AbortSignal,
  catalog: InventoryCatalog = new InventoryCatalog(),
): Promise<Map<string, InventorySnapshot>> {
  const out = new Map<string, InventorySnapshot>();
  const pages = aws.SSM.paginateGetInventory({ client: ssm, pageSize: 50 }, { ResultAttributes: [{ TypeName: TYPE }] }, { abortSignal: signal });
  for await (const page of pages) {
    for (const entity of page.Entities ?? []) {
      const data = entity.Id ? entity.Data?.[TYPE] : undefined;
      if (!entity.Id || !data) continue;
      const captured = data.CaptureTime ? Date.parse(data.CaptureTime) : NaN;
      out.set(entity.Id, catalog.snapshot(entity.Id, Number.isNaN(captured) ? null : captured, data.Content ?? [], data.ContentHash));
    }
  }
  catalog.sweep();
  return out;
}

export const ssmInventory = {
  id: 'ssm-inventory',
  configKey: 'ssmInventory',
  config: SsmInventoryConfig,
  proves: 'The packages installed on each managed instance (SSM Inventory, AWS:Application), compared with the manifest recorded at bake time; a snapshot, as fresh as its last collection.',
  iam: { member: IAM_ACTIONS },
  enabled: () => true,

  async read(ctx: PullContext<{ ssm: SSMClient }, unknown>): Promise<PullResult> {
    const out: PullResult = { activities: [], gaps: [], errors: [], warnings: [], proven: [] };
    try {
      out.inventory = await readInventory(ctx.clients.ssm, ctx.signal, catalogOf(scopeKey(ctx.scope)));
    } catch (err) {
      const message = `GetInventory failed: ${describeError(err)}`;
      ctx.logger.warn({ source: 'ssm-inventory', scope: scopeKey(ctx.scope), err: describeError(err) }, 'evidence could not be read');
      out.errors.push({ source: 'ssm-inventory:GetInventory', ...ctx.scope, message });
      out.gaps.push({ source: 'ssm-inventory', ...ctx.scope, message });
      out.inventory = new Map();
    }
    return out;
  },
} satisfies SourceDefinition<SsmInventoryConfig> & { read: unknown };
