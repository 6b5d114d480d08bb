import { createHash } from 'node:crypto';
import { scopeKey, type Scope } from '../core/facts.js';
import { deadLocalDriver } from '../respond/worker.js';
import type { Fence, LeaseState, StateStore } from '../state/ports.js';
import { scopeLease } from '../state/records.js';

/** The lease a live replica holds on itself: how many replicas share the work. */
export const REPLICA_LEASE_PREFIX = 'replica:';
export const AUDIT_LEASE_PREFIX = 'audit:';

/**
 * Which scopes a replica keeps, lets go and tries to take this cycle. Each replica takes at most its
 * fair share (the scopes over the live replicas, rounded up), keeps the ones it holds (its memory of
 * them carries over), lets go of any beyond its share (a replica joined), and tries the free or
 * expired ones in an order of its own (so that replicas starting together do not contend for the same
 * scope first). Pure.
 */
export function planScopeClaims(input: { scopes: readonly Scope[]; leases: readonly LeaseState[]; me: string; replicas: number }): {
  share: number;
  keep: Scope[];
  release: Scope[];
  candidates: Scope[];
} {
  const share = Math.ceil(input.scopes.length / Math.max(1, input.replicas));
  const byName = new Map(input.leases.map((l) => [l.name, l]));
  const state = (s: Scope) => byName.get(scopeLease(s));
  const mine = input.scopes.filter((s) => state(s)?.live && state(s)?.owner === input.me);
  const free = input.scopes.filter((s) => !state(s)?.live);
  const order = (s: Scope) => createHash('sha256').update(`${input.me}\0${scopeKey(s)}`).digest('hex');
  return {
    share,
    keep: mine.slice(0, share),
    release: mine.slice(share),
    candidates: free.map((s) => ({ s, k: order(s) })).sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0)).map((x) => x.s),
  };
}

/**
 * A replica's leases on the (account, region) scopes it audits, and on itself. Expiry is the store's
 * clock's; `heartbeat` (every third of the TTL) keeps them while the replica lives; a replica killed
 * loses them within the TTL, and another takes its scopes at the cycle its heartbeat starts when it
 * sees them free (`shouldRebalance`).
 */
export class ScopeLeases {
  private readonly fences = new Map<string, Fence>();
  /** the scopes of the deployment, as the last cycle found them */
  private scopes: readonly Scope[] = [];

  constructor(
    private readonly store: StateStore,
    readonly owner: string,
    private readonly ttlMs: number,
    private readonly hooks: { onTakeover?: (scope: Scope, from: string) => void } = {},
    private readonly isDead: (owner: string) => boolean = deadLocalDriver,
  ) {}

  /** Says this replica is alive (and so counts in every replica's share). */
  async heartbeat(): Promise<string[]> {
    await this.store.leases.claim(`${REPLICA_LEASE_PREFIX}${this.owner}`, this.owner, this.ttlMs);
    return this.store.leases.renew(this.owner, this.ttlMs);
  }

  /** The scopes this replica audits this cycle, in the order given: claimed (or kept) under a lease. */
  async claim(scopes: readonly Scope[]): Promise<Scope[]> {
    await this.heartbeat();
    this.scopes = scopes;
    const { plan, leases } = await this.plan(scopes);
    for (const s of plan.release) {
      await this.store.leases.release(scopeLease(s), this.owner);
      this.fences.delete(scopeKey(s));
    }
    const held = new Set<string>();
    for (const s of plan.keep) {
      const fence = await this.store.leases.claim(scopeLease(s), this.owner, this.ttlMs);
      if (fence) {
        this.fences.set(scopeKey(s), fence);
        held.add(scopeKey(s));
      }
    }
    const before = new Map(leases.map((l) => [l.name, l]));
    for (const s of plan.candidates) {
      if (held.size >= plan.share) break;
      const previous = before.get(scopeLease(s));
      const fence = await this.store.leases.claim(scopeLease(s), this.owner, this.ttlMs, previous?.owner && this.isDead(previous.owner) ? previous.owner : null);
      if (!fence) continue;
      this.fences.set(scopeKey(s), fence);
      held.add(scopeKey(s));
      if (previous?.owner && previous.owner !== this.owner) this.hooks.onTakeover?.(s, previous.owner);
    }
    return scopes.filter((s) => held.has(scopeKey(s)));
  }

  /** What this replica would keep, let go and try now, from the leases as they stand. */
  private async plan(scopes: readonly Scope[]): Promise<{ plan: ReturnType<typeof planScopeClaims>; leases: LeaseState[] }> {
    // A process of this host that died (a crash, then a restart) holds nothing: its leases are free now.
    const dead = (l: LeaseState) => l.owner !== null && l.owner !== this.owner && this.isDead(l.owner);
    const replicas = (await this.store.leases.list(REPLICA_LEASE_PREFIX)).filter((l) => l.live && !dead(l)).length;
    const leases = (await this.store.leases.list(AUDIT_LEASE_PREFIX)).map((l) => (dead(l) ? { ...l, live: false } : l));
    return { plan: planScopeClaims({ scopes, leases, me: this.owner, replicas }), leases };
  }

  /**
   * Whether the leases moved since the last cycle so that this replica has scopes to take (a replica
   * died and its leases expired, or one let go) or to let go (a replica joined): then a cycle should
   * run now rather than at the next tick of the schedule.
   */
  async shouldRebalance(): Promise<boolean> {
    if (this.scopes.length === 0) return false;
    const { plan } = await this.plan(this.scopes);
    return plan.release.length > 0 || (plan.keep.length < plan.share && plan.candidates.length > 0);
  }

  /** Whether this replica still holds the scope (its lease did not pass to another meanwhile). */
  async holds(scope: Scope): Promise<boolean> {
    const fence = this.fences.get(scopeKey(scope));
    if (!fence) return false;
    try {
      await this.store.leases.check(scopeLease(scope), fence);
      return true;
    } catch {
      this.fences.delete(scopeKey(scope));
      return false;
    }
  }

  /** A clean stop: every lease of this replica goes at once, and the others take its scopes. */
  async releaseAll(): Promise<number> {
    this.fences.clear();
    return this.store.leases.releaseAll(this.owner);
  }
}
