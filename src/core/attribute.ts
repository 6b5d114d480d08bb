import type { Activity, Gap, Instance, ScopeFacts, Target } from './facts.js';

/** How many of the first items of a sorted list are before a point (`before` holds for a prefix of 0..length-1). */
function countBefore(length: number, before: (k: number) => boolean): number {
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (before(mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/**
 * A scope's instances, indexed by what activities name them by: id, address, network interface,
 * volume, tag and first launch. Built once per scope; answers in the order of the instances given.
 */
export class InstanceIndex {
  readonly byId = new Map<string, number>();
  // The others are built when first asked: a cycle without such activities never needs them.
  private vpcIp: Map<string, string> | null = null;
  private ip: Map<string, string[]> | null = null;
  private eni: Map<string, string> | null = null;
  private volume: Map<string, string> | null = null;
  /** tag key -> value -> positions, one key at a time as targets ask for it */
  private readonly byTag = new Map<string, Map<string, number[]>>();
  private readonly withTagKey = new Map<string, number[]>();
  private readonly targetsMemo = new Map<string, string[] | null>();
  private launchOrder: number[] | null = null;

  constructor(public instances: readonly Instance[]) {
    instances.forEach((i, n) => {
      if (!this.byId.has(i.instanceId)) this.byId.set(i.instanceId, n);
    });
  }

  /** "VPC IP" -> the instance holding that private address there */
  get byVpcIp(): ReadonlyMap<string, string> {
    if (!this.vpcIp) this.indexAddresses();
    return this.vpcIp as Map<string, string>;
  }

  /** private IP -> the instances holding it, in any VPC */
  get byIp(): ReadonlyMap<string, string[]> {
    if (!this.ip) this.indexAddresses();
    return this.ip as Map<string, string[]>;
  }

  get byEni(): ReadonlyMap<string, string> {
    if (!this.eni) {
      this.eni = new Map();
      for (const i of this.instances) for (const eni of i.networkInterfaceIds) this.eni.set(eni, i.instanceId);
    }
    return this.eni;
  }

  get byVolume(): ReadonlyMap<string, string> {
    if (!this.volume) {
      this.volume = new Map();
      for (const i of this.instances) for (const vol of i.volumeIds) this.volume.set(vol, i.instanceId);
    }
    return this.volume;
  }

  private indexAddresses(): void {
    this.vpcIp = new Map();
    this.ip = new Map();
    for (const i of this.instances) {
      for (const ip of i.privateIpAddresses) {
        if (i.vpcId) this.vpcIp.set(`${i.vpcId} ${ip}`, i.instanceId);
        push(this.ip, ip, i.instanceId);
      }
    }
  }

  /** value -> positions of the instances with this tag key */
  private tagValues(key: string): Map<string, number[]> {
    let values = this.byTag.get(key);
    if (!values) {
      values = new Map();
      const withKey: number[] = [];
      const { instances } = this;
      for (let n = 0; n < instances.length; n++) {
        const tags = (instances[n] as Instance).tags;
        if (!Object.hasOwn(tags, key)) continue;
        push(values, tags[key] as string, n);
        withKey.push(n);
      }
      this.byTag.set(key, values);
      this.withTagKey.set(key, withKey);
    }
    return values;
  }

  private withKey(key: string): number[] {
    this.tagValues(key);
    return this.withTagKey.get(key) as number[];
  }

  /** The same instances, described again (see Attributor.carries): answers stay, the objects are the new ones. */
  rebase(instances: readonly Instance[]): void {
    this.instances = instances;
  }

  private ids(positions: Iterable<number>): string[] {
    return [...positions].sort((a, b) => a - b).map((n) => (this.instances[n] as Instance).instanceId);
  }

  /** The instances a targets list selects (every target must match), or null when a target is of a kind pristine cannot resolve. */
  resolveTargets(targets: readonly Target[]): string[] | null {
    const key = JSON.stringify(targets);
    const known = this.targetsMemo.get(key);
    if (known !== undefined) return known;
    let selected: Set<number> | null = null; // null: every instance
    let resolvable = true;
    for (const { key: kind, values } of targets) {
      const matched = new Set<number>();
      if (kind === 'InstanceIds') {
        if (values.includes('*')) continue;
        for (const v of values) {
          const n = this.byId.get(v);
          if (n !== undefined) matched.add(n);
        }
      } else if (kind.startsWith('tag:')) {
        const byValue = this.tagValues(kind.slice(4));
        for (const v of values) for (const n of byValue.get(v) ?? []) matched.add(n);
      } else if (kind === 'tag-key') {
        for (const k of values) for (const n of this.withKey(k)) matched.add(n);
      } else {
        resolvable = false; // resource groups and the like: pristine cannot tell which instances they held
        break;
      }
      const prev: Set<number> | null = selected;
      selected = prev === null ? matched : new Set<number>([...prev].filter((n: number) => matched.has(n)));
    }
    const out = !resolvable ? null : selected === null ? this.instances.map((i) => i.instanceId) : this.ids(selected);
    this.targetsMemo.set(key, out);
    return out;
  }

  /** Instances first launched before a time: the ones an unresolvable action then could have reached. */
  launchedBefore(at: number): string[] {
    if (!this.launchOrder) {
      this.launchOrder = this.instances.map((_, n) => n).sort((a, b) => (this.instances[a] as Instance).firstLaunch - (this.instances[b] as Instance).firstLaunch);
    }
    const order = this.launchOrder;
    return this.ids(order.slice(0, countBefore(order.length, (k) => (this.instances[order[k] as number] as Instance).firstLaunch < at)));
  }
}

const describeTargets = (t: readonly Target[]) => JSON.stringify(t);

const sameList = (x: readonly string[], y: readonly string[]): boolean => x.length === y.length && x.every((v, i) => v === y[i]);

/** Whether two maps give the same answer for every key asked. */
function sameAnswers<V>(asked: ReadonlySet<string>, x: ReadonlyMap<string, V>, y: ReadonlyMap<string, V>, same: (a: V, b: V) => boolean): boolean {
  for (const k of asked) {
    const v = x.get(k);
    const w = y.get(k);
    if (v === undefined ? w !== undefined : w === undefined || !same(v, w)) return false;
  }
  return true;
}

/** Whether two instance lists tie activities alike: same order, ids, first launches, addresses, interfaces, volumes and tags. */
function sameInstances(x: readonly Instance[], y: readonly Instance[]): boolean {
  if (x.length !== y.length) return false;
  for (let n = 0; n < x.length; n++) {
    const a = x[n] as Instance;
    const b = y[n] as Instance;
    if (a === b) continue;
    if (a.instanceId !== b.instanceId || a.firstLaunch !== b.firstLaunch || a.vpcId !== b.vpcId) return false;
    if (!sameList(a.privateIpAddresses, b.privateIpAddresses) || !sameList(a.networkInterfaceIds, b.networkInterfaceIds) || !sameList(a.volumeIds, b.volumeIds)) return false;
    const keys = Object.keys(a.tags);
    if (keys.length !== Object.keys(b.tags).length || keys.some((k) => a.tags[k] !== b.tags[k])) return false;
  }
  return true;
}

/** An action that reached many instances (a command by tags to a whole fleet): kept once, with its members. */
export interface Broadcast {
  /** by instance position in the scope: 1 for each instance it reached */
  members: Uint8Array;
  /** oldest first */
  activities: Activity[];
}

/** An empty list of activities, shared (frozen: never changed). */
export const NO_ACTIVITIES: readonly Activity[] = Object.freeze([]);

/** What attributing an activity through the instance index did: what it was tied as, the broadcast holding it, the gaps it left. */
interface IndexedTie {
  tied: Activity | null;
  broadcast: Broadcast | null;
  gaps: Gap[];
}

/** An activity taken, by its id. */
interface Taken {
  activity: Activity;
  /** the instances it was tied to (null until attributed, and while untied) */
  where: readonly string[] | null;
  /** the order activities were taken in, a tie-break in time (-1 until kept in a list) */
  ordinal: number;
}

/** From this many instances on, an activity is kept once for all of them rather than once per instance. */
const BROADCAST = 64;

/**
 * Ties every activity to the instances it touched: directly from the record, or through what it
 * names: the session id (ResumeSession), the VPC and private IP (EIC Endpoint OpenTunnel), a network
 * interface (ModifyNetworkInterfaceAttribute, AssociateAddress), a volume (ModifyVolume), the command's
 * invocations or the targets of a command or association. A session known to both CloudTrail and
 * SSM's history counts once. What cannot be tied with certainty becomes a gap on the instances it
 * could concern: never a clean result.
 *
 * For one scope: all of a cycle's activities at once, then the ones pushed between cycles, a batch
 * at a time, with the same result as attributing them all together. Instances are looked up in an
 * index, never scanned per activity; what reached many instances is kept once per set of instances.
 */
export class Attributor {
  /** instance id -> the activities tied to it alone or to a few instances, oldest first */
  readonly byInstance = new Map<string, Activity[]>();
  readonly broadcasts: Broadcast[] = [];
  /** by the list of instance ids it was resolved to: targets resolve many activities to one list */
  private readonly broadcastOf = new Map<readonly string[], Broadcast>();
  private nextOrdinal = 0;
  /** in the order the activities that left them were attributed */
  readonly gaps: Gap[] = [];
  private _index: InstanceIndex;
  /**
   * Activities tied through the instance index (an address, an interface or volume, targets, who lived
   * then), by id, in the order attributed: what they were tied as, the broadcast that holds them, the
   * gaps they left (only these leave gaps). A change of instances attributes these again, and only
   * these (see `reindex`).
   */
  private readonly indexed = new Map<string, IndexedTie>();
  /** activity id -> the activity taken, where it was tied and its place in the order (one lookup an activity) */
  private readonly taken = new Map<string, Taken>();
  /** the command, association, endpoint and document ids whose answers the activities taken were tied by */
  private readonly asked = { commands: new Set<string>(), associations: new Set<string>(), endpoints: new Set<string>(), documents: new Set<string>() };
  /** activities tied to a session whose instance is not known yet: tied when it is */
  private readonly pending = new Map<string, Activity[]>();
  /**
   * Set when activities taken later would have tied earlier ones differently (a session said to be on
   * another instance): attributing everything again is the only way to the same result.
   */
  stale = false;
  private readonly sessionTarget = new Map<string, string>();
  private readonly trailSessions = new Set<string>();
  /** activities only SSM's session history knows, by session: dropped when CloudTrail's record of the session arrives */
  private readonly historyOnly = new Map<string, Array<{ instanceId: string; activity: Activity }>>();
  /** instance id -> the tag changes (CreateTags, DeleteTags) naming it, whoever made them */
  private readonly tagChanges = new Map<string, Activity[]>();
  /** tag key -> when it was set or removed on which instance (CreateTags, DeleteTags): what targets matched then */
  private readonly tagMoves = new Map<string, Array<{ instanceId: string; at: number }>>();
  /**
   * tag key -> the times of the first and last actions placed by targets on it: a later change of that
   * key, on an instance launched before one of them, would place it otherwise
   */
  private readonly placedByTag = new Map<string, { first: number; last: number }>();
  /** association id -> when it was updated (UpdateAssociation): DescribeAssociation tells its targets of now only */
  private readonly associationUpdates = new Map<string, number[]>();
  /** association id -> the earliest run placed by its targets of now: a later update would place it otherwise */
  private readonly placedByAssociation = new Map<string, number>();
  /** DeleteAssociation activities: an association deleted after a document changed may have run it, unlisted now */
  private readonly deletions: Activity[] = [];
  /** association id -> the documents its CreateAssociation and UpdateAssociation records say it ran */
  private readonly associationDocs = new Map<string, Set<string>>();
  /** document name -> its earliest change attributed: a later deletion would place it otherwise */
  private readonly placedByDocument = new Map<string, number>();
  /** instance id -> the change (a count) that last touched its list: what was judged from the list before still holds */
  private readonly changed = new Map<string, number>();
  private changes = 0;

  /**
   * `irrelevant`: an activity no verdict can depend on (no policy of the scope could find anything in
   * it: an allowed caller, a document every policy ignores). It is still attributed (a gap it leaves
   * stands, and it still names its instances), but it is kept in no instance's list.
   */
  constructor(
    private facts: ScopeFacts,
    private readonly irrelevant: (a: Activity) => boolean = () => false,
  ) {
    this._index = new InstanceIndex(facts.instances);
  }

  get index(): InstanceIndex {
    return this._index;
  }

  /**
   * The activities of the next cycle's facts not taken yet, when what was taken can be carried over:
   * the same command, association and endpoint answers, and every activity taken before present as the
   * very same object. `reindex` when the instances differ (in order, ids, addresses, interfaces,
   * volumes or tags): what was tied through them is attributed again (see `reindex`). Why not, when
   * anything else differs: then the next cycle starts afresh.
   */
  carries(next: ScopeFacts): { fresh: Activity[]; reindex: boolean } | { why: string } {
    const prev = this.facts;
    if (this.stale) return { why: 'a session was said to be on another instance' };
    if (next.accountId !== prev.accountId || next.region !== prev.region) return { why: 'another scope' };
    // Other instances (one came or went, or its addresses, interfaces, volumes or tags changed): what
    // was tied through the index is attributed again (`reindex`), the rest stands.
    const reindex = !sameInstances(prev.instances, next.instances);
    // Answers about commands, associations and endpoints the activities taken do not name may come and go.
    const { commands, associations, endpoints, documents } = this.asked;
    if (!sameAnswers(commands, prev.commandTargets, next.commandTargets, sameList) || !sameAnswers(commands, prev.unresolvedCommands, next.unresolvedCommands, Object.is)) {
      return { why: 'SSM answered otherwise about a command' };
    }
    if (!sameAnswers(endpoints, prev.endpointVpcs, next.endpointVpcs, Object.is)) return { why: 'an endpoint changed' };
    if (!sameAnswers(associations, prev.associationTargets, next.associationTargets, (x, y) => JSON.stringify(x) === JSON.stringify(y))) {
      return { why: 'an association changed' };
    }
    if (!sameAnswers(documents, prev.documentAssociations, next.documentAssociations, (x, y) => JSON.stringify(x) === JSON.stringify(y))) {
      return { why: 'the associations that run a changed document changed' };
    }
    const fresh: Activity[] = [];
    // The evidence log hands the same objects back in the same order, the new ones after: a prefix of
    // the very objects of the facts it has (it took every one) needs no lookup.
    const before = prev.activities;
    const same = Math.min(before.length, next.activities.length);
    let known = 0;
    while (known < same && next.activities[known] === before[known]) known++;
    for (let n = known; n < next.activities.length; n++) {
      const a = next.activities[n] as Activity;
      const t = this.taken.get(a.id)?.activity;
      if (t === undefined) fresh.push(a);
      else if (t !== a) return { why: `activity ${a.id} changed in the evidence log` };
      else known++;
    }
    return known === this.taken.size ? { fresh, reindex } : { why: 'activities left the evidence window' };
  }

  /** Everything it took, attributed afresh in the order taken (when it went stale). */
  again(): Attributor {
    return Attributor.of({ ...this.facts, activities: [...this.taken.values()].map((t) => t.activity) }, this.irrelevant);
  }

  /** Takes the next cycle's facts as its own (they attribute as the ones it had: see `carries`). */
  rebase(next: ScopeFacts): void {
    this.facts = next;
    this._index.rebase(next.instances);
  }

  /**
   * Takes the next cycle's facts as its own when their instances differ (see `carries`): broadcasts
   * count their members at the new positions, and what was tied through the index is untied and
   * attributed again, in the order first attributed. The result is what attributing everything afresh
   * gives.
   */
  reindex(next: ScopeFacts): void {
    this.facts = next;
    this._index = new InstanceIndex(next.instances);
    // The same members at their new positions: what an instance still here was reached by is unchanged.
    for (const [ids, b] of this.broadcastOf) b.members = this.membersOf(ids);
    const again = [...this.indexed.keys()].map((id) => this.taken.get(id) as Taken);
    const dropped = new Set<Gap>();
    for (const t of again) for (const g of this.untie(t)) dropped.add(g);
    if (dropped.size > 0) {
      const kept = this.gaps.filter((g) => !dropped.has(g));
      this.gaps.length = 0;
      for (const g of kept) this.gaps.push(g);
    }
    // In order, into lists already sorted (incremental), naming no instance to re-judge (all are judged).
    for (const t of again) this.attributeOne(t, null, true);
    // Broadcasts left with no activity (their activities now reach another set of instances).
    for (const [ids, b] of this.broadcastOf) {
      if (b.activities.length > 0) continue;
      this.broadcastOf.delete(ids);
      this.broadcasts.splice(this.broadcasts.indexOf(b), 1);
    }
  }

  /** Undoes what attributing an activity through the index did (its ties, its place in a broadcast); returns the gaps it left. */
  private untie(taken: Taken): Gap[] {
    const { id } = taken.activity;
    const done = this.indexed.get(id);
    if (!done) return [];
    this.indexed.delete(id);
    if (done.tied && done.broadcast) {
      const at = done.broadcast.activities.indexOf(done.tied);
      if (at >= 0) done.broadcast.activities.splice(at, 1);
      this.broadcastVersion++;
    } else if (done.tied) {
      for (const instanceId of new Set(taken.where ?? [])) {
        const list = this.byInstance.get(instanceId);
        const at = list ? list.indexOf(done.tied) : -1;
        if (list && at >= 0) {
          list.splice(at, 1);
          this.changed.set(instanceId, ++this.changes);
        }
      }
    }
    taken.where = null;
    return done.gaps;
  }

  /** Inserts in (time, order taken) order: what a stable sort by time of the list attributed at once gives. */
  private insert(list: Activity[], a: Activity): void {
    list.splice(countBefore(list.length, (k) => this.order(list[k] as Activity, a) <= 0), 0, a);
  }

  /**
   * Attributes activities; returns the instances they are tied to. Between cycles an event can
   * arrive again by another path: it counts once, and still names the instances it was tied to.
   */
  add(activities: readonly Activity[], incremental = true): Set<string> {
    const concerned = new Set<string>();
    const fresh: Activity[] = [];
    for (let n = 0; n < activities.length; n++) {
      const a = activities[n] as Activity;
      const taken = incremental ? this.taken.get(a.id) : undefined;
      if (!taken) fresh.push(a);
      else for (const id of taken.where ?? []) concerned.add(id);
    }
    const waited: Activity[] = [];
    const freshTaken: Taken[] = [];
    for (let n = 0; n < fresh.length; n++) {
      const a = fresh[n] as Activity;
      const taken: Taken = { activity: a, where: null, ordinal: -1 };
      this.taken.set(a.id, taken);
      freshTaken.push(taken);
      if (a.tagChanges) {
        for (const instanceId of new Set(a.instanceIds)) push(this.tagChanges, instanceId, a);
        for (const t of a.tagChanges) {
          for (const instanceId of a.instanceIds) push(this.tagMoves, t.key, { instanceId, at: a.at });
          // An action placed by this key's values of now before this change, on an instance that lived
          // then: placed otherwise now. (A new instance tagged after its launch changes nothing.)
          const placed = this.placedByTag.get(t.key);
          if (incremental && placed !== undefined && placed.first <= a.at && a.instanceIds.some((id) => this.livedBefore(id, placed.last))) this.stale = true;
        }
      }
      if (a.deletedAssociation) {
        this.deletions.push(a);
        for (const placed of this.placedByDocument.values()) if (incremental && placed <= a.at) this.stale = true;
      }
      const ran = a.eventName === 'CreateAssociation' || a.eventName === 'UpdateAssociation' ? a.detail['associationId'] : undefined;
      const doc = typeof ran === 'string' && ran !== '' ? a.detail['documentName'] : undefined;
      if (typeof ran === 'string' && typeof doc === 'string') {
        const docs = this.associationDocs.get(ran) ?? new Set<string>();
        docs.add(doc);
        this.associationDocs.set(ran, docs);
        // What a deletion of it was taken to have run is known otherwise now.
        if (incremental && this.deletions.some((d) => d.deletedAssociation?.associationId === ran)) this.stale = true;
      }
      const updated = a.eventName === 'UpdateAssociation' ? a.commandTargets?.commandId || a.detail['associationId'] : undefined;
      if (typeof updated === 'string' && updated !== '') {
        push(this.associationUpdates, updated, a.at);
        const placed = this.placedByAssociation.get(updated);
        if (incremental && placed !== undefined && placed <= a.at) this.stale = true;
      }
      if (a.sessionId && a.instanceIds[0]) {
        const before = this.sessionTarget.get(a.sessionId);
        if (incremental && before !== undefined && before !== a.instanceIds[0]) this.stale = true;
        this.sessionTarget.set(a.sessionId, a.instanceIds[0]);
        const waiting = this.pending.get(a.sessionId);
        if (waiting) {
          this.pending.delete(a.sessionId);
          for (const w of waiting) waited.push(w); // not push(...spread): a session's records are as many as anyone sent
        }
      }
      if (a.sessionId && a.source === 'cloudtrail' && a.eventName === 'StartSession' && !this.trailSessions.has(a.sessionId)) {
        this.trailSessions.add(a.sessionId);
        // A session attributed from SSM's history alone is now known to CloudTrail: it counts once.
        for (const { instanceId, activity } of this.historyOnly.get(a.sessionId) ?? []) {
          const list = this.byInstance.get(instanceId);
          const at = list ? list.indexOf(activity) : -1;
          if (list && at >= 0) {
            list.splice(at, 1);
            this.changed.set(instanceId, ++this.changes);
          }
        }
        this.historyOnly.delete(a.sessionId);
      }
    }
    for (const a of waited) this.attributeOne(this.taken.get(a.id) as Taken, concerned, true);
    for (let n = 0; n < freshTaken.length; n++) this.attributeOne(freshTaken[n] as Taken, concerned, incremental);
    return concerned;
  }

  /** Whether a deleted association may have run `document`: by its name in the deletion, else by what its records said it ran. */
  private mayHaveRun(deletion: Activity, document: string, listed: ReadonlySet<string>): boolean {
    const d = deletion.deletedAssociation;
    if (!d) return false;
    if (d.documentName !== null) return d.documentName === document;
    if (d.associationId === null) return true;
    if (listed.has(d.associationId)) return false;
    const docs = this.associationDocs.get(d.associationId);
    return docs === undefined || docs.has(document);
  }

  /** A gap an activity tied through the index left (see `indexed`). */
  private gap(a: Activity, source: Gap['source'], message: string, instanceIds: string[]): void {
    const g: Gap = { source, accountId: this.facts.accountId, region: this.facts.region, message, instanceIds };
    this.gaps.push(g);
    this.viaIndex(a).gaps.push(g);
  }

  /** Marks an activity as tied through the instance index (see `indexed`). */
  private viaIndex(a: Activity): IndexedTie {
    let done = this.indexed.get(a.id);
    if (!done) {
      done = { tied: null, broadcast: null, gaps: [] };
      this.indexed.set(a.id, done);
    }
    return done;
  }

  private attributeOne(taken: Taken, concerned: Set<string> | null, incremental: boolean): void {
    const { facts, index } = this;
    const a = taken.activity;
    /** set when the activity is tied through the index: what it was tied as, kept to untie it */
    let done: IndexedTie | undefined;
    if (a.source === 'ssm-sessions' && a.sessionId && this.trailSessions.has(a.sessionId)) return;
    let ids = a.instanceIds;
    let activity = a;
    if (ids.length === 0 && a.sessionId) {
      const target = this.sessionTarget.get(a.sessionId);
      ids = target ? [target] : [];
      if (!target) push(this.pending, a.sessionId, a);
    } else if (ids.length === 0 && a.refs?.privateIpAddress) {
      done = this.viaIndex(a);
      const ip = a.refs.privateIpAddress;
      if (a.refs.endpointId) this.asked.endpoints.add(a.refs.endpointId);
      const vpc = a.refs.endpointId ? facts.endpointVpcs.get(a.refs.endpointId) : undefined;
      if (vpc) {
        const target = index.byVpcIp.get(`${vpc} ${ip}`);
        ids = target ? [target] : [];
      } else {
        // The same private IP can exist in several VPCs: without the endpoint's VPC, every holder is in doubt.
        const holders = index.byIp.get(ip) ?? [];
        if (holders.length > 0) {
          this.gap(a, 'cloudtrail', `${a.eventName} ${a.id} to ${ip} through ${a.refs.endpointId ?? 'an unnamed endpoint'}: the endpoint's VPC could not be read, so which instance it reached is unknown`, holders);
          return;
        }
      }
    } else if (ids.length === 0 && (a.refs?.networkInterfaceIds || a.refs?.volumeIds)) {
      done = this.viaIndex(a);
      ids = [
        ...(a.refs.networkInterfaceIds ?? []).flatMap((eni) => index.byEni.get(eni) ?? []),
        ...(a.refs.volumeIds ?? []).flatMap((vol) => index.byVolume.get(vol) ?? []),
      ];
    } else if (ids.length === 0 && a.commandTargets) {
      const { commandId, targets } = a.commandTargets;
      if (commandId) this.asked.commands.add(commandId);
      const invoked = commandId ? facts.commandTargets.get(commandId) : undefined;
      const failed = commandId ? facts.unresolvedCommands.get(commandId) : undefined;
      if (!invoked) done = this.viaIndex(a);
      const byTags = invoked ? null : index.resolveTargets(targets);
      if (invoked) ids = invoked;
      else if (failed !== undefined) {
        const reached = byTags ? [...new Set([...byTags, ...this.retagged(targets, a.at)])] : index.launchedBefore(a.at);
        this.gap(a, 'ssm-commands', `${a.eventName} ${commandId} by targets ${describeTargets(targets)}: where it ran could not be read (${failed})`, reached);
        return;
      } else if (byTags === null) {
        this.gap(a, 'ssm-commands', `${a.eventName} ${commandId || a.id} by targets ${describeTargets(targets)}: which instances it ran on could not be resolved`, index.launchedBefore(a.at));
        return;
      } else {
        ids = byTags;
        this.gapRetagged(a, `${a.eventName} ${commandId || a.id} by targets ${describeTargets(targets)}`, byTags, this.retagged(targets, a.at));
        activity = { ...a, detail: { ...a.detail, resolvedBy: 'targets' } };
      }
    } else if (ids.length === 0 && (a.associationIds || a.documentUpdate)) {
      done = this.viaIndex(a);
      let associationIds = a.associationIds;
      const gone: Activity[] = [];
      if (!associationIds && a.documentUpdate) {
        // A changed document reaches the instances of every association that runs it at a version it changed.
        const { name, versions } = a.documentUpdate;
        this.asked.documents.add(name);
        const running = facts.documentAssociations.get(name);
        if (!running) {
          // Where an allowed principal's change runs does not matter: no policy could find anything in it.
          if (this.irrelevant(a)) return;
          this.gap(a, 'ssm-commands', `${a.eventName} ${a.id} of document ${name}: the associations that run it could not be listed`, index.launchedBefore(a.at));
          return;
        }
        associationIds = running.filter((r) => versions === null || versions.includes(r.documentVersion)).map((r) => r.associationId);
        activity = { ...a, detail: { ...a.detail, associationIds } };
        const placed = this.placedByDocument.get(name);
        if (placed === undefined || a.at < placed) this.placedByDocument.set(name, a.at);
        // An association deleted since may have run the changed document: ListAssociations lists it no more.
        const listed = new Set(running.map((r) => r.associationId));
        for (const d of this.deletions) if (d.at >= a.at && this.mayHaveRun(d, name, listed)) gone.push(d);
      }
      const found = new Set<string>();
      const moved = new Set<string>();
      let unresolved: string | null = null;
      let updated: string | null = null;
      for (const id of associationIds ?? []) {
        this.asked.associations.add(id);
        const placed = this.placedByAssociation.get(id);
        if (placed === undefined || a.at < placed) this.placedByAssociation.set(id, a.at);
        if ((this.associationUpdates.get(id) ?? []).some((t) => t >= a.at)) updated = id;
        const targets = facts.associationTargets.get(id);
        const resolved = targets ? index.resolveTargets(targets) : null;
        if (resolved === null) unresolved = id;
        else {
          resolved.forEach((x) => found.add(x));
          for (const x of this.retagged(targets as readonly Target[], a.at)) moved.add(x);
        }
      }
      if (unresolved !== null) {
        this.gap(a, 'ssm-commands', `${a.eventName} ${a.id}: the targets of association ${unresolved} could not be resolved`, index.launchedBefore(a.at));
        return;
      }
      ids = [...found];
      if (updated !== null) {
        // Where it ran then is not where the association's targets of now point.
        this.gapBeyond(a, found, index.launchedBefore(a.at), () => `${a.eventName} ${a.id}: association ${updated} was updated since, so the targets it ran with are not known`);
      }
      if (gone.length > 0) {
        // Where each could have run it: the instance a deletion names (an association by instance id), else
        // every instance that lived before the deletion.
        const reach = gone.flatMap((d) => (d.instanceIds.length > 0 ? d.instanceIds : index.launchedBefore(d.at)));
        const which = () => gone.map((d) => d.deletedAssociation?.associationId ?? `of ${d.deletedAssociation?.documentName ?? '?'}`).join(', ');
        this.gapBeyond(a, found, reach, () => `${a.eventName} ${a.id} of document ${a.documentUpdate?.name ?? '?'}: association ${which()} was deleted since (DeleteAssociation), so where it ran the changed document is not known`);
      }
      this.gapRetagged(a, `${a.eventName} ${a.id} by the targets of association ${(associationIds ?? []).join(', ')}`, ids, [...moved]);
      activity = { ...activity, detail: { ...activity.detail, resolvedBy: 'targets' } };
    }
    taken.where = ids;
    if (incremental && concerned) for (let n = 0; n < ids.length; n++) concerned.add(ids[n] as string);
    if (this.irrelevant(activity)) return;
    if (taken.ordinal < 0) taken.ordinal = this.nextOrdinal++;
    if (done) done.tied = activity;
    if (ids.length >= BROADCAST) {
      const b = this.broadcastFor(ids);
      if (done) done.broadcast = b;
      if (incremental) this.insert(b.activities, activity);
      else b.activities.push(activity);
      return;
    }
    const each = ids.length > 2 ? [...new Set(ids)] : ids.length === 2 && ids[0] === ids[1] ? [ids[0] as string] : ids;
    for (let n = 0; n < each.length; n++) {
      const id = each[n] as string;
      if (incremental) {
        const list = this.byInstance.get(id);
        if (list) this.insert(list, activity);
        else this.byInstance.set(id, [activity]);
        this.changed.set(id, ++this.changes);
      } else push(this.byInstance, id, activity);
      if (a.source === 'ssm-sessions' && a.sessionId) push(this.historyOnly, a.sessionId, { instanceId: id, activity });
    }
  }

  /**
   * Targets are matched against the instances' tags of now. An instance launched before the action
   * whose tag of a targeted key was set or removed at or after it may have matched then and not now:
   * these, and the action's key times (a change of them taken later attributes everything again).
   */
  private retagged(targets: readonly Target[], at: number): string[] {
    const out: string[] = [];
    for (const { key: kind, values } of targets) {
      const keys = kind.startsWith('tag:') ? [kind.slice(4)] : kind === 'tag-key' ? values : [];
      for (const key of keys) {
        const placed = this.placedByTag.get(key);
        if (!placed) this.placedByTag.set(key, { first: at, last: at });
        else {
          placed.first = Math.min(placed.first, at);
          placed.last = Math.max(placed.last, at);
        }
        for (const m of this.tagMoves.get(key) ?? []) if (m.at >= at && this.livedBefore(m.instanceId, at)) out.push(m.instanceId);
      }
    }
    return out;
  }

  /** Whether an instance of the scope was first launched before a time. */
  private livedBefore(instanceId: string, at: number): boolean {
    const n = this.index.byId.get(instanceId);
    return n !== undefined && (this.facts.instances[n] as Instance).firstLaunch < at;
  }

  /**
   * The instances an action by targets may have reached and the tags of now do not select: unknown,
   * never clean. (Not for an action no verdict can depend on: an allowed caller's.)
   */
  private gapRetagged(a: Activity, what: string, selected: readonly string[], retagged: readonly string[]): void {
    if (retagged.length === 0) return;
    this.gapBeyond(a, new Set(selected), retagged, () => `${what}: the tags it targets changed on this instance since, so whether it ran here is unknown`);
  }

  /**
   * The instances an action may have reached beyond those it was tied to: unknown, never clean, each
   * once. (Not for an action no verdict can depend on: an allowed caller's.)
   */
  private gapBeyond(a: Activity, tied: ReadonlySet<string>, reached: Iterable<string>, message: () => string): void {
    if (this.irrelevant(a)) return;
    const doubtful = [...new Set(reached)].filter((id) => !tied.has(id));
    if (doubtful.length > 0) this.gap(a, 'ssm-commands', message(), doubtful);
  }

  /** The tag changes naming an instance, by anyone, in the order taken (whatever lists or broadcasts hold them). */
  tagChangesOf(instanceId: string): readonly Activity[] {
    return this.tagChanges.get(instanceId) ?? NO_ACTIVITIES;
  }

  /** Bumped whenever a broadcast is made or gains an activity. */
  broadcastVersion = 0;

  /**
   * When the instance's own list last changed after the attributor was made (0: never): equal
   * numbers mean the same activities in the same order. (What reached it through a broadcast is told
   * by `broadcastVersion`.)
   */
  changedAt(instanceId: string): number {
    return this.changed.get(instanceId) ?? 0;
  }

  /** The broadcast of this list of instances (ids not in the scope are never judged, so they are left out). */
  private broadcastFor(ids: readonly string[]): Broadcast {
    this.broadcastVersion++;
    let b = this.broadcastOf.get(ids);
    if (!b) {
      b = { members: this.membersOf(ids), activities: [] };
      this.broadcastOf.set(ids, b);
      this.broadcasts.push(b);
    }
    return b;
  }

  /** By instance position: 1 for each of these instances in the scope. */
  private membersOf(ids: readonly string[]): Uint8Array {
    const members = new Uint8Array(this.facts.instances.length);
    for (let k = 0; k < ids.length; k++) {
      const n = this._index.byId.get(ids[k] as string);
      if (n !== undefined) members[n] = 1;
    }
    return members;
  }

  /** Which of two activities was taken first: the tie-break of activities at the same time. */
  order(a: Activity, b: Activity): number {
    return a.at - b.at || this.ordinalOf(a) - this.ordinalOf(b);
  }

  private ordinalOf(a: Activity): number {
    const ordinal = this.taken.get(a.id)?.ordinal ?? -1;
    return ordinal < 0 ? 0 : ordinal;
  }

  /** The whole scope's activities at once (a cycle): appended, then each instance's list sorted once. */
  static of(facts: ScopeFacts, irrelevant?: (a: Activity) => boolean): Attributor {
    const at = new Attributor(facts, irrelevant);
    at.add(facts.activities, false);
    at.byInstance.forEach((list) => list.sort((x, y) => x.at - y.at));
    for (const b of at.broadcasts) b.activities.sort((x, y) => x.at - y.at);
    return at;
  }
}
