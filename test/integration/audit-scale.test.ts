// A fleet of a few hundred instances: pristine's API calls grow with pages of results, not with instances.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRACKED_EVENT_NAMES } from '../../src/core/event-catalog.js';
import { SWEEP_PAGES } from '../../src/evidence/sources/lookup-events/index.js';
import { Scenario, after, type Launched } from '../support/scenario.js';

const FLEET = 300;
const SESSIONS = 120;

describe('pristine audit on 300 instances', () => {
  let s: Scenario;
  const fleet: Launched[] = [];
  let result: Awaited<ReturnType<Scenario['audit']>>;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(`
policies:
  - name: fleet
    scope: { tags: { team: core } }
    detect: { interactive-session: {}, remote-command: {}, instance-modified: {}, package-drift: {}, guard-tampered: {} }
    respond:
      mode: observe
      notify: { slack: { channel: "#fleet" } }
`);
    const image = await s.image('base');
    for (let batch = 0; batch < 3; batch++) fleet.push(...(await s.launch(image, { team: 'core' }, { count: FLEET / 3 })));
    fleet.slice(0, SESSIONS).forEach((l, n) => s.trail('ssm-start-session', l.instanceId, l.launchTime + 1000 + n));
    await after(Math.max(...fleet.map((l) => l.launchTime)) + 1200);
    result = await s.audit();
  });
  afterAll(() => s?.stop());

  it('judges every instance', () => {
    expect(result.report.summary).toMatchObject({ tainted: SESSIONS, pristine: FLEET - SESSIONS, unknown: 0 });
    expect(result.code).toBe(1);
  });

  it('makes a fixed number of calls: one instance page, one lookup per event name and page, 50 instances of inventory a call', () => {
    const count = (op: string) => s.fake.calls.filter((c) => c.operation === op).length;
    expect(count('DescribeInstances')).toBe(1);
    // 120 write events are more than the first pages of all writes hold: then one query per name.
    // StartSession holds the 120 records: three pages of 50; every other name one page.
    expect(SWEEP_PAGES * 50).toBeLessThan(SESSIONS);
    const lookups = s.fake.calls.filter((c) => c.operation === 'LookupEvents');
    const attribute = (body: string) => (JSON.parse(body) as { LookupAttributes: unknown[] }).LookupAttributes;
    expect(lookups.slice(0, SWEEP_PAGES).map((c) => attribute(c.body))).toEqual(Array.from({ length: SWEEP_PAGES }, () => [{ AttributeKey: 'ReadOnly', AttributeValue: 'false' }]));
    expect(new Set(lookups.slice(SWEEP_PAGES).map((c) => JSON.stringify(attribute(c.body))))).toEqual(new Set(TRACKED_EVENT_NAMES.map((name) => JSON.stringify([{ AttributeKey: 'EventName', AttributeValue: name }]))));
    expect(count('LookupEvents')).toBe(SWEEP_PAGES + TRACKED_EVENT_NAMES.length + 2);
    expect(count('GetInventory')).toBe(FLEET / 50);
    expect(count('DescribeSessions')).toBe(2);
    expect(count('ListInventoryEntries')).toBe(0);
    expect(count('ListCommandInvocations')).toBe(0);
    // pristine's own account, once: it is what every verdict is keyed by.
    expect(count('GetCallerIdentity')).toBe(1);
    expect(s.fake.calls).toHaveLength(1 + 1 + SWEEP_PAGES + TRACKED_EVENT_NAMES.length + 2 + FLEET / 50 + 2);
  });

  it('never exceeds 2 LookupEvents a second', () => {
    expect(s.fake.throttled).toBe(0);
    const times = s.fake.calls.filter((c) => c.operation === 'LookupEvents').map((c) => c.at);
    for (let i = 2; i < times.length; i++) expect(times[i]! - times[i - 2]!).toBeGreaterThanOrEqual(1000);
  });

  it('alerts a fleet-wide taint as one digest, not a message per instance, and not again on the next cycle', async () => {
    const first = await s.cycle();
    expect(first.report.summary.tainted).toBe(SESSIONS);
    const messages = s.slack.topLevel('#fleet');
    expect(messages).toHaveLength(1);
    expect(messages[0]?.text).toMatch(new RegExp(`${SESSIONS}`));
    await s.cycle();
    expect(s.slack.messages).toHaveLength(1);
  });
});
