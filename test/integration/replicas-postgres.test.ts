// Two `pristine daemon` replicas on one PostgreSQL, enforce mode, four (account, region) scopes with a
// tainted instance each: every taint alerted once, every tainted instance replaced once, the scopes
// split between the two; one replica SIGKILLed mid-replacement and the other finishing it within the
// lease's TTL plus a poll, and taking over its scopes without waiting for its schedule; SIGTERM letting
// go of every lease at once. The real daemon against moto, the
// AWS fake, the Slack stand-in and a throwaway PostgreSQL cluster.
import { DescribeInstancesCommand } from '@aws-sdk/client-ec2';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.js';
import { until } from '../support/until.js';
import { freshDatabase, testPostgres } from '../support/postgres.js';
import { ACCOUNT, MALLORY, REGION, Scenario, after, type Launched, type Place } from '../support/scenario.js';

const EU = 'eu-west-1';
const LISTED = '444455556666';
const DRAIN_SECONDS = 40;
const LEASE_TTL_MS = 6_000;
/** The longest pause between two polls of a wait step (the worker's default): the dead driver may have set its next turn that far out. */
const LONGEST_POLL_MS = 15_000;
/** A takeover comes within the lease's TTL, plus one poll, plus a turn and some slack for a loaded machine. */
const TAKEOVER_MS = LEASE_TTL_MS + LONGEST_POLL_MS + 10_000;
/** Never within the test: every cycle after the first is one a replica starts because the leases moved. */
const SCHEDULE_NEVER = '0 0 1 1 *';

const POLICY = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      notify: { slack: { channel: "#web" } }
      replace: { maxPerCycle: 10, maxConcurrent: 10, maxUnavailable: 50%, minAge: 0s, healthTimeout: 2m }
      breaker: { taintedShare: 100% }
`;

const PLACES: Place[] = [{}, { region: EU }, { account: LISTED }, { account: LISTED, region: EU }];
const where = (p: Place) => `${p.account ?? ACCOUNT}/${p.region ?? REGION}`;

const pgServer = testPostgres();

describe.skipIf('missing' in pgServer)(`two replicas on PostgreSQL${'missing' in pgServer ? ` (skipped: ${pgServer.missing})` : ''}`, () => {
  let s: Scenario;
  let url: string;
  let db: pg.Client;
  const tainted = new Map<string, Launched & { place: Place }>();
  let drained: Launched;
  const daemons: Daemon[] = [];

  const row = async (oldId: string) =>
    (await db.query<{ id: string; step: string; status: string; lease_owner: string | null; new_instance_id: string | null }>('SELECT id, step, status, lease_owner, new_instance_id FROM replacements WHERE old_instance_id = $1', [oldId])).rows;

  beforeAll(async () => {
    if ('missing' in pgServer) return;
    url = await freshDatabase(pgServer.url);
    db = new pg.Client({ connectionString: url });
    await db.connect();
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    await s.writeConfig(`
accounts:
  - id: "${ACCOUNT}"
    name: own
  - id: "${LISTED}"
    name: listed
    role: arn:aws:iam::${LISTED}:role/PristineAudit
