/**
 * Facts: what the collectors read from AWS, in the shape the pure core evaluates.
 * Nothing here does I/O; times are epoch milliseconds so a 10,000-instance fleet stays small.
 */

export interface Instance {
  instanceId: string;
  region: string;
  accountId: string | null;
  imageId: string;
  /** epoch ms */
  launchTime: number;
  state: string;
  name: string | null;
  tags: Record<string, string>;
  privateIpAddress: string | null;
  /** `aws:autoscaling:groupName`, when the instance belongs to an Auto Scaling group */
  autoScalingGroup: string | null;
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
  packages: Package[];
}

/** Who did something: the caller's ARN as CloudTrail reports it, and the identities an allow glob may match. */
export interface Actor {
  /** e.g. arn:aws:sts::111122223333:assumed-role/Admin/alice; null when the record has none */
  arn: string | null;
  /** every ARN that identifies the caller: the session ARN, and the IAM role or user behind it */
  identities: string[];
}

export type ActivityKind = 'interactive-session' | 'remote-command' | 'instance-modified' | 'tag-change';

export interface TagChange {
  op: 'add' | 'remove';
  key: string;
  value: string | null;
}

/**
 * One in-place action against one or more instances, from a CloudTrail record or an SSM session.
 * Attribution (which instances) is already resolved from requestParameters / responseElements.
 */
export interface Activity {
  /** CloudTrail eventID, or `session:<id>` for a session only SSM's history knows */
  id: string;
  kind: ActivityKind;
  source: 'cloudtrail' | 'ssm-sessions';
  eventSource: string;
  eventName: string;
  /** epoch ms */
  at: number;
  region: string;
  actor: Actor;
  instanceIds: string[];
  /**
   * A SendCommand by targets: the instance ids are not in the record. They come from
   * ListCommandInvocations (see Facts.commandTargets) or, failing that, from the targets themselves.
   */
  commandTargets?: { commandId: string; targets: Array<{ key: string; values: string[] }> };
  /** Join key for SSM sessions (StartSession, ResumeSession, DescribeSessions) */
  sessionId?: string;
  tagChanges?: TagChange[];
  /** What happened, for the report: document name, attribute, volume id, OS user, ... */
  detail: Record<string, unknown>;
}

export type EvidenceSource = 'ec2' | 'cloudtrail' | 'ssm-sessions' | 'ssm-inventory' | 'ssm-commands' | 'manifest';

/** Evidence that could not be read. Without instanceIds it affects every instance in the region. */
export interface Gap {
  source: EvidenceSource;
  region: string;
  message: string;
  instanceIds?: string[];
}

export interface RegionFacts {
  region: string;
  /** the evidence window, epoch ms */
  window: { from: number; to: number };
  instances: Instance[];
  activities: Activity[];
  /** instance id -> packages SSM Inventory reports */
  inventory: Map<string, InventorySnapshot>;
  /** command id -> instance ids it ran on, from ListCommandInvocations */
  commandTargets: Map<string, string[]>;
  gaps: Gap[];
}
