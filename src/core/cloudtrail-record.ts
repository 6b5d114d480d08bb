import { z } from 'zod';
import { actorFrom } from './actor.js';
import { namesItsInstances, trackedEvent } from './event-catalog.js';
import type { Activity, Channel, TagChange, Target } from './facts.js';

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

const EventTime = CloudTrailRecord.shape.eventTime;
/** The schema's own pattern for eventTime (zod keeps it on the format); the schema itself when it has none. */
const EVENT_TIME: { test(s: string): boolean } =
  (EventTime._zod as { pattern?: RegExp }).pattern ?? { test: (s: string) => EventTime.safeParse(s).success };
const optString = (v: unknown): boolean => v === undefined || typeof v === 'string';
const optObject = (v: unknown): v is Obj | undefined => v === undefined || isObj(v);

/**
 * The checks of the CloudTrailRecord schema, by hand: a record that passes them passes the schema.
 * The schema only runs on a record that fails them, to say why; a well-formed record is not copied.
 */
function readRecord(raw: Obj): CloudTrailRecord | z.ZodError {
  const ui = raw['userIdentity'];
  const sc = isObj(ui) ? ui['sessionContext'] : undefined;
  const issuer = isObj(sc) ? sc['sessionIssuer'] : undefined;
  const ok =
    typeof raw['eventID'] === 'string' && raw['eventID'] !== '' &&
    typeof raw['eventSource'] === 'string' && typeof raw['eventName'] === 'string' && typeof raw['awsRegion'] === 'string' &&
    optString(raw['recipientAccountId']) && optString(raw['errorCode']) && optString(raw['sourceIPAddress']) &&
    (raw['requestParameters'] == null || isObj(raw['requestParameters'])) &&
    (raw['responseElements'] == null || isObj(raw['responseElements'])) &&
    optObject(ui) && (ui === undefined || (optString(ui['type']) && optString(ui['arn']) && optString(ui['accountId']) && optString(ui['invokedBy']) && optObject(sc))) &&
    optObject(issuer) && (issuer === undefined || optString(issuer['arn'])) &&
    typeof raw['eventTime'] === 'string' && EVENT_TIME.test(raw['eventTime']);
  if (ok) return raw as CloudTrailRecord;
  const parsed = CloudTrailRecord.safeParse(raw);
  return parsed.success ? parsed.data : parsed.error;
}

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

const INSTANCE_ID_KEYS = new Set(['instanceid', 'instanceids', 'target', 'resourceid']);

/**
 * Whether a string is `PREFIX-` and 8 to 17 lower-case hex digits (INSTANCE_ID and its kin), by its
 * characters: a record holds a few such values, and this runs on every one.
 */
