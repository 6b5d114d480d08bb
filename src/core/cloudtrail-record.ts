import { z } from 'zod';
import { actorFrom } from './actor.js';
import { trackedKind } from './event-catalog.js';
import type { Activity, TagChange, Target } from './facts.js';

export const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;

const Params = z.record(z.string(), z.unknown()).nullish();

/** Only the fields pristine reads; anything else in the record is left alone. */
const CloudTrailRecord = z.looseObject({
  eventID: z.string().min(1),
  eventTime: z.iso.datetime({ offset: true }),
  eventSource: z.string(),
  eventName: z.string(),
  awsRegion: z.string(),
  recipientAccountId: z.string().optional(),
  errorCode: z.string().optional(),
  sourceIPAddress: z.string().optional(),
  userIdentity: z
    .looseObject({
      type: z.string().optional(),
      arn: z.string().optional(),
      accountId: z.string().optional(),
      invokedBy: z.string().optional(),
      sessionContext: z
        .looseObject({ sessionIssuer: z.looseObject({ arn: z.string().optional() }).optional() })
        .optional(),
    })
    .optional(),
  requestParameters: Params,
  responseElements: Params,
});
type CloudTrailRecord = z.output<typeof CloudTrailRecord>;

/** A record of a tracked event that could not be read: what can still be told about it, for the gap it leaves. */
export interface MalformedRecord {
  reason: string;
  eventId?: string;
  eventName?: string;
  /** epoch ms, when the record's time could be read */
  at: number | null;
  accountId: string | null;
  region: string | null;
  /** instance ids named anywhere in its request, response or resources: the instances it may concern */
  instanceIds: string[];
}

export type RecordResult = { kind: 'activity'; activity: Activity } | { kind: 'ignored' } | ({ kind: 'malformed' } & MalformedRecord);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

const ID_KEYS = new Set(['instanceid', 'instanceids', 'target', 'resourceid']);

/**
 * Instance ids named anywhere in request or response under an instance-ish key. Shapes differ per
 * API (`instanceId`, `InstanceId`, `ModifyInstanceMetadataOptionsRequest.InstanceId`, `instanceIds[]`,
 * `instancesSet.items[].instanceId`).
 */
export function findInstanceIds(value: unknown, depth = 0, underIdKey = false, out = new Set<string>()): Set<string> {
  return findIds(value, ID_KEYS, INSTANCE_ID, depth, underIdKey, out);
}

function findIds(value: unknown, keys: ReadonlySet<string>, pattern: RegExp, depth = 0, underKey = false, out = new Set<string>()): Set<string> {
  if (depth > 8 || value == null) return out;
  if (typeof value === 'string') {
    if (underKey && pattern.test(value)) out.add(value);
  } else if (Array.isArray(value)) {
    for (const v of value) findIds(v, keys, pattern, depth + 1, underKey, out);
  } else if (isObj(value)) {
    for (const [k, v] of Object.entries(value)) findIds(v, keys, pattern, depth + 1, keys.has(k.toLowerCase()), out);
  }
  return out;
}

const ENI_KEYS = new Set(['networkinterfaceid']);
const ENI_ID = /^eni-[0-9a-f]{8,17}$/;
const VOLUME_KEYS = new Set(['volumeid']);
const VOLUME_ID = /^vol-[0-9a-f]{8,17}$/;
const ANY_INSTANCE_ID = /\bi-[0-9a-f]{8,17}\b/g;

/** Every instance id anywhere in the raw record's request, response and resources, whatever the key. */
export function instanceIdsAnywhere(raw: Obj): string[] {
  const text = JSON.stringify([raw['requestParameters'] ?? null, raw['responseElements'] ?? null, raw['resources'] ?? null]);
  return [...new Set(text.match(ANY_INSTANCE_ID) ?? [])];
}

function targetsOf(value: unknown): Target[] {
  if (!Array.isArray(value)) return [];
  const out: Target[] = [];
  for (const t of value) {
    if (!isObj(t)) continue;
    const key = str(t['key']) ?? str(t['Key']);
    const values = (t['values'] ?? t['Values']) as unknown;
    if (key && Array.isArray(values)) out.push({ key, values: values.filter((x): x is string => typeof x === 'string') });
  }
  return out;
}

