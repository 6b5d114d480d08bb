import { z } from 'zod';
import { actorFrom } from './actor.js';
import { trackedKind } from './event-catalog.js';
import type { Activity, TagChange } from './facts.js';

export const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;

const Params = z.record(z.string(), z.unknown()).nullish();

/** Only the fields pristine reads; anything else in the record is left alone. */
const CloudTrailRecord = z.looseObject({
  eventID: z.string().min(1),
  eventTime: z.iso.datetime({ offset: true }),
  eventSource: z.string(),
  eventName: z.string(),
  awsRegion: z.string(),
  errorCode: z.string().optional(),
  sourceIPAddress: z.string().optional(),
  userIdentity: z
    .looseObject({
      type: z.string().optional(),
      arn: z.string().optional(),
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

export type RecordResult =
  | { kind: 'activity'; activity: Activity }
  | { kind: 'ignored' }
  | { kind: 'malformed'; reason: string; eventId?: string };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

const ID_KEYS = new Set(['instanceid', 'instanceids', 'target', 'resourceid']);

/**
 * Instance ids named anywhere in request or response under an instance-ish key. Shapes differ per
 * API (`instanceId`, `InstanceId`, `ModifyInstanceMetadataOptionsRequest.InstanceId`, `instanceIds[]`).
 */
export function findInstanceIds(value: unknown, depth = 0, underIdKey = false, out = new Set<string>()): Set<string> {
  if (depth > 8 || value == null) return out;
  if (typeof value === 'string') {
    if (underIdKey && INSTANCE_ID.test(value)) out.add(value);
  } else if (Array.isArray(value)) {
    for (const v of value) findInstanceIds(v, depth + 1, underIdKey, out);
  } else if (isObj(value)) {
    for (const [k, v] of Object.entries(value)) findInstanceIds(v, depth + 1, ID_KEYS.has(k.toLowerCase()), out);
  }
  return out;
}

function targetsOf(value: unknown): Array<{ key: string; values: string[] }> {
  if (!Array.isArray(value)) return [];
  const out: Array<{ key: string; values: string[] }> = [];
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
  const ids = () => [...findInstanceIds(req, 0), ...findInstanceIds(res, 0)].filter((v, i, a) => a.indexOf(v) === i);
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
    case 'OpenTunnel':
      return { instanceIds: ids(), detail: { ...base, privateIpAddress: str(req['privateIpAddress']), remotePort: req['remotePort'], endpointId: str(req['instanceConnectEndpointId']) } };
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
    case 'CreateTags':
    case 'DeleteTags':
      return { instanceIds: resourceIds(req), tagChanges: tagChanges(req, r.eventName === 'CreateTags' ? 'add' : 'remove'), detail: { ...base } };
    default: {
      const attributes = r.eventName === 'ModifyInstanceAttribute' ? Object.keys(req).filter((k) => k !== 'instanceId') : undefined;
      return { instanceIds: ids(), detail: { ...base, attributes, volumeId: str(req['volumeId']) } };
    }
  }
}

/** Drop undefined values so evidence stays readable in JSON. */
function compact(o: Obj): Obj {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/**
 * One CloudTrail record to an Activity. Records of events pristine does not track, and calls that
 * failed (they changed nothing), are ignored; a record of a tracked event with an unexpected shape,
 * or one naming no instance and no way to find it, is `malformed` and skipped with a warning.
 */
export function activityFromRecord(raw: unknown): RecordResult {
  if (!isObj(raw)) return { kind: 'malformed', reason: 'record is not a JSON object' };
  const source = str(raw['eventSource']);
  const name = str(raw['eventName']);
  const kind = source && name ? trackedKind(source, name) : undefined;
  if (!kind) return { kind: 'ignored' };
  const parsed = CloudTrailRecord.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { kind: 'malformed', reason: `${issue?.path.join('.') || 'record'}: ${issue?.message ?? 'invalid'}`, eventId: str(raw['eventID']) };
  }
  const r = parsed.data;
  if (r.errorCode) return { kind: 'ignored' };
  const s = specifics(r);
  // Tags on volumes, images and the like are not pristine's business.
  if (kind === 'tag-change' && s.instanceIds.length === 0) return { kind: 'ignored' };
  const joinable = s.sessionId || s.commandTargets || (r.eventName === 'OpenTunnel' && s.detail['privateIpAddress']);
  if (s.instanceIds.length === 0 && !joinable) {
    return { kind: 'malformed', reason: `${r.eventName} names no instance`, eventId: r.eventID };
  }
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
      actor: actorFrom(ui?.arn ?? null, ui?.sessionContext?.sessionIssuer?.arn, ui?.invokedBy),
      instanceIds: s.instanceIds,
      ...(s.sessionId ? { sessionId: s.sessionId } : {}),
      ...(s.commandTargets ? { commandTargets: s.commandTargets } : {}),
      ...(s.tagChanges ? { tagChanges: s.tagChanges } : {}),
      detail: compact(s.detail),
    },
  };
}
