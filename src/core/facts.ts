/**
 * Facts: what the collectors read from AWS, in the shape the pure core evaluates.
 * Nothing here does I/O; times are epoch milliseconds so a 10,000-instance fleet stays small.
 * Every fact belongs to one scope: an (account, region) pair.
 */

export interface Scope {
  accountId: string;
  region: string;
}

/** `111122223333/us-east-1`: a scope as one string, for maps, logs and leases. */
export function scopeKey(s: Scope): string {
  return `${s.accountId}/${s.region}`;
}

export interface Instance {
  instanceId: string;
  region: string;
  accountId: string;
  imageId: string;
  /**
   * EC2's LaunchTime: when the instance was *last started*. A stop/start moves it, so it only
   * serves `minAge`; everything that judges evidence uses `firstLaunch`.
   */
  launchTime: number;
  /** when the instance was first launched: the attach time of its primary network interface (epoch ms) */
  firstLaunch: number;
  state: string;
  name: string | null;
  tags: Record<string, string>;
  privateIpAddress: string | null;
  vpcId: string | null;
  /** every private IP of the instance, for EIC Endpoint tunnels opened by address */
  privateIpAddresses: string[];
  networkInterfaceIds: string[];
  volumeIds: string[];
  /** `aws:autoscaling:groupName`, when the instance belongs to an Auto Scaling group */
  autoScalingGroup: string | null;
  instanceType?: string | null;
  /** `spot` or `scheduled`; null for on-demand */
  lifecycle?: string | null;
}

/** One package as recorded in a manifest or reported by SSM Inventory; version already normalised. */
export interface Package {
  name: string;
  version: string;
  arch: string;
}

export interface InventorySnapshot {
  instanceId: string;
  /** epoch ms of SSM's last capture, null when SSM did not say */
  captureTime: number | null;
  /**
   * What the packages are, as one string: SSM's ContentHash (`ssm:…`), else a hash of the normalised
   * list (`sha256:…`). Instances with the same fingerprint share one `packages` list.
   */
  fingerprint: string;
  packages: readonly Package[];
}

/** Who did something: the caller's ARN as CloudTrail reports it, and the identities an allow glob may match. */
export interface Actor {
  /** e.g. arn:aws:sts::111122223333:assumed-role/Admin/alice; null when the record has none */
  arn: string | null;
  /** every ARN that identifies the caller: the session ARN, and the IAM role or user behind it */
  identities: string[];
}

/** `association-deleted` changes no instance: it tells where a changed document may have run (see Attributor). */
export type ActivityKind = 'interactive-session' | 'remote-command' | 'instance-modified' | 'tag-change' | 'association-deleted';

export interface TagChange {
  op: 'add' | 'remove';
  key: string;
  value: string | null;
}

export interface Target {
  key: string;
  values: string[];
}

/** How a piece of evidence reached pristine. The same CloudTrail event by several paths is one activity. */
export type Channel = 'lookup-events' | 'eventbridge' | 's3' | 'ssm-sessions';

/**
 * One in-place action against one or more instances, from a CloudTrail record or an SSM session.
 * Attribution (which instances) is resolved from requestParameters / responseElements where the record
 * says; otherwise from the references it carries (session, network interface, volume, address, targets).
 */
export interface Activity {
  /** CloudTrail eventID, or `session:<id>` for a session only SSM's history knows */
  id: string;
  kind: ActivityKind;
  source: 'cloudtrail' | 'ssm-sessions';
  /** the paths it arrived by; absent in activities stored by an older pristine */
  via?: Channel[];
  eventSource: string;
  eventName: string;
  /** epoch ms */
  at: number;
  region: string;
  /** the account the event happened in (CloudTrail recipientAccountId); null when the record does not say */
  accountId: string | null;
  actor: Actor;
  instanceIds: string[];
  /**
   * A SendCommand, Automation or State Manager association by targets: the instance ids are not in
   * the record. They come from ListCommandInvocations (commands), DescribeAssociation (associations
   * started by id), or, failing that, from matching the targets against the instances' tags.
   */
  commandTargets?: { commandId: string; targets: Target[] };
  /** StartAssociationsOnce names associations, not instances */
  associationIds?: string[];
  /**
   * An SSM document changed (UpdateDocument, UpdateDocumentDefaultVersion): it reaches the instances of
   * the associations that run it, at `versions` (their DocumentVersion: `$LATEST`, `$DEFAULT` or a
   * number; null: whichever). Those come from ListAssociations by the document's name.
   */
  documentUpdate?: { name: string; versions: string[] | null };
  /** DeleteAssociation: the association gone (by id, or by document and instance), which ListAssociations no longer lists */
  deletedAssociation?: { associationId: string | null; documentName: string | null };
  /** Join key for SSM sessions (StartSession, ResumeSession, DescribeSessions) */
  sessionId?: string;
  /** resources the record names that belong to an instance: its network interfaces, volumes, addresses */
  refs?: { networkInterfaceIds?: string[]; volumeIds?: string[]; privateIpAddress?: string; endpointId?: string };
  tagChanges?: TagChange[];
  /** What happened, for the report: document name, attribute, volume id, OS user, ... */
  detail: Record<string, unknown>;
}

export type EvidenceSource = 'ec2' | 'cloudtrail' | 'ssm-sessions' | 'ssm-inventory' | 'ssm-commands' | 'manifest';

/** Evidence that could not be read. Without instanceIds it affects every instance in its scope. */
export interface Gap {
  source: EvidenceSource;
  accountId: string;
  region: string;
  message: string;
  instanceIds?: string[];
  /** when set, only instances first launched before this time can be concerned (epoch ms) */
  before?: number;
}

/** A State Manager association that runs a document, at the version it names (`$DEFAULT` when it names none). */
export interface DocumentAssociation {
  associationId: string;
  documentVersion: string;
}

export interface ScopeFacts extends Scope {
  /** the evidence window, epoch ms */
  window: { from: number; to: number };
  instances: Instance[];
  activities: Activity[];
  /** instance id -> packages SSM Inventory reports */
  inventory: Map<string, InventorySnapshot>;
  /** command id -> instance ids it ran on, from ListCommandInvocations */
  commandTargets: Map<string, string[]>;
  /** command id -> why SSM could not say where it ran */
  unresolvedCommands: Map<string, string>;
  /** association id -> its targets, from DescribeAssociation (StartAssociationsOnce names only ids) or ListAssociations */
  associationTargets: Map<string, Target[]>;
  /** document name -> the associations that run it, from ListAssociations (a document changed: see Activity.documentUpdate) */
  documentAssociations: Map<string, DocumentAssociation[]>;
  /** EIC Endpoint id -> its VPC, from DescribeInstanceConnectEndpoints */
  endpointVpcs: Map<string, string>;
  gaps: Gap[];
}