function tagChanges(req: Obj, op: TagChange['op']): TagChange[] {
  const set = req['tagSet'];
  const items = isObj(set) && Array.isArray(set['items']) ? set['items'] : [];
  return items.filter(isObj).flatMap((t) => {
    const key = str(t['key']);
    return key ? [{ op, key, value: typeof t['value'] === 'string' ? t['value'] : null }] : [];
  });
}

function resourceIds(req: Obj): string[] {
  const set = req['resourcesSet'];
  const items = isObj(set) && Array.isArray(set['items']) ? set['items'] : [];
  return items.filter(isObj).flatMap((r) => {
    const id = str(r['resourceId']);
    return id && INSTANCE_ID.test(id) ? [id] : [];
  });
}

/** The instance-specific part of an activity: ids, join keys and what happened. */
function specifics(r: CloudTrailRecord): Pick<Activity, 'instanceIds' | 'detail'> & Partial<Activity> {
  const req: Obj = r.requestParameters ?? {};
  const res: Obj = r.responseElements ?? {};
  const ids = () => [...new Set([...findInstanceIds(req, 0), ...findInstanceIds(res, 0)])];
  const base = { sourceIPAddress: r.sourceIPAddress };
  switch (r.eventName) {
    case 'StartSession':
      return {
        instanceIds: ids(),
        sessionId: str(res['sessionId']),
        detail: { ...base, documentName: str(req['documentName']) ?? 'SSM-SessionManagerRunShell', sessionId: str(res['sessionId']), reason: str(req['reason']), parameters: isObj(req['parameters']) ? req['parameters'] : undefined },
      };
    case 'ResumeSession':
      return { instanceIds: [], sessionId: str(req['sessionId']), detail: { ...base, sessionId: str(req['sessionId']) } };
    case 'SendSSHPublicKey':
    case 'SendSerialConsoleSSHPublicKey':
      return { instanceIds: ids(), detail: { ...base, osUser: str(req['instanceOSUser']), serialPort: req['serialPort'] } };
    case 'OpenTunnel': {
      const privateIpAddress = str(req['privateIpAddress']);
      const endpointId = str(req['instanceConnectEndpointId']);
      return {
        instanceIds: ids(),
        refs: { ...(privateIpAddress ? { privateIpAddress } : {}), ...(endpointId ? { endpointId } : {}) },
        detail: { ...base, privateIpAddress, remotePort: req['remotePort'], endpointId },
      };
    }
    case 'SendCommand':
    case 'StartAutomationExecution': {
      const command = isObj(res['command']) ? res['command'] : {};
      const commandId = str(command['commandId']) ?? str(res['automationExecutionId']);
      const targets = targetsOf(req['targets']);
      const instanceIds = ids();
      return {
        instanceIds,
        ...(instanceIds.length === 0 && targets.length > 0 ? { commandTargets: { commandId: commandId ?? '', targets } } : {}),
        detail: { ...base, documentName: str(req['documentName']), commandId, targets: targets.length ? targets : undefined },
      };
    }
    case 'CreateAssociation':
    case 'UpdateAssociation': {
      const described = isObj(res['associationDescription']) ? res['associationDescription'] : {};
      const associationId = str(described['associationId']) ?? str(req['associationId']);
      const targets = targetsOf(req['targets']).length ? targetsOf(req['targets']) : targetsOf(described['targets']);
      const instanceIds = ids();
      return {
        instanceIds,
        ...(instanceIds.length === 0 && targets.length > 0 ? { commandTargets: { commandId: associationId ?? '', targets } } : {}),
        detail: { ...base, documentName: str(req['name']) ?? str(described['name']), associationId, associationName: str(req['associationName']) ?? str(described['associationName']), targets: targets.length ? targets : undefined },
      };
    }
    case 'StartAssociationsOnce': {
      const associationIds = Array.isArray(req['associationIds']) ? req['associationIds'].filter((x): x is string => typeof x === 'string' && x !== '') : [];
      return { instanceIds: [], associationIds, detail: { ...base, associationIds } };
    }
    case 'CreateTags':
    case 'DeleteTags':
      return { instanceIds: resourceIds(req), tagChanges: tagChanges(req, r.eventName === 'CreateTags' ? 'add' : 'remove'), detail: { ...base } };
    default: {
      const attributes = r.eventName === 'ModifyInstanceAttribute' || r.eventName === 'ModifyNetworkInterfaceAttribute'
        ? Object.keys(req).filter((k) => k !== 'instanceId' && k !== 'networkInterfaceId')
        : undefined;
      const networkInterfaceIds = [...findIds([req, res], ENI_KEYS, ENI_ID)];
      const volumeIds = [...findIds([req, res], VOLUME_KEYS, VOLUME_ID)];
      const refs = {
        ...(networkInterfaceIds.length ? { networkInterfaceIds } : {}),
        ...(volumeIds.length ? { volumeIds } : {}),
      };
      return {
        instanceIds: ids(),
        ...(Object.keys(refs).length ? { refs } : {}),
        detail: { ...base, attributes, volumeId: volumeIds[0], networkInterfaceId: networkInterfaceIds[0], allocationId: str(req['allocationId']), publicIp: str(req['publicIp']) },
      };
    }
  }
}

