import type { ActivityKind } from './facts.js';

/**
 * The CloudTrail management events that can change an instance in place, by source and name.
 * The collector looks each name up once per window (LookupEvents takes one attribute a call);
 * records from another service with the same name (QLDB's SendCommand) are ignored. The EventBridge
 * rule of `pristine deploy template` is built from this list too.
 */
export const TRACKED_EVENTS: ReadonlyArray<{
  eventSource: string;
  eventName: string;
  kind: ActivityKind;
  /**
   * Its request names, by instance id, every instance the call touches (and no other): a record of it
   * that cannot be read concerns those alone. Others (a command by tags, a tunnel to an address, a
   * change to an interface) reach instances they do not name.
   */
  namesItsInstances?: true;
}> = [
  { eventSource: 'ssm.amazonaws.com', eventName: 'StartSession', kind: 'interactive-session', namesItsInstances: true },
  { eventSource: 'ssm.amazonaws.com', eventName: 'ResumeSession', kind: 'interactive-session' },
  { eventSource: 'ec2-instance-connect.amazonaws.com', eventName: 'SendSSHPublicKey', kind: 'interactive-session', namesItsInstances: true },
  { eventSource: 'ec2-instance-connect.amazonaws.com', eventName: 'SendSerialConsoleSSHPublicKey', kind: 'interactive-session', namesItsInstances: true },
  { eventSource: 'ec2-instance-connect.amazonaws.com', eventName: 'OpenTunnel', kind: 'interactive-session' },
  { eventSource: 'ssm-guiconnect.amazonaws.com', eventName: 'StartConnection', kind: 'interactive-session' },
  { eventSource: 'ssm.amazonaws.com', eventName: 'SendCommand', kind: 'remote-command' },
  { eventSource: 'ssm.amazonaws.com', eventName: 'StartAutomationExecution', kind: 'remote-command' },
  { eventSource: 'ssm.amazonaws.com', eventName: 'CreateAssociation', kind: 'remote-command' },
  { eventSource: 'ssm.amazonaws.com', eventName: 'UpdateAssociation', kind: 'remote-command' },
  { eventSource: 'ssm.amazonaws.com', eventName: 'StartAssociationsOnce', kind: 'remote-command' },
  { eventSource: 'ssm.amazonaws.com', eventName: 'CreateAssociationBatch', kind: 'remote-command' },
  // A changed document runs on every instance its associations target, with no event of its own there.
  { eventSource: 'ssm.amazonaws.com', eventName: 'UpdateDocument', kind: 'remote-command' },
  { eventSource: 'ssm.amazonaws.com', eventName: 'UpdateDocumentDefaultVersion', kind: 'remote-command' },
  // Taints nothing itself: an association deleted after its document changed is no longer listed.
  { eventSource: 'ssm.amazonaws.com', eventName: 'DeleteAssociation', kind: 'association-deleted' },
  { eventSource: 'ec2.amazonaws.com', eventName: 'ModifyInstanceAttribute', kind: 'instance-modified', namesItsInstances: true },
  { eventSource: 'ec2.amazonaws.com', eventName: 'StopInstances', kind: 'instance-modified', namesItsInstances: true },
  { eventSource: 'ec2.amazonaws.com', eventName: 'StartInstances', kind: 'instance-modified', namesItsInstances: true },
  { eventSource: 'ec2.amazonaws.com', eventName: 'AttachVolume', kind: 'instance-modified', namesItsInstances: true },
  { eventSource: 'ec2.amazonaws.com', eventName: 'DetachVolume', kind: 'instance-modified' },
  { eventSource: 'ec2.amazonaws.com', eventName: 'ModifyVolume', kind: 'instance-modified' },
  { eventSource: 'ec2.amazonaws.com', eventName: 'AttachNetworkInterface', kind: 'instance-modified', namesItsInstances: true },
  { eventSource: 'ec2.amazonaws.com', eventName: 'ModifyNetworkInterfaceAttribute', kind: 'instance-modified' },
  { eventSource: 'ec2.amazonaws.com', eventName: 'AssociateAddress', kind: 'instance-modified' },
  { eventSource: 'ec2.amazonaws.com', eventName: 'AssociateIamInstanceProfile', kind: 'instance-modified', namesItsInstances: true },
  { eventSource: 'ec2.amazonaws.com', eventName: 'ReplaceIamInstanceProfileAssociation', kind: 'instance-modified' },
  { eventSource: 'ec2.amazonaws.com', eventName: 'DisassociateIamInstanceProfile', kind: 'instance-modified' },
  { eventSource: 'ec2.amazonaws.com', eventName: 'ModifyInstanceMetadataOptions', kind: 'instance-modified', namesItsInstances: true },
  { eventSource: 'ec2.amazonaws.com', eventName: 'CreateReplaceRootVolumeTask', kind: 'instance-modified', namesItsInstances: true },
  { eventSource: 'ec2.amazonaws.com', eventName: 'CreateTags', kind: 'tag-change', namesItsInstances: true },
  { eventSource: 'ec2.amazonaws.com', eventName: 'DeleteTags', kind: 'tag-change', namesItsInstances: true },
];

/** The distinct event names to look up. */
export const TRACKED_EVENT_NAMES: readonly string[] = [...new Set(TRACKED_EVENTS.map((e) => e.eventName))];

type TrackedEvent = (typeof TRACKED_EVENTS)[number];

/** event name -> event source -> the catalog's entry: looked up without building a key per record */
const BY_NAME = new Map<string, Map<string, TrackedEvent>>();
for (const e of TRACKED_EVENTS) {
  const bySource = BY_NAME.get(e.eventName) ?? new Map<string, TrackedEvent>();
  bySource.set(e.eventSource, e);
  BY_NAME.set(e.eventName, bySource);
}

/**
 * The catalog's entry of a tracked event: its source and name are the catalog's own strings, so the
 * activities of a cycle share a handful of them instead of holding a copy each.
 */
export function trackedEvent(eventSource: string, eventName: string): TrackedEvent | undefined {
  return BY_NAME.get(eventName)?.get(eventSource);
}

const NAMING = new Set(TRACKED_EVENTS.filter((e) => e.namesItsInstances).map((e) => `${e.eventSource} ${e.eventName}`));

/** Whether a tracked event's request names every instance it touches (see TRACKED_EVENTS). */
export function namesItsInstances(eventSource: string, eventName: string): boolean {
  return NAMING.has(`${eventSource} ${eventName}`);
}

/** An EventBridge pattern that matches exactly the tracked events ("AWS API Call via CloudTrail"). */
export function eventBridgePattern(): Record<string, unknown> {
  const sources = [...new Set(TRACKED_EVENTS.map((e) => e.eventSource))].sort();
  return {
    'detail-type': ['AWS API Call via CloudTrail'],
    // The `source` of EC2 Instance Connect events is not documented: match on detail.eventSource only.
    detail: { eventSource: sources, eventName: [...TRACKED_EVENT_NAMES].sort() },
  };
}
