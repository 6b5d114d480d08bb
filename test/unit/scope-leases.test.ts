import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { scopeKey, type Scope } from '../../src/core/facts.js';
import { planScopeClaims, ScopeLeases } from '../../src/daemon/scope-leases.js';
import type { LeaseState, StateStore } from '../../src/state/ports.js';
import { scopeLease } from '../../src/state/records.js';
import { openStateStore } from '../../src/state/open.js';
import { freshStore, STORE_BACKENDS } from '../support/postgres.js';

const SCOPES: Scope[] = [
  { accountId: '111111111111', region: 'us-east-1' },
  { accountId: '111111111111', region: 'eu-west-1' },
  { accountId: '222222222222', region: 'us-east-1' },
  { accountId: '222222222222', region: 'eu-west-1' },
];
const keys = (scopes: readonly Scope[]) => scopes.map(scopeKey).sort();
const lease = (s: Scope, owner: string | null, live: boolean): LeaseState => ({ name: scopeLease(s), owner, token: 1, live });

describe('planScopeClaims', () => {
  it('takes the free scopes up to a fair share of the live replicas', () => {
    const plan = planScopeClaims({ scopes: SCOPES, leases: [], me: 'a', replicas: 2 });
    expect(plan.share).toBe(2);
    expect(plan.keep).toEqual([]);
    expect(keys(plan.candidates)).toEqual(keys(SCOPES));
  });

  it('keeps what it holds, and lets go of what is beyond its share when a replica joined', () => {
    const leases = SCOPES.map((s) => lease(s, 'a', true));
    const plan = planScopeClaims({ scopes: SCOPES, leases, me: 'a', replicas: 2 });
    expect(plan.keep).toEqual(SCOPES.slice(0, 2));
    expect(plan.release).toEqual(SCOPES.slice(2));
    expect(plan.candidates).toEqual([]);
  });

  it('never tries a scope another replica holds live, and tries one whose lease expired', () => {
    const leases = [lease(SCOPES[0]!, 'b', true), lease(SCOPES[1]!, 'b', false)];
    const plan = planScopeClaims({ scopes: SCOPES, leases, me: 'a', replicas: 1 });
    expect(plan.share).toBe(4);
    expect(keys(plan.candidates)).toEqual(keys(SCOPES.slice(1)));
  });

  it('orders the candidates differently for different replicas, so that two starting together spread out', () => {
    const many = Array.from({ length: 16 }, (_, n) => ({ accountId: String(100000000000 + n), region: 'us-east-1' }));
    const a = planScopeClaims({ scopes: many, leases: [], me: 'host-a:1:x', replicas: 2 }).candidates;
    const b = planScopeClaims({ scopes: many, leases: [], me: 'host-b:2:y', replicas: 2 }).candidates;
    expect(a.map(scopeKey)).not.toEqual(b.map(scopeKey));
    expect(keys(a)).toEqual(keys(b));
  });
});

