// An organisation: accounts listed in pristine.yaml and discovered through AWS Organizations, two
// regions, one account whose role cannot be assumed. moto's STS AssumeRole returns credentials that
// act in the other account, so each account sees only its own instances.
import {
  CreateAccountCommand,
  CreateOrganizationCommand,
  CreateOrganizationalUnitCommand,
  ListRootsCommand,
  MoveAccountCommand,
  OrganizationsClient,
} from '@aws-sdk/client-organizations';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRACKED_EVENT_NAMES } from '../../src/core/event-catalog.js';
import { SWEEP_PAGES } from '../../src/evidence/sources/lookup-events/index.js';
import { allDeclaredActions } from '../../src/permissions.js';
import { ACCOUNT, CREDENTIALS, MALLORY, REGION, Scenario, after, type Launched, type Place } from '../support/scenario.js';

const EU = 'eu-west-1';
const LISTED = '444455556666';
const LOCKED = '777788889999';

const POLICY = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {}, package-drift: {} }
    respond: { mode: observe }
`;

describe('pristine audit of an organisation', () => {
  let s: Scenario;
  let member: string;
  const fleet = new Map<string, Launched>();
  const key = (p: Place) => `${p.account ?? ACCOUNT}/${p.region ?? REGION}`;

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    const org = new OrganizationsClient({ region: 'us-east-1', endpoint: s.moto.url, credentials: CREDENTIALS });
    await org.send(new CreateOrganizationCommand({ FeatureSet: 'ALL' }));
    member = (await org.send(new CreateAccountCommand({ Email: 'member@example.com', AccountName: 'member' }))).CreateAccountStatus!.AccountId!;
    // The member sits in a nested OU: pristine walks down from the root it is told to include.
    const root = (await org.send(new ListRootsCommand({}))).Roots![0]!.Id!;
    const ou = (await org.send(new CreateOrganizationalUnitCommand({ ParentId: root, Name: 'workloads' }))).OrganizationalUnit!.Id!;
    await org.send(new MoveAccountCommand({ AccountId: member, SourceParentId: root, DestinationParentId: ou }));
    org.destroy();
    await s.writeConfig(`
accounts:
  - id: "${LISTED}"
    name: listed
    role: arn:aws:iam::${LISTED}:role/PristineAudit
  - id: "${LOCKED}"
    name: locked
    role: arn:aws:iam::${LOCKED}:role/PristineAudit
organization:
  role: PristineAudit
  include: { ous: ["${root}"] }
regions: [${REGION}, ${EU}]
`);
    for (const place of [{}, { account: member }, { account: member, region: EU }, { account: LISTED, region: EU }, { account: LOCKED }] as Place[]) {
      const image = await s.image(`web-${key(place).replace('/', '-')}`, place);
      fleet.set(key(place), await s.launchOne(image, { role: 'web' }, place));
    }
    s.fake.fail('AssumeRole', { code: 'AccessDenied', status: 403, message: `not authorized to assume arn:aws:iam::${LOCKED}:role/PristineAudit`, bodyContains: `${LOCKED}:role` });
    await after(Math.max(...[...fleet.values()].map((l) => l.launchTime)) + 1500);
  });
  afterAll(() => s?.stop());

  it('judges every account it can read, in both regions, and exits 3 for the account whose role it cannot assume', async () => {
    const { code, report } = await s.audit();
    const byId = new Map(report.instances.map((i) => [i.instanceId, i as typeof i & { accountId: string; region: string }]));
    expect(code).toBe(3);
    for (const place of [{}, { account: member }, { account: member, region: EU }, { account: LISTED, region: EU }] as Place[]) {
      const i = byId.get(fleet.get(key(place))!.instanceId);
      expect(i).toMatchObject({ verdict: 'pristine', accountId: place.account ?? ACCOUNT, region: place.region ?? REGION });
    }
    // Each account sees only its own instances.
    expect(report.instances).toHaveLength(4);
    expect(byId.has(fleet.get(key({ account: LOCKED }))!.instanceId)).toBe(false);
    const scopes = (report as unknown as { scopes: Array<{ accountId: string; region: string; complete: boolean }> }).scopes;
    expect(scopes.map((x) => `${x.accountId}/${x.region}:${x.complete}`).sort()).toEqual(
      [ACCOUNT, member, LISTED, LOCKED].flatMap((a) => [REGION, EU].map((r) => `${a}/${r}:${a !== LOCKED}`)).sort(),
    );
    expect(report.errors).toEqual(
      expect.arrayContaining([expect.objectContaining({ source: 'ec2:DescribeInstances', accountId: LOCKED, message: expect.stringMatching(/not authorized to assume/) })]),
    );
    expect(report.summary).toMatchObject({ pristine: 4, tainted: 0 });
  });

  it('taints in a member account from that account\'s CloudTrail, and reads each account with its own role', async () => {
    const target = fleet.get(key({ account: member, region: EU }))!;
    s.trail('ssm-start-session', target.instanceId, target.launchTime + 1000, MALLORY, { account: member, region: EU });
    s.fake.calls.length = 0;
    const { code, report } = await s.audit();
    expect(code).toBe(1);
    expect(report.instances.find((i) => i.instanceId === target.instanceId)?.verdict).toBe('tainted');
    expect(report.summary).toMatchObject({ pristine: 3, tainted: 1 });
    // Assumed once per account, not per client or region; the member role directly from pristine's identity.
    const assumed = s.fake.callsTo('AssumeRole').filter((c) => c.outcome === 'ok');
    expect(assumed.map((c) => c.account)).toEqual([ACCOUNT, ACCOUNT]);
    expect(s.fake.callsTo('DescribeInstances').map((c) => `${c.account}/${c.region}`).sort()).toEqual(
      [ACCOUNT, member, LISTED].flatMap((a) => [`${a}/${REGION}`, `${a}/${EU}`]).sort(),
    );
    expect(s.fake.callsTo('LookupEvents').every((c) => c.account !== LOCKED)).toBe(true);
    const declared = allDeclaredActions();
    expect([...new Set(s.fake.calls.map((c) => `${c.service}:${c.operation}`))].filter((a) => !declared.has(a))).toEqual([]);
  });

  it("keeps an account's open findings in pristine status while its role cannot be assumed", async () => {
    const target = fleet.get(key({ account: member, region: EU }))!;
    s.trail('ssm-start-session', target.instanceId, target.launchTime + 1200, MALLORY, { account: member, region: EU });
    const open = async () => {
      const r = await s.run(['status', '--format', 'json', '--state', s.statePath]);
      return (JSON.parse(r.stdout) as { openFindings: Array<{ instanceId: string }> }).openFindings.map((f) => f.instanceId);
    };
    expect((await s.cycle([], {})).code).toBe(1);
    expect(await open()).toEqual([target.instanceId]);
    // The member's role now refused: its scopes were not read, so they say nothing of what they held.
    s.fake.fail('AssumeRole', { code: 'AccessDenied', status: 403, message: `not authorized to assume arn:aws:iam::${member}:role/PristineAudit`, bodyContains: `${member}:role` });
    try {
      expect((await s.cycle([], {})).code).toBe(3);
      expect(await open()).toEqual([target.instanceId]);
    } finally {
      s.fake.fail('AssumeRole', { code: 'AccessDenied', status: 403, message: `not authorized to assume arn:aws:iam::${LOCKED}:role/PristineAudit`, bodyContains: `${LOCKED}:role` });
    }
  });
});

describe('pristine audit of a few hundred instances in two accounts and two regions', () => {
  let s: Scenario;
  const PER_SCOPE = 75;
  const places: Place[] = [{}, { region: EU }, { account: LISTED }, { account: LISTED, region: EU }];

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    await s.writeConfig(`
accounts:
  - id: "${ACCOUNT}"
  - id: "${LISTED}"
    role: arn:aws:iam::${LISTED}:role/PristineAudit