function isAwsId(value: string, prefix: string): boolean {
  const n = value.length - prefix.length - 1;
  if (n < 8 || n > 17 || !value.startsWith(prefix) || value.charCodeAt(prefix.length) !== 45 /* - */) return false;
  for (let k = prefix.length + 1; k < value.length; k++) {
    const c = value.charCodeAt(k);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}
const isInstanceId = (v: string) => isAwsId(v, 'i');

/** What a key names, compared without case: the lengths tell most keys apart before any lower-casing. */
const enum Names {
  Nothing = 0,
  Instance = 1,
  Eni = 2,
  Volume = 3,
}
/** By key length, the first letters (lower-cased) of instanceId(s), target, resourceId, networkInterfaceId and volumeId. */
const FIRST_LETTERS: ReadonlyArray<readonly number[] | undefined> = Object.assign([], {
  6: ['t'.charCodeAt(0)],
  8: ['v'.charCodeAt(0)],
  10: ['i'.charCodeAt(0), 'r'.charCodeAt(0)],
  11: ['i'.charCodeAt(0)],
  18: ['n'.charCodeAt(0)],
});
function keyNames(key: string): Names {
  const first = FIRST_LETTERS[key.length];
  if (!first || !first.includes(key.charCodeAt(0) | 32)) return Names.Nothing;
  const k = key.toLowerCase();
  if (INSTANCE_ID_KEYS.has(k)) return Names.Instance;
  if (k === 'networkinterfaceid') return Names.Eni;
  if (k === 'volumeid') return Names.Volume;
  return Names.Nothing;
}

/**
 * The ids a request or response names under an instance-ish, network-interface or volume key, in one
 * walk, each once, in the order found (a record names a few: a list is cheaper than a set).
 */
interface NamedIds {
  instances: string[];
  enis: string[];
  volumes: string[];
}

const addOnce = (list: string[], value: string): void => {
  if (!list.includes(value)) list.push(value);
};

/** A string value under a key that names ids: kept when it looks like one. */
function collectId(value: string, out: NamedIds, under: Names): void {
  if (under === Names.Instance) {
    if (isInstanceId(value)) addOnce(out.instances, value);
  } else if (under === Names.Eni) {
    if (isAwsId(value, 'eni')) addOnce(out.enis, value);
  } else if (under === Names.Volume && isAwsId(value, 'vol')) addOnce(out.volumes, value);
}

/**
 * Shapes differ per API (`instanceId`, `InstanceId`, `ModifyInstanceMetadataOptionsRequest.InstanceId`,
 * `instanceIds[]`, `instancesSet.items[].instanceId`); a value counts when it sits under such a key and
 * looks like the id. Strings are looked at where they are found: most values are strings under keys
 * that name nothing.
 */
function collectIds(value: unknown, out: NamedIds, depth: number, under: Names): void {
  // Eight levels of values below the request or response are looked at, no deeper.
  if (depth >= 8) return;
  if (Array.isArray(value)) {
    for (let n = 0; n < value.length; n++) {
      const v: unknown = value[n];
      if (typeof v === 'string') {
        if (under !== Names.Nothing) collectId(v, out, under);
      } else if (typeof v === 'object' && v !== null) collectIds(v, out, depth + 1, under);
    }
  } else if (typeof value === 'object' && value !== null) {
    const o = value as Obj;
    for (const k in o) {
      if (!Object.prototype.hasOwnProperty.call(o, k)) continue;
      const v = o[k];
      if (typeof v === 'string') {
        const names = keyNames(k);
        if (names !== Names.Nothing) collectId(v, out, names);
      } else if (typeof v === 'object' && v !== null) collectIds(v, out, depth + 1, keyNames(k));
    }
  }
}

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
    return id && isInstanceId(id) ? [id] : [];
  });
}

/**
 * The ids a record's request and response name (collectIds), into one list set reused record after
 * record: what an activity keeps of them is copied out (a list of its own length; one grown by push
 * holds room for sixteen).
 */
const NAMED: NamedIds = { instances: [], enis: [], volumes: [] };
function namedIn(req: Obj, res: Obj): NamedIds {
  NAMED.instances.length = 0;
  NAMED.enis.length = 0;
  NAMED.volumes.length = 0;
  collectIds(req, NAMED, 0, Names.Nothing);
  collectIds(res, NAMED, 0, Names.Nothing);
  return NAMED;
}
const instancesIn = (req: Obj, res: Obj): string[] => namedIn(req, res).instances.slice();

/** What an activity is made with before it is filled: no instance (replaced by a list of its own), no detail yet. */
const NO_IDS: string[] = Object.freeze([]) as unknown as string[];
const NO_DETAIL: Obj = Object.freeze({});

/**
 * The instance-specific part of an activity, set on it: ids, join keys and what happened. Every
 * activity is made with each of these fields (undefined when the record has none) before it is
 * filled, so all have one shape. The detail is returned, to be compacted.
 */
