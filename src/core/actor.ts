import type { Actor } from './facts.js';

const ASSUMED_ROLE = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/.+$/;

/**
 * The IAM role behind an STS session ARN. The role's path is not in the session ARN, so
 * `arn:aws:sts::1:assumed-role/Admin/alice` gives `arn:aws:iam::1:role/Admin`.
 */
export function roleOfSession(arn: string): string | null {
  const m = ASSUMED_ROLE.exec(arn);
  return m ? `arn:${m[1]}:iam::${m[2]}:role/${m[3]}` : null;
}

/**
 * A fleet's records come from a few dozen callers: each distinct caller becomes one frozen Actor,
 * shared by all its activities (so what is decided about a caller is decided once).
 */
const actors = new Map<string, Array<{ issuer: string | null; invokedBy: string | null; actor: Actor }>>();
let actorCount = 0;
const MAX_ACTORS = 50_000;

/** The caller of a record: its ARN, its session's issuer (a role) and the service it invoked through. */
export function actorFrom(arn: string | null, issuer?: string | null, invokedBy?: string | null): Actor {
  const i = issuer || null;
  const v = invokedBy || null;
  let same = actors.get(arn ?? '');
  if (same) {
    for (let n = 0; n < same.length; n++) {
      const e = same[n] as { issuer: string | null; invokedBy: string | null; actor: Actor };
      if (e.issuer === i && e.invokedBy === v) return e.actor;
    }
  } else {
    if (actorCount >= MAX_ACTORS) {
      actors.clear();
      actorCount = 0;
    }
    same = [];
    actors.set(arn ?? '', same);
  }
  const identities = new Set<string>();
  for (const id of [arn, i, v]) if (id) identities.add(id);
  if (arn) {
    const role = roleOfSession(arn);
    if (role) identities.add(role);
  }
  const actor: Actor = Object.freeze({ arn, identities: Object.freeze([...identities]) as string[] });
  same.push({ issuer: i, invokedBy: v, actor });
  actorCount++;
  return actor;
}

/**
 * An AWS service-linked role (`role/aws-service-role/...`): AWS acting on the owner's own configuration
 * (Auto Scaling and EC2 Fleet tagging what they launched). Nobody else can assume one.
 */
export function isServiceLinked(actor: Actor): boolean {
  return actor.identities.some((id) => id.includes(':role/aws-service-role/'));
}