/** Drop undefined values so evidence stays readable in JSON. */
function compact(o: Obj): Obj {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/**
 * One CloudTrail record to an Activity. Records of events pristine does not track, and calls that
 * failed (they changed nothing), are ignored. A record of a tracked event with an unexpected shape,
 * or one naming no instance and no way to find it, is `malformed`: the caller turns it into a gap
 * on the instances it names (or its whole account and region), never into a clean result.
 */
export function activityFromRecord(raw: unknown): RecordResult {
  if (!isObj(raw)) return { kind: 'malformed', reason: 'record is not a JSON object', at: null, accountId: null, region: null, instanceIds: [] };
  const source = str(raw['eventSource']);
  const name = str(raw['eventName']);
  const kind = source && name ? trackedKind(source, name) : undefined;
  if (!kind) return { kind: 'ignored' };
  const malformed = (reason: string): RecordResult => {
    const at = typeof raw['eventTime'] === 'string' ? Date.parse(raw['eventTime']) : NaN;
    return {
      kind: 'malformed',
      reason,
      eventId: str(raw['eventID']),
      eventName: name,
      at: Number.isNaN(at) ? null : at,
      accountId: str(raw['recipientAccountId']) ?? null,
      region: str(raw['awsRegion']) ?? null,
      instanceIds: instanceIdsAnywhere(raw),
    };
  };
  const parsed = CloudTrailRecord.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return malformed(`${issue?.path.join('.') || 'record'}: ${issue?.message ?? 'invalid'}`);
  }
  const r = parsed.data;
  if (r.errorCode) return { kind: 'ignored' };
  const s = specifics(r);
  // Tags on volumes, images and the like are not pristine's business.
  if (kind === 'tag-change' && s.instanceIds.length === 0) return { kind: 'ignored' };
  const joinable = s.sessionId || s.commandTargets || s.associationIds?.length || s.refs?.networkInterfaceIds || s.refs?.volumeIds || s.refs?.privateIpAddress;
  if (s.instanceIds.length === 0 && !joinable) return malformed(`${r.eventName} names no instance`);
  const ui = r.userIdentity;
  return {
    kind: 'activity',
    activity: {
      id: r.eventID,
      kind,
      source: 'cloudtrail',
      eventSource: r.eventSource,
      eventName: r.eventName,
      at: Date.parse(r.eventTime),
      region: r.awsRegion,
      accountId: r.recipientAccountId ?? ui?.accountId ?? null,
      actor: actorFrom(ui?.arn ?? null, ui?.sessionContext?.sessionIssuer?.arn, ui?.invokedBy),
      instanceIds: s.instanceIds,
      ...(s.sessionId ? { sessionId: s.sessionId } : {}),
      ...(s.commandTargets ? { commandTargets: s.commandTargets } : {}),
      ...(s.associationIds?.length ? { associationIds: s.associationIds } : {}),
      ...(s.refs && Object.keys(s.refs).length ? { refs: s.refs } : {}),
      ...(s.tagChanges ? { tagChanges: s.tagChanges } : {}),
      detail: compact(s.detail),
    },
  };
}
