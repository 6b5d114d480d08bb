// The real `pristine daemon` against moto, the CloudTrail/SSM fake and the Slack stand-in: a cycle at
// start that replaces a tainted instance, /healthz and /metrics, JSON logs without the Slack token,
// cycles that never overlap, a clean exit on SIGTERM, state that survives a restart, and /healthz
// answering 503 while the state store cannot be written.
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.js';
import { ALICE, Scenario, after, type Launched } from '../support/scenario.js';

const CHANNEL = '#infra-alerts';
/** Every 5 s; a cycle takes over 6 s (CloudTrail holds its answer, see HOLD_MS), so ticks must be skipped. */
const EVERY_5_SECONDS = '*/5 * * * * *';
/** How long the CloudTrail fake holds each LookupEvents before answering: a slow CloudTrail. */
const HOLD_MS = 6_000;
/** Once a year: the restarted daemon runs only its start-up cycle while the test watches it. */
const YEARLY = '0 0 1 1 *';

const POLICY = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      notify: { slack: { channel: "${CHANNEL}" } }
      replace: { maxPerCycle: 1, maxUnavailable: 50%, minAge: 0s, healthTimeout: 2m }
`;

async function get(url: string): Promise<{ status: number; type: string; text: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** The value of one Prometheus sample, exactly as named with its labels; undefined when absent. */
function sample(metrics: string, series: string): number | undefined {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('pristine daemon', () => {
  let s: Scenario;
  let web: Launched[];
  let tainted: string;
  let tg: string;
  const daemons: Daemon[] = [];
  let first: Daemon;
  let firstUrl: string;
  let slackAfterFirst = 0;

  const args = (schedule: string) => [
    '--policies', s.policiesDir,
    '--manifests', s.manifestsDir,
    '--state', s.statePath,
    '--schedule', schedule,
    '--listen', '127.0.0.1:0',
  ];
  const startDaemon = (schedule: string): Daemon => {
    const d = new Daemon(args(schedule), s.env(s.slackEnv()), s.dir);
    daemons.push(d);
    return d;
  };

  beforeAll(async () => {
    s = await Scenario.start();
    await s.writePolicies(POLICY);
    const image = await s.image('web');
    web = await s.launch(image, { role: 'web', Name: 'web' }, { count: 3 });
    tg = await s.targetGroup('web', web.map((w) => w.instanceId));
    tainted = web[1]!.instanceId;
    s.trail('ssm-start-session', tainted, web[1]!.launchTime + 1000, ALICE);
    await after(Math.max(...web.map((w) => w.launchTime)) + 1500);
    s.fake.calls.length = 0;
    s.fake.delay('LookupEvents', { before: HOLD_MS });
    first = startDaemon(EVERY_5_SECONDS);
    firstUrl = await first.url();
  });

  afterAll(async () => {
    for (const d of daemons) await d.kill();
    await s?.stop();
  });

  it('logs its URL at start and answers /healthz before any cycle has finished', async () => {
    expect(firstUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const finishedBefore = first.withMsg('cycle finished').length;
    const h = await get(`${firstUrl}/healthz`);
    expect(h.type).toMatch(/^application\/json/);
    if (finishedBefore === 0 && first.withMsg('cycle finished').length === 0) {
      // The first cycle takes over 6 s (CloudTrail is slow): not stale yet, so healthy, with no lastCycleAt.
      expect(h.status).toBe(200);
      expect(JSON.parse(h.text)).toMatchObject({ status: 'ok', lastCycleAt: null });
    }
    expect((await get(`${firstUrl}/nope`)).status).toBe(404);
  });

  it('runs a cycle at start: the tainted instance is replaced and Slack gets the alert and its thread', async () => {
    const t0 = Date.now();
    const finished = await first.waitFor('cycle finished', 40_000);
    console.log(`first cycle finished ${Date.now() - t0} ms after the daemon logged its start`);
    expect(finished).toMatchObject({ summary: expect.objectContaining({ tainted: 1, pristine: 2 }), replacements: 1, complete: true });
    // The cycle started it; the worker drives it in the background.
    await first.waitFor('replacement done', 60_000);

    expect(await s.state(tainted)).toBe('terminated');
    const fresh = await s.instances([
      { Name: 'tag:pristine:replaces', Values: [tainted] },
      { Name: 'instance-state-name', Values: ['running'] },
    ]);
    expect(fresh).toHaveLength(1);
    const freshId = fresh[0]!.InstanceId!;
    const targets = await s.targets(tg);
    expect(targets[freshId]).toBe('healthy');
    expect(targets[tainted]).toBeUndefined();

    const top = s.slack.topLevel(CHANNEL);
    expect(top).toHaveLength(1);
    expect(top[0]!.text).toContain(tainted);
    expect(JSON.stringify(top[0]!.blocks)).toContain(ALICE.arn);
    // Its progress goes to the thread as it happens, not at the next cycle.
    await s.slack.waitFor((m) => m.thread_ts === top[0]!.ts && new RegExp(`Replaced: ${freshId} serves in place of`).test(m.text ?? ''), 10_000);
    const replies = s.slack.replies(top[0]!.ts).map((m) => m.text ?? '');
    expect(replies.length).toBeGreaterThanOrEqual(2);
    expect(replies[0]).toMatch(/Replacing/);
    expect(replies[replies.length - 1]).toMatch(new RegExp(`Replaced: ${freshId} serves in place of`));
    slackAfterFirst = s.slack.messages.length;
  });

  it('serves /healthz (ok, lastCycleAt) and /metrics in Prometheus text once a cycle has finished', async () => {
    const h = await get(`${firstUrl}/healthz`);
    expect(h.status).toBe(200);
    const body = JSON.parse(h.text) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 'ok' });
    expect(typeof body.lastCycleAt).toBe('string');
    expect(Date.parse(body.lastCycleAt as string)).toBeGreaterThan(Date.now() - 60_000);

    const m = await get(`${firstUrl}/metrics`);
    expect(m.status).toBe(200);
    expect(m.type).toMatch(/^text\/plain/);
    expect(m.text).toMatch(/^# HELP pristine_cycles_total /m);
    expect(m.text).toMatch(/^pristine_cycles_total\{outcome="(ok|tainted|incomplete|failed)"\} \d+$/m);
    expect(sample(m.text, 'pristine_cycles_total{outcome="tainted"}')).toBeGreaterThanOrEqual(1);
    expect(sample(m.text, 'pristine_cycles_total{outcome="failed"}')).toBe(0);
    expect(sample(m.text, 'pristine_replacements_total{outcome="done"}')).toBe(1);
    expect(sample(m.text, 'pristine_replacements_total{outcome="failed"}')).toBe(0);
    expect(sample(m.text, 'pristine_aws_calls_total{service="cloudtrail",operation="LookupEvents",outcome="ok"}')).toBeGreaterThanOrEqual(1);
    expect(sample(m.text, 'pristine_aws_calls_total{service="ec2",operation="TerminateInstances",outcome="ok"}')).toBe(1);
    expect(m.text).toMatch(/^pristine_instances\{verdict="pristine"\} \d+$/m);
    expect(sample(m.text, 'pristine_slack_messages_total{outcome="sent"}')).toBe(slackAfterFirst);
    expect(sample(m.text, 'pristine_slack_messages_total{outcome="failed"}')).toBe(0);
    expect(m.text).toMatch(/^pristine_cycle_duration_seconds_count \d+$/m);
  });

  it('keeps going on its schedule, never two cycles at once, and sends nothing new for the same taint', async () => {
    // The first cycle that began after the replacement ended sees the fresh instance in its place.
    const replaced = Date.parse(first.withMsg('replacement done')[0]!.time!);
    let second = await first.waitFor('cycle finished', 40_000, 2);
    for (let n = 3; Date.parse(second['startedAt'] as string) < replaced && n <= 6; n++) second = await first.waitFor('cycle finished', 40_000, n);
    expect(second).toMatchObject({ summary: expect.objectContaining({ tainted: 0, pristine: 3 }), replacements: 0 });
    expect(s.slack.messages.length).toBe(slackAfterFirst);
    const m = await get(`${firstUrl}/metrics`);
    expect(sample(m.text, 'pristine_instances{verdict="pristine"}')).toBe(3);
    expect(sample(m.text, 'pristine_instances{verdict="tainted"}')).toBe(0);
    expect(sample(m.text, 'pristine_cycles_total{outcome="ok"}')).toBeGreaterThanOrEqual(1);
    expect(sample(m.text, 'pristine_replacements_total{outcome="done"}')).toBe(1);
    // Ticks came every 5 s while a cycle ran: they were skipped, by the daemon or by the schedule.
    const skipped = first.lines.filter((l) => l.msg === 'a cycle is still running: this tick is skipped' || l.msg === 'previous cycle still running; skipping this tick');
    expect(skipped.length).toBeGreaterThanOrEqual(1);
  });

  it('exits 0 on SIGTERM in the middle of an audit, cutting the read short and recording nothing of it', async () => {
    // Wait for the next cycle to be inside its audit (CloudTrail being read), then stop the daemon.
    const finishedBefore = first.withMsg('cycle finished').length;
    const secondEnded = Date.parse(first.withMsg('cycle finished')[finishedBefore - 1]!.time!);
    const deadline = Date.now() + 20_000;
    while (!s.fake.callsTo('LookupEvents').some((c) => c.at > secondEnded)) {
      if (Date.now() > deadline) throw new Error(`no third cycle started within 20 s:\n${first.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const { code, signal, ms } = await first.stop(30_000);
    console.log(`first daemon exited ${ms} ms after SIGTERM (sent mid-cycle)`);
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    // The audit under way is cut short (it only reads): nothing of it is recorded as a finished cycle.
    expect(ms).toBeLessThan(5_000);
    expect(first.withMsg('cycle finished')).toHaveLength(finishedBefore);
    expect(first.withMsg('cycle interrupted by shutdown: the next start reads again')).toHaveLength(1);
    expect(first.withMsg('stopping: finishing or parking the current step')[0]).toMatchObject({ signal: 'SIGTERM' });
    expect(first.withMsg('pristine daemon stopped')).toHaveLength(1);
    expect(first.lines[first.lines.length - 1]!.msg).toBe('pristine daemon stopped');
    await expect(fetch(`${firstUrl}/healthz`, { signal: AbortSignal.timeout(2_000) })).rejects.toThrow();
  });

  it('logged JSON lines only, with level and msg, and never the Slack token', () => {
    expect(first.garbage).toEqual([]);
    expect(first.lines.length).toBeGreaterThan(3);
    for (const l of first.lines) {
      expect(['number', 'string']).toContain(typeof l.level);
      expect(typeof l.msg).toBe('string');
      expect(l.pid).toBe(first.pid);
    }
    const token = s.slackEnv().SLACK_BOT_TOKEN!;
    expect(first.stderr).not.toContain(token);
    expect(first.stdout).not.toContain(token);
    // Slack did get it, so the test's token is the one in play.
    expect(s.slack.messages.every((msg) => msg.token === token)).toBe(true);
  });

  it('ran its cycles one after another: the state store and the AWS calls show no overlap', () => {
    const db = new Database(s.statePath, { readonly: true, fileMustExist: true });
    let cycles: Array<{ id: number; started_at: number; finished_at: number | null }>;
    try {
      cycles = db.prepare('SELECT id, started_at, finished_at FROM cycles ORDER BY id').all() as typeof cycles;
    } finally {
      db.close();
    }
    expect(cycles.length).toBeGreaterThanOrEqual(2);
    expect(cycles.length).toBe(first.withMsg('cycle finished').length + first.withMsg('cycle interrupted by shutdown: the next start reads again').length);
    for (const c of cycles) expect(c.finished_at).not.toBeNull();
    for (let i = 1; i < cycles.length; i++) expect(cycles[i]!.started_at).toBeGreaterThanOrEqual(cycles[i - 1]!.finished_at!);

    // Each cycle's inventory (its first DescribeInstances) comes at least HOLD_MS after the previous one
    // (whose LookupEvents came after it and was held that long): the 5-s schedule did not start a cycle
    // while one ran.
    const describes = s.fake.callsTo('DescribeInstances', 'ec2').map((c) => c.at);
    const firstDescribes = cycles.map((c) => describes.find((at) => at >= c.started_at && at <= c.finished_at!));
    expect(firstDescribes.every((at) => at !== undefined)).toBe(true);
    for (let i = 1; i < firstDescribes.length; i++) expect(firstDescribes[i]! - firstDescribes[i - 1]!).toBeGreaterThanOrEqual(HOLD_MS);
    console.log(`cycles: ${cycles.map((c) => `${c.finished_at! - c.started_at} ms`).join(', ')}`);

    // Every LookupEvents call belongs to one recorded cycle: none ran outside them.
    const lookups = s.fake.callsTo('LookupEvents').map((c) => c.at);
    expect(lookups.filter((at) => !cycles.some((c) => at >= c.started_at && at <= c.finished_at!))).toEqual([]);
  });

  it('a restarted daemon on the same state sends no new alert for the same taint; /healthz is 503 while the store cannot be written', async () => {
    const before = s.slack.messages.length;
    const d = startDaemon(YEARLY);
    const url = await d.url();
    const finished = await d.waitFor('cycle finished', 40_000);
    expect(finished).toMatchObject({ summary: expect.objectContaining({ tainted: 0, pristine: 3 }), replacements: 0 });
    expect(s.slack.messages.length).toBe(before);
    const m = await get(`${url}/metrics`);
    expect(sample(m.text, 'pristine_slack_messages_total{outcome="sent"}')).toBe(0);
    expect(sample(m.text, 'pristine_replacements_total{outcome="started"}')).toBe(0);
    expect((await s.instances([{ Name: 'tag:pristine:replaces', Values: [tainted] }])).length).toBe(1);
    expect((await get(`${url}/healthz`)).status).toBe(200);

    // Another writer holds the database's write lock: the daemon's store check waits out its busy
    // timeout (5 s), then /healthz reports the store unusable; once the lock is gone, healthy again.
    const locker = new Database(s.statePath, { fileMustExist: true });
    try {
      locker.exec('BEGIN IMMEDIATE');
      const h = await get(`${url}/healthz`);
      expect(h.status).toBe(503);
      expect(JSON.parse(h.text)).toMatchObject({ status: 'unhealthy', reason: expect.stringMatching(/state store unusable.*locked/) });
      locker.exec('ROLLBACK');
    } finally {
      locker.close();
    }
    expect((await get(`${url}/healthz`)).status).toBe(200);

    const { code, ms } = await d.stop(30_000);
    console.log(`restarted daemon exited ${ms} ms after SIGTERM`);
    expect(code).toBe(0);
    expect(d.garbage).toEqual([]);
    expect(d.stderr).not.toContain(s.slackEnv().SLACK_BOT_TOKEN!);
    expect(d.withMsg('pristine daemon stopped')).toHaveLength(1);
  });
});