function fill(a: Activity, r: CloudTrailRecord): Obj {
  const req: Obj = r.requestParameters ?? {};
  const res: Obj = r.responseElements ?? {};
  switch (r.eventName) {
    case 'StartSession': {
      a.instanceIds = instancesIn(req, res);
      a.sessionId = str(res['sessionId']);
      return { sourceIPAddress: r.sourceIPAddress, documentName: str(req['documentName']) ?? 'SSM-SessionManagerRunShell', sessionId: str(res['sessionId']), reason: str(req['reason']), parameters: isObj(req['parameters']) ? req['parameters'] : undefined };
    }
    case 'ResumeSession':
      a.sessionId = str(req['sessionId']);
      return { sourceIPAddress: r.sourceIPAddress, sessionId: str(req['sessionId']) };
    case 'SendSSHPublicKey':
    case 'SendSerialConsoleSSHPublicKey':
      a.instanceIds = instancesIn(req, res);
      return { sourceIPAddress: r.sourceIPAddress, osUser: str(req['instanceOSUser']), serialPort: req['serialPort'] };
    case 'OpenTunnel': {
      const privateIpAddress = str(req['privateIpAddress']);
      const endpointId = str(req['instanceConnectEndpointId']);
      a.instanceIds = instancesIn(req, res);
      if (privateIpAddress || endpointId) a.refs = { ...(privateIpAddress ? { privateIpAddress } : {}), ...(endpointId ? { endpointId } : {}) };
      return { sourceIPAddress: r.sourceIPAddress, privateIpAddress, remotePort: req['remotePort'], endpointId };
    }
    case 'SendCommand':
    case 'StartAutomationExecution': {
      const command = isObj(res['command']) ? res['command'] : {};
      const commandId = str(command['commandId']) ?? str(res['automationExecutionId']);
      const targets = targetsOf(req['targets']);
      a.instanceIds = instancesIn(req, res);
      if (a.instanceIds.length === 0 && targets.length > 0) a.commandTargets = { commandId: commandId ?? '', targets };
      return { sourceIPAddress: r.sourceIPAddress, documentName: str(req['documentName']), commandId, targets: targets.length ? targets : undefined };
    }
    case 'CreateAssociation':
    case 'UpdateAssociation': {
      const described = isObj(res['associationDescription']) ? res['associationDescription'] : {};
      const associationId = str(described['associationId']) ?? str(req['associationId']);
      const targets = targetsOf(req['targets']).length ? targetsOf(req['targets']) : targetsOf(described['targets']);
      a.instanceIds = instancesIn(req, res);
      if (a.instanceIds.length === 0 && targets.length > 0) a.commandTargets = { commandId: associationId ?? '', targets };
      return { sourceIPAddress: r.sourceIPAddress, documentName: str(req['name']) ?? str(described['name']), associationId, associationName: str(req['associationName']) ?? str(described['associationName']), targets: targets.length ? targets : undefined };
    }
    case 'CreateAssociationBatch': {
      // Entries by instance id or by targets; the associations made are in the response. With any entry
      // by targets, every association made is resolved by id (DescribeAssociation), as StartAssociationsOnce's.
      const entries = Array.isArray(req['entries']) ? req['entries'].filter(isObj) : [];
      const made = Array.isArray(res['successful']) ? res['successful'].filter(isObj) : [];
      const associationIds = made.flatMap((e) => str(e['associationId']) ?? []);
      const byTargets = [...entries, ...made].some((e) => targetsOf(e['targets']).length > 0);
      const documents = [...new Set(entries.flatMap((e) => str(e['name']) ?? []))];
      if (byTargets) {
        if (associationIds.length) a.associationIds = associationIds;
      } else a.instanceIds = instancesIn(req, res);
      return { sourceIPAddress: r.sourceIPAddress, documentName: documents.join(', ') || undefined, associationIds: associationIds.length ? associationIds : undefined, entries: entries.length };
    }
    case 'StartAssociationsOnce': {
      const associationIds = Array.isArray(req['associationIds']) ? req['associationIds'].filter((x): x is string => typeof x === 'string' && x !== '') : [];
      if (associationIds.length) a.associationIds = associationIds;
      return { sourceIPAddress: r.sourceIPAddress, associationIds };
    }
    case 'UpdateDocument': {
      // A new version: what associations at $LATEST run from now on (and any pinned to that version).
      const described = isObj(res['documentDescription']) ? res['documentDescription'] : {};
      const name = str(req['name']) ?? str(described['name']);
      const version = str(described['documentVersion']);
      if (name) a.documentUpdate = { name, versions: version ? ['$LATEST', version] : null };
      return { sourceIPAddress: r.sourceIPAddress, documentName: name, documentVersion: version };
    }
    case 'UpdateDocumentDefaultVersion': {
      // Another default: what associations at $DEFAULT (or naming no version) run from now on.
      const described = isObj(res['description']) ? res['description'] : {};
      const name = str(req['name']) ?? str(described['name']);
      if (name) a.documentUpdate = { name, versions: ['$DEFAULT'] };
      return { sourceIPAddress: r.sourceIPAddress, documentName: name, documentVersion: str(req['documentVersion']) ?? str(described['defaultVersion']) };
    }
    case 'DeleteAssociation':
      a.instanceIds = instancesIn(req, res);
      a.deletedAssociation = { associationId: str(req['associationId']) ?? null, documentName: str(req['name']) ?? null };
      return { sourceIPAddress: r.sourceIPAddress, associationId: str(req['associationId']), documentName: str(req['name']) };
    case 'CreateTags':
    case 'DeleteTags':
      a.instanceIds = resourceIds(req);
      a.tagChanges = tagChanges(req, r.eventName === 'CreateTags' ? 'add' : 'remove');
      return { sourceIPAddress: r.sourceIPAddress };
    default: {
      const attributes = r.eventName === 'ModifyInstanceAttribute' || r.eventName === 'ModifyNetworkInterfaceAttribute'
        ? Object.keys(req).filter((k) => k !== 'instanceId' && k !== 'networkInterfaceId')
        : undefined;
      const named = namedIn(req, res);
      const networkInterfaceIds = named.enis.slice();
      const volumeIds = named.volumes.slice();
      a.instanceIds = named.instances.slice();
      if (networkInterfaceIds.length || volumeIds.length) {
        a.refs = { ...(networkInterfaceIds.length ? { networkInterfaceIds } : {}), ...(volumeIds.length ? { volumeIds } : {}) };
      }
      return { sourceIPAddress: r.sourceIPAddress, attributes, volumeId: volumeIds[0], networkInterfaceId: networkInterfaceIds[0], allocationId: str(req['allocationId']), publicIp: str(req['publicIp']) };
    }
  }
}