regions: [${REGION}, ${EU}]
leaseTtl: ${LEASE_TTL_MS / 1000}s
`);
    const launched: Launched[] = [];
    for (const place of PLACES) {
      const image = await s.image(`web-${where(place).replace('/', '-')}`, place);
      const [one, two] = await s.launch(image, { role: 'web' }, { count: 2, ...place });
      tainted.set(where(place), { ...one!, place });
      launched.push(one!, two!);
      if (!place.account && !place.region) {
        // This one's replacement drains its target group for a while: the replica driving it is killed then.
        await s.targetGroup('web', [one!.instanceId, two!.instanceId], 80, { deregistrationDelaySeconds: DRAIN_SECONDS });
        drained = one!;
      }
      s.trail('ssm-start-session', one!.instanceId, one!.launchTime + 1000, MALLORY, place);
    }
    await after(Math.max(...launched.map((l) => l.launchTime)) + 1500);
    const args = ['--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', url, '--schedule', SCHEDULE_NEVER, '--listen', '127.0.0.1:0'];
    for (let n = 0; n < 2; n++) daemons.push(new Daemon(args, s.env(s.slackEnv()), s.dir));
  });

  afterAll(async () => {
    for (const d of daemons) await d.kill();
    await db?.end();
    await s?.stop();
  });

  it('splits the four scopes between the two: each audited by the one replica holding its lease', async () => {
    await until('both replicas audited', () => daemons.every((d) => d.withMsg('cycle finished').some((l) => (l['scopes'] as string[]).length > 0)), 60_000);
    const audited = daemons.map((d) => new Set(d.withMsg('cycle finished').flatMap((l) => l['scopes'] as string[])));
    expect(new Set([...audited[0]!, ...audited[1]!])).toEqual(new Set(PLACES.map(where)));
    expect(audited.every((a) => a.size > 0)).toBe(true);
  });

  it('finishes a replacement whose replica was SIGKILLed mid-drain on the other, within the lease TTL and a poll', async () => {
    await until('the drained replacement waits on the drain', async () => (await row(drained.instanceId))[0]?.step === 'wait-drained', 90_000);
    const before = (await row(drained.instanceId))[0]!;
    // Killed well inside the drain: its driver cannot have finished it first.
    const drainBegan = (await db.query<{ at: string }>(`SELECT at FROM journal WHERE replacement_id = $1 AND step = 'wait-drained' AND phase = 'begin' ORDER BY id LIMIT 1`, [before.id])).rows[0]!;
    expect(Date.now() - Number(drainBegan.at), 'time already drained when killed').toBeLessThan((DRAIN_SECONDS - 10) * 1000);
    const owner = before.lease_owner!;
    const victim = daemons.find((d) => owner.split(':')[1] === String(d.pid));
    expect(victim, `the driver ${owner} is one of the two`).toBeDefined();
    const survivor = daemons.find((d) => d !== victim)!;
    await victim!.kill();
    const killedAt = Date.now();

    // The survivor says so when it takes the lease over (it may finish and let go of it at once, if the
    // drain was nearly over: the log line, not the lease's owner at some instant, is the evidence).
    const id0 = Number((await row(drained.instanceId))[0]!.id);
    const takenOver = () => survivor.withMsg('replacement taken over').find((l) => l['replacement'] === id0);
    await until('the survivor takes the replacement over', () => takenOver() !== undefined, TAKEOVER_MS);
    expect(Date.parse(String(takenOver()!.time)) - killedAt).toBeLessThan(TAKEOVER_MS);
    expect(takenOver()).toMatchObject({ from: owner });
    await until('the replacement is done', async () => (await row(drained.instanceId))[0]?.status === 'done', DRAIN_SECONDS * 1000 + 60_000);

    // Exactly one fresh instance; the old one terminated only after the fresh one was healthy.
    const id = (await row(drained.instanceId))[0]!.id;
    const journal = (await db.query<{ step: string; phase: string }>('SELECT step, phase FROM journal WHERE replacement_id = $1 ORDER BY id', [id])).rows.map((j) => `${j.step}:${j.phase}`);
    expect(journal.indexOf('wait-healthy:end')).toBeGreaterThanOrEqual(0);
    expect(journal.indexOf('terminate-old:begin')).toBeGreaterThan(journal.indexOf('wait-healthy:end'));
    expect(await s.state(drained.instanceId)).toMatch(/shutting-down|terminated/);
    const fresh = await s.instances([{ Name: 'tag:pristine:replaces', Values: [drained.instanceId] }]);
    expect(fresh.map((i) => i.InstanceId)).toHaveLength(1);
  });

  it('replaces every tainted instance exactly once, in every scope', async () => {
    for (const t of tainted.values()) {
      await until(`the replacement of ${t.instanceId} is done`, async () => (await row(t.instanceId))[0]?.status === 'done', 120_000);
      const { ec2 } = await s.clientsIn(t.place);
      const fresh = (await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:pristine:replaces', Values: [t.instanceId] }] }))).Reservations?.flatMap((r) => r.Instances ?? []) ?? [];
      expect(fresh, `fresh instances for ${t.instanceId} in ${where(t.place)}`).toHaveLength(1);
      expect(await row(t.instanceId)).toHaveLength(1);
    }
    // Nothing failed on the way (a step that failed past the point of no return would wait a minute for a
    // retry), and no replica logged an error: PostgreSQL took every write.
    expect(daemons.flatMap((d) => d.withMsg('replacement step failed')).map((l) => `${String(l['step'])}: ${String(l['err'])}`)).toEqual([]);
    expect(daemons.flatMap((d) => d.lines.filter((l) => Number(l.level) >= 50)).map((l) => `${String(l.msg)}: ${JSON.stringify(l['err'])}`)).toEqual([]);
    // Each taint alerted once, whichever replica saw it first.
    for (const t of tainted.values()) {
      const alerts = s.slack.messages.filter((m) => m.thread_ts === null && (m.text ?? '').includes(t.instanceId));
      expect(alerts, `alerts of ${t.instanceId}`).toHaveLength(1);
    }
  });

  it('shows the store, its leases and its takeovers on /healthz and /metrics', async () => {
    const survivor = daemons.find((d) => d.exit === null)!;
    const base = await survivor.url();
    await until('the survivor audits all four scopes', async () => {
      const h = (await (await fetch(`${base}/healthz`)).json()) as { leases: string[] };
      return h.leases.filter((l) => l.startsWith('audit:')).length === 4;
    }, 60_000);
    const health = (await (await fetch(`${base}/healthz`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', store: { kind: 'postgres' }, replica: expect.stringContaining(`:${survivor.pid}:`) });
    expect((health['leases'] as string[]).sort()).toEqual(expect.arrayContaining(PLACES.map((p) => `audit:${where(p)}`)));
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/pristine_leases_held\{kind="audit"\} 4/);
    expect(metrics).toMatch(/pristine_lease_takeovers_total\{kind="replacement"\} [1-9]/);
    expect(metrics).toMatch(/pristine_lease_takeovers_total\{kind="audit"\} [1-9]/);

    // pristine status says which replica audits which scope, and never prints the URL as given.
    const status = await s.run(['status'], { PRISTINE_STATE_URL: url.replace('pristine@', 'pristine:hunter2@') });
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('(postgres)');
    expect(status.stdout).not.toContain('hunter2');
    expect(status.stdout).toContain(`Replicas (1): ${health['replica'] as string}`);
    for (const p of PLACES) expect(status.stdout).toContain(`${where(p)} audited by ${health['replica'] as string}`);
  });

  it('lets go of every lease at once on SIGTERM', async () => {
    const survivor = daemons.find((d) => d.exit === null)!;
    const owned = async () => (await db.query('SELECT name FROM leases WHERE owner LIKE $1', [`%:${survivor.pid}:%`])).rows.length;
    await until('the survivor holds leases', async () => (await owned()) > 0, 30_000);
    expect((await survivor.stop(30_000)).code).toBe(0);
    expect(await owned()).toBe(0);
    expect((await db.query('SELECT count(*)::int AS n FROM replacements WHERE lease_owner LIKE $1', [`%:${survivor.pid}:%`])).rows[0]).toEqual({ n: 0 });
  });

  it('pristine status reads the shared state from PRISTINE_STATE_URL', async () => {
    const r = await s.run(['status', '--format', 'json'], { PRISTINE_STATE_URL: url });
    expect(r.code).toBe(0);
    const status = JSON.parse(r.stdout) as { inFlight: unknown[]; recentReplacements: Array<{ oldInstanceId: string; status: string }> };
    expect(status.inFlight).toEqual([]);
    expect(status.recentReplacements.filter((x) => x.status === 'done').map((x) => x.oldInstanceId).sort()).toEqual([...tainted.values()].map((t) => t.instanceId).sort());
  });
});
