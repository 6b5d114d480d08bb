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

export function actorFrom(arn: string | null, ...more: Array<string | null | undefined>): Actor {
  const identities = new Set<string>();
  for (const id of [arn, ...more]) if (id) identities.add(id);
  if (arn) {
    const role = roleOfSession(arn);
    if (role) identities.add(role);
  }
  return { arn, identities: [...identities] };
}