/**
 * Accounts and regions, one string each: every record carries its own copy (JSON.parse does not share
 * values), and a cycle keeps tens of thousands of activities. Bounded: a process that sees more
 * distinct values than any organisation has starts again.
 */
const INTERNED = new Map<string, string>();
function interned<T extends string | null>(value: T): T {
  if (value === null) return value;
  const known = INTERNED.get(value);
  if (known !== undefined) return known as T;
  if (INTERNED.size >= 50_000) INTERNED.clear();
  INTERNED.set(value, value);
  return value;
}

/** Drop undefined values so evidence stays readable in JSON. */
function compact(o: Obj): Obj {
  const out: Obj = {};
  for (const k in o) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/** A tracked record that could not be read: what can still be told of it. */
function malformedRecord(raw: Obj, source: string, name: string, reason: string): RecordResult {
  // A time without its zone is no time: Date.parse would read it in the local zone of whoever runs pristine.
  const at = typeof raw['eventTime'] === 'string' && EVENT_TIME.test(raw['eventTime']) ? Date.parse(raw['eventTime']) : NaN;
  return {
    kind: 'malformed',
    reason,
    eventId: str(raw['eventID']),
    eventName: name,
    at: Number.isNaN(at) ? null : at,
    accountId: str(raw['recipientAccountId']) ?? null,
    region: str(raw['awsRegion']) ?? null,
    // Only an event that names every instance it touches may narrow the gap to the ids in its text: a
    // command by tags, a tunnel to an address or a change to an interface reaches instances it does not name.
    instanceIds: namesItsInstances(source, name) ? instanceIdsAnywhere(raw) : [],
  };
}

/**
 * What the channel a record came by knows for certain: the account and region it read (LookupEvents of
 * an account and region, a trail file's key, an envelope), and its own name.
 */
export interface RecordChannel {
  accountId: string;
  region: string;
  /** the activity's `via`: shared by the channel's activities, so never changed (mergeActivity makes a new one) */
  via: readonly Channel[];
}

/**
 * One CloudTrail record to an Activity. Records of events pristine does not track, and calls that
 * failed (they changed nothing), are ignored. A record of a tracked event with an unexpected shape,
 * or one naming no instance and no way to find it, is `malformed`: the caller turns it into a gap
 * on the instances it names (or its whole account and region), never into a clean result. With
 * `channel`, the activity has the channel's account, region and `via`; without, the record's own.
 */
export function activityFromRecord(raw: unknown, channel?: RecordChannel): RecordResult {
  if (!isObj(raw)) return { kind: 'malformed', reason: 'record is not a JSON object', at: null, accountId: null, region: null, instanceIds: [] };
  const source = str(raw['eventSource']);
  const name = str(raw['eventName']);
  const tracked = source && name ? trackedEvent(source, name) : undefined;
  if (!tracked) return { kind: 'ignored' };
  const kind = tracked.kind;
  const r = readRecord(raw);
  if (r instanceof z.ZodError) {
    const issue = r.issues[0];
    return malformedRecord(raw, source as string, name as string, `${issue?.path.join('.') || 'record'}: ${issue?.message ?? 'invalid'}`);
  }
  if (r.errorCode) return { kind: 'ignored' };
  const ui = r.userIdentity;
  // Every field, optional ones undefined, in one order: every activity read from a record has one
  // shape (the code that reads them stays monomorphic), and its JSON (the evidence log's) only the
  // fields present, in a fixed order.
  const activity: Activity = {
    id: r.eventID,
    kind,
    source: 'cloudtrail',
    eventSource: tracked.eventSource,
    eventName: tracked.eventName,
    at: Date.parse(r.eventTime),
    region: channel ? channel.region : interned(r.awsRegion),
    accountId: channel ? channel.accountId : interned(r.recipientAccountId ?? ui?.accountId ?? null),
    actor: actorFrom(ui?.arn ?? null, ui?.sessionContext?.sessionIssuer?.arn, ui?.invokedBy),
    instanceIds: NO_IDS,
    sessionId: undefined,
    commandTargets: undefined,
    associationIds: undefined,
    documentUpdate: undefined,
    deletedAssociation: undefined,
    refs: undefined,
    tagChanges: undefined,
    detail: NO_DETAIL,
    via: channel?.via as Channel[] | undefined,
  };
  const detail = fill(activity, r);
  if (activity.instanceIds === NO_IDS) activity.instanceIds = [];
  // Tags on volumes, images and the like are not pristine's business.
  if (kind === 'tag-change' && activity.instanceIds.length === 0) return { kind: 'ignored' };
  // A batch whose every entry failed made no association.
  if (r.eventName === 'CreateAssociationBatch' && Array.isArray(r.responseElements?.['successful']) && (r.responseElements['successful'] as unknown[]).length === 0) return { kind: 'ignored' };
  const joinable = activity.sessionId || activity.commandTargets || activity.associationIds || activity.documentUpdate || activity.deletedAssociation || activity.refs?.networkInterfaceIds || activity.refs?.volumeIds || activity.refs?.privateIpAddress;
  if (activity.instanceIds.length === 0 && !joinable) return malformedRecord(raw, source as string, name as string, `${r.eventName} names no instance`);
  activity.detail = compact(detail);
  return { kind: 'activity', activity };
}
