import type { Activity, Gap, Instance, ScopeFacts, Target } from './facts.js';

export interface Attribution {
  /** instance id -> activities on it, oldest first */
  byInstance: Map<string, Activity[]>;
  /** evidence that could not be tied to instances (e.g. a command whose targets cannot be resolved) */
  gaps: Gap[];
}

function push(map: Map<string, Activity[]>, id: string, a: Activity): void {
  const list = map.get(id);
  if (list) list.push(a);
  else map.set(id, [a]);
}

function index<K>(map: Map<K, string[]>, key: K, id: string): void {
  const list = map.get(key);
  if (list) list.push(id);
  else map.set(key, [id]);
}

/** Instances a SendCommand/Automation/association `targets` list selects, judged from the instances' tags now. */
export function resolveTargets(targets: readonly Target[], instances: readonly Instance[]): string[] | null {
  let selected: Instance[] = [...instances];
  for (const { key, values } of targets) {
    if (key === 'InstanceIds') selected = selected.filter((i) => values.includes(i.instanceId) || values.includes('*'));
    else if (key.startsWith('tag:')) {
      const tag = key.slice(4);
      selected = selected.filter((i) => i.tags[tag] !== undefined && values.includes(i.tags[tag] as string));
    } else if (key === 'tag-key') selected = selected.filter((i) => values.some((k) => i.tags[k] !== undefined));
    else return null; // resource groups and the like: pristine cannot tell which instances they held
  }
  return selected.map((i) => i.instanceId);
}

const describeTargets = (t: readonly Target[]) => JSON.stringify(t);

/**
 * Ties every activity to the instances it touched: directly from the record, or through what it
 * names: the session id (ResumeSession), the VPC and private IP (EIC Endpoint OpenTunnel), a network
 * interface (ModifyNetworkInterfaceAttribute, AssociateAddress), a volume (ModifyVolume), the command's
 * invocations or the targets of a command or association. A session known to both CloudTrail and
 * SSM's history counts once. What cannot be tied with certainty becomes a gap on the instances it
 * could concern: never a clean result.
 */
export function attribute(facts: ScopeFacts): Attribution {
  const byInstance = new Map<string, Activity[]>();
  const gaps: Gap[] = [];
  const scope = { accountId: facts.accountId, region: facts.region };
  const sessionTarget = new Map<string, string>();
  const trailSessions = new Set<string>();
  for (const a of facts.activities) {
    if (a.sessionId && a.instanceIds[0]) sessionTarget.set(a.sessionId, a.instanceIds[0]);
    if (a.sessionId && a.source === 'cloudtrail' && a.eventName === 'StartSession') trailSessions.add(a.sessionId);
  }
  const byVpcIp = new Map<string, string>();
  const byIp = new Map<string, string[]>();
  const byEni = new Map<string, string>();
  const byVolume = new Map<string, string>();
  for (const i of facts.instances) {
    for (const ip of i.privateIpAddresses) {
      if (i.vpcId) byVpcIp.set(`${i.vpcId} ${ip}`, i.instanceId);
      index(byIp, ip, i.instanceId);
    }
    for (const eni of i.networkInterfaceIds) byEni.set(eni, i.instanceId);
    for (const vol of i.volumeIds) byVolume.set(vol, i.instanceId);
  }
  const launchedBefore = (at: number) => facts.instances.filter((i) => i.firstLaunch < at).map((i) => i.instanceId);
  const gap = (source: Gap['source'], message: string, instanceIds: string[]) => gaps.push({ source, ...scope, message, instanceIds });

  for (const a of facts.activities) {
    if (a.source === 'ssm-sessions' && a.sessionId && trailSessions.has(a.sessionId)) continue;
    let ids = a.instanceIds;
    let activity = a;
    if (ids.length === 0 && a.sessionId) {
      const target = sessionTarget.get(a.sessionId);
      ids = target ? [target] : [];
    } else if (ids.length === 0 && a.refs?.privateIpAddress) {
      const ip = a.refs.privateIpAddress;
      const vpc = a.refs.endpointId ? facts.endpointVpcs.get(a.refs.endpointId) : undefined;
      if (vpc) {
        const target = byVpcIp.get(`${vpc} ${ip}`);
        ids = target ? [target] : [];
      } else {
        // The same private IP can exist in several VPCs: without the endpoint's VPC, every holder is in doubt.
        const holders = byIp.get(ip) ?? [];
        if (holders.length > 0) {
          gap('cloudtrail', `${a.eventName} ${a.id} to ${ip} through ${a.refs.endpointId ?? 'an unnamed endpoint'}: the endpoint's VPC could not be read, so which instance it reached is unknown`, holders);
          continue;
        }
      }
    } else if (ids.length === 0 && (a.refs?.networkInterfaceIds || a.refs?.volumeIds)) {
      ids = [
        ...(a.refs.networkInterfaceIds ?? []).flatMap((eni) => byEni.get(eni) ?? []),
        ...(a.refs.volumeIds ?? []).flatMap((vol) => byVolume.get(vol) ?? []),
      ];
    } else if (ids.length === 0 && a.commandTargets) {
      const { commandId, targets } = a.commandTargets;
      const invoked = commandId ? facts.commandTargets.get(commandId) : undefined;
      const failed = commandId ? facts.unresolvedCommands.get(commandId) : undefined;
      const byTags = resolveTargets(targets, facts.instances);
      if (invoked) ids = invoked;
      else if (failed !== undefined) {
        gap('ssm-commands', `${a.eventName} ${commandId} by targets ${describeTargets(targets)}: where it ran could not be read (${failed})`, byTags ?? launchedBefore(a.at));
        continue;
      } else if (byTags === null) {
        gap('ssm-commands', `${a.eventName} ${commandId || a.id} by targets ${describeTargets(targets)}: which instances it ran on could not be resolved`, launchedBefore(a.at));
        continue;
      } else {
        ids = byTags;
        activity = { ...a, detail: { ...a.detail, resolvedBy: 'targets' } };
      }
    } else if (ids.length === 0 && a.associationIds) {
      const found = new Set<string>();
      let unresolved: string | null = null;
      for (const id of a.associationIds) {
        const targets = facts.associationTargets.get(id);
        const resolved = targets ? resolveTargets(targets, facts.instances) : null;
        if (resolved === null) unresolved = id;
        else resolved.forEach((x) => found.add(x));
      }
      if (unresolved !== null) {
        gap('ssm-commands', `${a.eventName} ${a.id}: the targets of association ${unresolved} could not be resolved`, launchedBefore(a.at));
        continue;
      }
      ids = [...found];
      activity = { ...a, detail: { ...a.detail, resolvedBy: 'targets' } };
    }
    for (const id of new Set(ids)) push(byInstance, id, activity);
  }
  for (const list of byInstance.values()) list.sort((x, y) => x.at - y.at);
  return { byInstance, gaps };
}
