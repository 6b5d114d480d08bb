import type { Activity, Gap, Instance, RegionFacts } from './facts.js';

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

/** Instances a SendCommand/Automation `targets` list selects, judged from the instances' tags now. */
function resolveTargets(targets: Array<{ key: string; values: string[] }>, instances: readonly Instance[]): string[] | null {
  let selected: Instance[] = [...instances];
  for (const { key, values } of targets) {
    if (key === 'InstanceIds') selected = selected.filter((i) => values.includes(i.instanceId));
    else if (key.startsWith('tag:')) {
      const tag = key.slice(4);
      selected = selected.filter((i) => i.tags[tag] !== undefined && values.includes(i.tags[tag] as string));
    } else if (key === 'tag-key') selected = selected.filter((i) => values.some((k) => i.tags[k] !== undefined));
    else return null; // resource groups and the like: pristine cannot tell which instances they held
  }
  return selected.map((i) => i.instanceId);
}

/**
 * Ties every activity to the instances it touched: directly from the record, through the session id
 * (ResumeSession), the private IP (OpenTunnel), or the command's invocations (SendCommand by targets).
 * A session known to both CloudTrail and SSM's history counts once.
 */
export function attribute(facts: RegionFacts): Attribution {
  const byInstance = new Map<string, Activity[]>();
  const gaps: Gap[] = [];
  const sessionTarget = new Map<string, string>();
  const trailSessions = new Set<string>();
  for (const a of facts.activities) {
    if (a.sessionId && a.instanceIds[0]) sessionTarget.set(a.sessionId, a.instanceIds[0]);
    if (a.sessionId && a.source === 'cloudtrail' && a.eventName === 'StartSession') trailSessions.add(a.sessionId);
  }
  const byIp = new Map<string, string>();
  for (const i of facts.instances) if (i.privateIpAddress) byIp.set(i.privateIpAddress, i.instanceId);

  for (const a of facts.activities) {
    if (a.source === 'ssm-sessions' && a.sessionId && trailSessions.has(a.sessionId)) continue;
    let ids = a.instanceIds;
    let activity = a;
    if (ids.length === 0 && a.sessionId) {
      const target = sessionTarget.get(a.sessionId);
      ids = target ? [target] : [];
    } else if (ids.length === 0 && a.eventName === 'OpenTunnel') {
      const target = byIp.get(String(a.detail['privateIpAddress']));
      ids = target ? [target] : [];
    } else if (ids.length === 0 && a.commandTargets) {
      const invoked = a.commandTargets.commandId ? facts.commandTargets.get(a.commandTargets.commandId) : undefined;
      if (invoked) ids = invoked;
      else {
        const resolved = resolveTargets(a.commandTargets.targets, facts.instances);
        if (resolved === null) {
          gaps.push({
            source: 'ssm-commands',
            region: facts.region,
            message: `${a.eventName} ${a.commandTargets.commandId || a.id} by targets ${JSON.stringify(a.commandTargets.targets)}: which instances it ran on could not be resolved`,
            instanceIds: facts.instances.filter((i) => i.launchTime < a.at).map((i) => i.instanceId),
          });
          continue;
        }
        ids = resolved;
        activity = { ...a, detail: { ...a.detail, resolvedBy: 'targets' } };
      }
    }
    for (const id of ids) push(byInstance, id, activity);
  }
  for (const list of byInstance.values()) list.sort((x, y) => x.at - y.at);
  return { byInstance, gaps };
}
