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
const actors = new Map<string, Actor>();
const MAX_ACTORS = 50_000;

export function actorFrom(arn: string | null, ...more: Array<string | null | undefined>): Actor {
  const key = more.length === 0 ? (arn ?? '') : `${arn ?? ''}\0${more.map((m) => m ?? '').join('\0')}`;
  const known = actors.get(key);
  if (known) return known;
  const identities = new Set<string>();
  for (const id of [arn, ...more]) if (id) identities.add(id);
  if (arn) {
    const role = roleOfSession(arn);
    if (role) identities.add(role);
  }
  const actor: Actor = Object.freeze({ arn, identities: Object.freeze([...identities]) as string[] });
  if (actors.size >= MAX_ACTORS) actors.clear();
  actors.set(key, actor);
  return actor;
}