regions: [${REGION}, ${EU}]
`);
    let newest = 0;
    for (const place of places) {
      const image = await s.image(`web-${place.account ?? ACCOUNT}-${place.region ?? REGION}`, place);
      const launched = await s.launch(image, { role: 'web' }, { ...place, count: PER_SCOPE });
      newest = Math.max(newest, ...launched.map((l) => l.launchTime));
      // A busy scope: more writes than the first pages of all writes hold (none of them tracked).
      for (let n = 0; n <= SWEEP_PAGES * 50; n++) s.trail('ec2-run-instances-noise', launched[n % PER_SCOPE]!.instanceId, launched[0]!.launchTime + 1000 + n, undefined, place);
    }
    await after(newest + 1500);
  });
  afterAll(() => s?.stop());

  it('makes the same fleet-wide calls in every scope, whatever the number of instances', async () => {
    const { report } = await s.audit(['--concurrency', '4']);
    expect(report.summary).toMatchObject({ pristine: 4 * PER_SCOPE, unknown: 0 });
    // Calls that succeeded: a rare throttle under load (a retried call) is the SDK's business, not a call of its own.
    const per = (op: string) => {
      const counts: Record<string, number> = {};
      for (const c of s.fake.callsTo(op).filter((x) => x.outcome === 'ok')) counts[`${c.account}/${c.region}`] = (counts[`${c.account}/${c.region}`] ?? 0) + 1;
      return counts;
    };
    const scopes = places.map((p) => `${p.account ?? ACCOUNT}/${p.region ?? REGION}`).sort();
    const each = (n: number) => Object.fromEntries(scopes.map((k) => [k, n]));
    expect(per('DescribeInstances')).toEqual(each(1));
    // Too many writes for a sweep: the first pages of all writes, then one query per event name.
    expect(per('LookupEvents')).toEqual(each(SWEEP_PAGES + TRACKED_EVENT_NAMES.length));
    expect(per('GetInventory')).toEqual(each(Math.ceil(PER_SCOPE / 50)));
    expect(per('DescribeSessions')).toEqual(each(2));
    expect(s.fake.callsTo('GetCallerIdentity')).toHaveLength(1);
    expect(s.fake.callsTo('AssumeRole')).toHaveLength(1);
    expect(s.fake.callsTo('LookupEvents').length).toBe(4 * (SWEEP_PAGES + TRACKED_EVENT_NAMES.length) + s.fake.throttled);
    const other = s.fake.calls.filter((c) => !['DescribeInstances', 'LookupEvents', 'GetInventory', 'DescribeSessions', 'GetCallerIdentity', 'AssumeRole'].includes(c.operation));
    expect(other).toEqual([]);
    // LookupEvents paced per account and region, the true limit: four scopes side by side, 132 calls in
    // about 16 s, and next to no throttling (unpaced, most calls would be). The fake counts arrivals;
    // on a loaded machine one can land early.
    expect(s.fake.throttled).toBeLessThanOrEqual(2);
  });
});
