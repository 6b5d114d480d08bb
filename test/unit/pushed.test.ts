// A pushed event judged between cycles: it taints and is alerted once, and it never vouches.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ScopeAudit } from '../../src/audit.js';
import type { AuditInputs } from '../../src/audit.js';
import { evaluateScope } from '../../src/core/evaluate.js';
import { scopeKey } from '../../src/core/facts.js';
import { parseConfigText } from '../../src/config/load.js';
import type { Notice, Transport } from '../../src/notify/types.js';
import { judgePushed } from '../../src/pushed.js';
import { openStateStore } from '../../src/state/open.js';
import type { StateStore } from '../../src/state/ports.js';
import { FIXTURE_ACCOUNT, FIXTURE_INSTANCE, FIXTURE_NOW, cleanInventory, facts, manifest, manifests, policies, trailActivity } from '../support/facts.js';
import { freshStore, STORE_BACKENDS, type StoreBackend } from '../support/postgres.js';

const logger = pino({ level: 'silent' });
const baked = manifest();
const POLICY = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {}, package-drift: {} }
    respond: { mode: enforce, notify: { slack: { channel: "#sec" } } }
`;

class Recording implements Transport {
  readonly sent: Notice[] = [];
  async send(input: { notice: Notice }): Promise<{ ts: string | null }> {
    this.sent.push(input.notice);
    return { ts: String(this.sent.length) };
  }
}

const stores: StateStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

async function setup(backend: StoreBackend) {
  const store = await openStateStore(await freshStore(backend, ':memory:'));
  stores.push(store);
  const inputs: AuditInputs = { policies: policies(POLICY), manifests: manifests(baked), regions: ['us-east-1'], config: parseConfigText('', 'p.yaml'), configFile: null };
  // The last cycle: the instance judged pristine on complete evidence.
  const f = facts({ inventory: new Map([[FIXTURE_INSTANCE, cleanInventory(baked)]]) });
  const audit: ScopeAudit = { ...evaluateScope(f, inputs.policies, inputs.manifests, FIXTURE_NOW), window: f.window, complete: true, listed: true, facts: f };
  expect(audit.results[0]?.verdict).toBe('pristine');
  return { store, inputs, scopes: new Map([[scopeKey(f), audit]]), transport: new Recording() };
}

describe.each(STORE_BACKENDS)('judgePushed on $backend', ({ backend, missing }) => {
  if (missing) {
    it.skip(`skipped: ${missing}`, () => undefined);
    return;
  }
  it('taints the instance a pushed session names, alerts it once, and says the next cycle decides the replacement', async () => {
    const { store, inputs, scopes, transport } = await setup(backend);
    const session = { ...trailActivity('ssm-start-session'), via: ['eventbridge' as const] };
    await store.ingest([session]);

    const first = await judgePushed({ activities: [session], scopes, inputs, store, transport, logger, now: FIXTURE_NOW });
    const again = await judgePushed({ activities: [session], scopes, inputs, store, transport, logger, now: FIXTURE_NOW + 1000 });

    expect(first).toMatchObject({ tainted: [FIXTURE_INSTANCE], alerted: [FIXTURE_INSTANCE] });
    expect(again).toMatchObject({ tainted: [FIXTURE_INSTANCE], alerted: [] });
    expect(transport.sent).toHaveLength(1);
    expect(transport.sent[0]).toMatchObject({ type: 'taint', action: { kind: 'hold', reason: expect.stringMatching(/next scheduled cycle decides/) } });
    expect(await store.instance(FIXTURE_INSTANCE)).toMatchObject({ verdict: 'tainted', alertOutboxId: 1 });
    // The decision the alert promised is owed by the next cycle, which replies in the alert's channel.
    const due = await store.metaWithPrefix('decision-due:');
    expect([...due.keys()]).toEqual([`decision-due:${FIXTURE_INSTANCE}`]);
    expect(JSON.parse(due.get(`decision-due:${FIXTURE_INSTANCE}`) ?? '')).toMatchObject({ accountId: FIXTURE_ACCOUNT, region: 'us-east-1', channel: '#sec' });
  });

  it('records nothing when the pushed event does not taint: a push never vouches', async () => {
    const { store, inputs, scopes, transport } = await setup(backend);
    const inventory = { ...trailActivity('ssm-send-command-inventory-allowlisted'), via: ['eventbridge' as const] };
    await store.ingest([inventory]);
    const r = await judgePushed({ activities: [inventory], scopes, inputs, store, transport, logger, now: FIXTURE_NOW });
    expect(r).toEqual({ tainted: [], alerted: [], outbox: null });
    expect(await store.instance(FIXTURE_INSTANCE)).toBeNull();
    expect(transport.sent).toEqual([]);
  });

  it('leaves a scope the last cycle did not read to the next cycle', async () => {
    const { store, inputs, transport } = await setup(backend);
    const session = { ...trailActivity('ssm-start-session'), accountId: '999988887777' };
    await store.ingest([session]);
    const r = await judgePushed({ activities: [session], scopes: new Map(), inputs, store, transport, logger, now: FIXTURE_NOW });
    expect(r.tainted).toEqual([]);
  });
});
