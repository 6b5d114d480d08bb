import type { EC2Client } from '@aws-sdk/client-ec2';
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { DocumentAssociation, Target } from '../core/facts.js';
import { aws } from './aws-sdk.js';

/**
 * Readers for what some records name instead of an instance: where a command ran, what an association
 * targets, which VPC an EIC Endpoint serves. Each is called only for the records that need it.
 */
export const IAM_ACTIONS = ['ssm:ListCommandInvocations', 'ssm:DescribeAssociation', 'ssm:ListAssociations', 'ec2:DescribeInstanceConnectEndpoints'] as const;

/** Invocation statuses after which SSM sends the command nowhere else. */
const FINISHED = new Set(['Success', 'Cancelled', 'TimedOut', 'Failed']);

/**
 * The instances a command ran on, for a command sent by targets, and whether the answer is final:
 * while an invocation is still pending or running (a rate-controlled command goes out a batch at a
 * time), more instances may follow, so the answer holds for this cycle only.
 */
export async function readCommandInstances(ssm: SSMClient, commandId: string, signal?: AbortSignal): Promise<{ ids: string[]; final: boolean }> {
  const ids = new Set<string>();
  let final = true;
  for await (const page of aws.SSM.paginateListCommandInvocations({ client: ssm, pageSize: 50 }, { CommandId: commandId }, { abortSignal: signal })) {
    for (const inv of page.CommandInvocations ?? []) {
      if (inv.InstanceId) ids.add(inv.InstanceId);
      if (!inv.Status || !FINISHED.has(inv.Status)) final = false;
    }
  }
  return { ids: [...ids], final };
}

/** An association's targets (StartAssociationsOnce names only the association). */
export async function readAssociationTargets(ssm: SSMClient, associationId: string, signal?: AbortSignal): Promise<Target[]> {
  const out = await ssm.send(new aws.SSM.DescribeAssociationCommand({ AssociationId: associationId }), { abortSignal: signal });
  const d = out.AssociationDescription;
  const targets = (d?.Targets ?? []).flatMap((t) => (t.Key ? [{ key: t.Key, values: t.Values ?? [] }] : []));
  if (targets.length === 0 && d?.InstanceId) return [{ key: 'InstanceIds', values: [d.InstanceId] }];
  return targets;
}

/**
 * The associations that run a document (ListAssociations by its name, paged), with the version each
 * runs and its targets: a changed document reaches their instances.
 */
export async function readDocumentAssociations(
  ssm: SSMClient,
  documentName: string,
  signal?: AbortSignal,
): Promise<Array<DocumentAssociation & { targets: Target[] }>> {
  const out: Array<DocumentAssociation & { targets: Target[] }> = [];
  const filter = { AssociationFilterList: [{ key: 'Name' as const, value: documentName }] };
  for await (const page of aws.SSM.paginateListAssociations({ client: ssm, pageSize: 50 }, filter, { abortSignal: signal })) {
    for (const a of page.Associations ?? []) {
      if (!a.AssociationId) continue;
      const targets = (a.Targets ?? []).flatMap((t) => (t.Key ? [{ key: t.Key, values: t.Values ?? [] }] : []));
      out.push({
        associationId: a.AssociationId,
        // An association that names no version runs the default one.
        documentVersion: a.DocumentVersion || '$DEFAULT',
        targets: targets.length === 0 && a.InstanceId ? [{ key: 'InstanceIds', values: [a.InstanceId] }] : targets,
      });
    }
  }
  return out;
}

/** EIC Endpoint id -> VPC id, for every endpoint in the scope (one call, paged). */
export async function readEndpointVpcs(ec2: EC2Client, signal?: AbortSignal): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let token: string | undefined;
  do {
    const page = await ec2.send(new aws.EC2.DescribeInstanceConnectEndpointsCommand({ NextToken: token, MaxResults: 50 }), { abortSignal: signal });
    for (const e of page.InstanceConnectEndpoints ?? []) if (e.InstanceConnectEndpointId && e.VpcId) out.set(e.InstanceConnectEndpointId, e.VpcId);
    token = page.NextToken;
  } while (token);
  return out;
}
