import { paginateListCommandInvocations, type SSMClient } from '@aws-sdk/client-ssm';

/** IAM actions this collector calls. */
export const IAM_ACTIONS = ['ssm:ListCommandInvocations'] as const;

/** The instances a command ran on. Called only for commands sent by targets, once per command. */
export async function readCommandInstances(ssm: SSMClient, commandId: string, signal?: AbortSignal): Promise<string[]> {
  const ids = new Set<string>();
  for await (const page of paginateListCommandInvocations({ client: ssm, pageSize: 50 }, { CommandId: commandId }, { abortSignal: signal })) {
    for (const inv of page.CommandInvocations ?? []) if (inv.InstanceId) ids.add(inv.InstanceId);
  }
  return [...ids];
}