describe.each(STORE_BACKENDS)('ScopeLeases on $backend', ({ backend, missing }) => {
  if (missing) {
    it.skip(`skipped: ${missing}`, () => undefined);
    return;
  }
  const dirs: string[] = [];
  const stores: StateStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  /** two connections to one store (a SQLite file, or a PostgreSQL database): two replicas */
  async function twoReplicas(): Promise<[StateStore, StateStore]> {
    const dir = await mkdtemp(path.join(tmpdir(), 'pristine-leases-'));
    dirs.push(dir);
    const where = await freshStore(backend, path.join(dir, 'state.db'));
    const a = await openStateStore(where);
    const b = await openStateStore(where);
    stores.push(a, b);
    return [a, b];
  }

  it('splits the scopes between two live replicas, each audited by one', async () => {
    const [sa, sb] = await twoReplicas();
    const a = new ScopeLeases(sa, 'host:1:a', 60_000);
    const b = new ScopeLeases(sb, 'host:2:b', 60_000);
    await Promise.all([a.heartbeat(), b.heartbeat()]);

    const [mine, theirs] = await Promise.all([a.claim(SCOPES), b.claim(SCOPES)]);

    expect(mine).toHaveLength(2);
    expect(theirs).toHaveLength(2);
    expect(keys([...mine, ...theirs])).toEqual(keys(SCOPES));
    for (const s of mine) expect(await a.holds(s)).toBe(true);
    for (const s of mine) expect(await b.holds(s)).toBe(false);
  });

  it('one replica alone takes every scope; a second joining gets its share at the next cycles', async () => {
    const [sa, sb] = await twoReplicas();
    const a = new ScopeLeases(sa, 'host:1:a', 60_000);
    const b = new ScopeLeases(sb, 'host:2:b', 60_000);
    expect(await a.claim(SCOPES)).toHaveLength(4);

    expect(await b.claim(SCOPES)).toEqual([]); // a holds them all, live
    expect(await a.claim(SCOPES)).toHaveLength(2); // a counts two replicas now, and lets two go
    expect(await b.claim(SCOPES)).toHaveLength(2);
  });

  it('takes the scopes of a replica that stopped cleanly at once, and of one that died after its lease expired', async () => {
    const [sa, sb] = await twoReplicas();
    const taken: string[] = [];
    const a = new ScopeLeases(sa, 'host:1:a', 60_000);
    const b = new ScopeLeases(sb, 'host:2:b', 300, { onTakeover: (s, from) => taken.push(`${scopeKey(s)} from ${from}`) });
    await Promise.all([a.heartbeat(), b.heartbeat()]);
    await Promise.all([a.claim(SCOPES), b.claim(SCOPES)]);

    // b dies: no heartbeat; its leases expire.
    await sleep(400);
    expect(await a.claim(SCOPES)).toHaveLength(4);
    expect((await sa.leases.list('audit:')).every((l) => l.owner === 'host:1:a' && l.live)).toBe(true);

    // a stops cleanly: everything goes at once.
    expect(await a.releaseAll()).toBeGreaterThanOrEqual(5);
    const c = new ScopeLeases(sb, 'host:3:c', 60_000, { onTakeover: (s, from) => taken.push(`${scopeKey(s)} from ${from}`) });
    expect(await c.claim(SCOPES)).toHaveLength(4);
    expect(taken).toEqual([]); // let go, not taken over
  });

  it('counts a takeover when it takes a scope from a replica whose lease expired', async () => {
    const [sa, sb] = await twoReplicas();
    const taken: string[] = [];
    const a = new ScopeLeases(sa, 'host:1:a', 200);
    await a.claim(SCOPES);
    await sleep(300);
    const b = new ScopeLeases(sb, 'host:2:b', 60_000, { onTakeover: (s, from) => taken.push(from) });
    expect(await b.claim(SCOPES)).toHaveLength(4);
    expect(taken).toEqual(['host:1:a', 'host:1:a', 'host:1:a', 'host:1:a']);
    expect(await a.holds(SCOPES[0]!)).toBe(false);
  });

  it('says when to run a cycle before the next tick: a replica joined, or one died and its leases expired', async () => {
    const [sa, sb] = await twoReplicas();
    const a = new ScopeLeases(sa, 'host:1:a', 60_000);
    const b = new ScopeLeases(sb, 'host:2:b', 1500);
    expect(await a.shouldRebalance()).toBe(false); // no cycle yet: nothing known to balance
    await a.claim(SCOPES);
    expect(await a.shouldRebalance()).toBe(false); // alone, it holds its share: all

    await b.heartbeat(); // b joins: a holds more than its share now
    expect(await a.shouldRebalance()).toBe(true);
    await a.claim(SCOPES);
    expect(await b.claim(SCOPES)).toHaveLength(2);
    expect(await a.shouldRebalance()).toBe(false);
    expect(await b.shouldRebalance()).toBe(false);

    // b dies: nothing to do until its leases expire, then a takes its scopes at once.
    expect(await a.shouldRebalance()).toBe(false);
    await sleep(1700);
    expect(await a.shouldRebalance()).toBe(true);
    expect(await a.claim(SCOPES)).toHaveLength(4);
    expect(await a.shouldRebalance()).toBe(false);
  });

  it("frees at once the leases of a process of this host that died (a crash, then a restart)", async () => {
    const [sa, sb] = await twoReplicas();
    const crashed = new ScopeLeases(sa, 'host:1:dead', 60_000);
    expect(await crashed.claim(SCOPES)).toHaveLength(4);
    const restarted = new ScopeLeases(sb, 'host:2:new', 60_000, {}, (owner) => owner === 'host:1:dead');
    expect(await restarted.claim(SCOPES)).toHaveLength(4);
  });
});
