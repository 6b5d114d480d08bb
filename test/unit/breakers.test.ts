// A policy's breaker is one loud message when it trips, not one every cycle it stays tripped, whichever
// replica audits which scopes.
import { afterEach, describe, expect, it } from 'vitest';
import { enqueueBreakers } from '../../src/cycle.js';
import { openStateStore } from '../../src/state/open.js';
import type { StateStore } from '../../src/state/ports.js';
import { policies } from '../support/facts.js';

const POLICIES = new Map(
  policies(`
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {} }
    respond: { mode: enforce, breaker: { taintedShare: 50% }, notify: { slack: { channel: "#web" } } }
`).map((p) => [p.name, p]),
);
const TRIPPED = [{ policy: 'web', tainted: 2, inScope: 2, limitPercent: 50 }];
const EAST = { accountId: '111122223333', region: 'us-east-1', complete: true };
const WEST = { accountId: '111122223333', region: 'eu-west-1', complete: true };

const stores: StateStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});
async function fresh(): Promise<StateStore> {
  const store = await openStateStore(':memory:');
  stores.push(store);
  return store;
}
const said = async (store: StateStore) => (await store.pending()).filter((m) => m.notice?.type === 'breaker').length;

describe('the breaker message', () => {
  it('is said once while it stays tripped, though a replica auditing other scopes finds nothing', async () => {
    const store = await fresh();
    let t = 1_000;
    // Replica A audits us-east-1, where it trips; replica B audits eu-west-1, where all is well.
    for (let cycle = 0; cycle < 3; cycle++) {
      await enqueueBreakers(store, POLICIES, TRIPPED, [EAST], (t += 1000));
      await enqueueBreakers(store, POLICIES, [], [WEST], (t += 1000));
    }
    expect(await said(store)).toBe(1);
    // A cycle that could not read all of us-east-1 does not say it stopped: no news when it trips again.
    await enqueueBreakers(store, POLICIES, [], [{ ...EAST, complete: false }], (t += 1000));
    await enqueueBreakers(store, POLICIES, TRIPPED, [EAST], (t += 1000));
    expect(await said(store)).toBe(1);
    // It stops tripping where it tripped, then trips again: news again.
    await enqueueBreakers(store, POLICIES, [], [EAST], (t += 1000));
    await enqueueBreakers(store, POLICIES, TRIPPED, [EAST], t + 1000);
    expect(await said(store)).toBe(2);
  });

  it('already said by an older pristine (one mark per policy) is not said again', async () => {
    const store = await fresh();
    await store.setMeta('breaker:web', '500');
    await enqueueBreakers(store, POLICIES, TRIPPED, [EAST], 1_000);
    await enqueueBreakers(store, POLICIES, TRIPPED, [EAST], 2_000);
    expect(await said(store)).toBe(0);
  });
});
