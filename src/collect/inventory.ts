import { paginateGetInventory, type SSMClient } from '@aws-sdk/client-ssm';
import type { InventorySnapshot, Package } from '../core/facts.js';
import { normalizeVersion } from '../core/package-version.js';

/** IAM actions this collector calls. */
export const IAM_ACTIONS = ['ssm:GetInventory'] as const;

const TYPE = 'AWS:Application';

/** Inventory content keys are documented capitalised (Name, Version); some producers write them lower-case. */
function field(entry: Record<string, string>, name: string): string {
  return entry[name] ?? entry[name.toLowerCase()] ?? '';
}

export function toPackages(content: ReadonlyArray<Record<string, string>>): Package[] {
  const out: Package[] = [];
  for (const entry of content) {
    const name = field(entry, 'Name');
    if (!name) continue;
    out.push({
      name,
      arch: field(entry, 'Architecture'),
      version: normalizeVersion({ version: field(entry, 'Version'), release: field(entry, 'Release'), epoch: field(entry, 'Epoch') }),
    });
  }
  return out;
}

/**
 * Installed packages of every managed instance in the region: GetInventory serves 50 instances a
 * call, where ListInventoryEntries would need a call per 50 packages per instance.
 */
export async function readInventory(ssm: SSMClient, signal?: AbortSignal): Promise<Map<string, InventorySnapshot>> {
  const out = new Map<string, InventorySnapshot>();
  const pages = paginateGetInventory({ client: ssm, pageSize: 50 }, { ResultAttributes: [{ TypeName: TYPE }] }, { abortSignal: signal });
  for await (const page of pages) {
    for (const entity of page.Entities ?? []) {
      const data = entity.Id ? entity.Data?.[TYPE] : undefined;
      if (!entity.Id || !data) continue;
      const captured = data.CaptureTime ? Date.parse(data.CaptureTime) : NaN;
      out.set(entity.Id, {
        instanceId: entity.Id,
        captureTime: Number.isNaN(captured) ? null : captured,
        packages: toPackages(data.Content ?? []),
      });
    }
  }
  return out;
}
