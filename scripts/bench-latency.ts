// `npm run bench:latency`: how long an in-place change takes to reach Slack through the event queue.
// A daemon runs against moto's SQS and the Slack stand-in, with no scheduled cycle due; for each of N
// instances an EventBridge "AWS API Call via CloudTrail" envelope (an SSM StartSession on it) is put on
// the queue, and the time until Slack receives the alert naming that instance is measured.
// Prints p50, p95 and the worst, and exits 1 when p95 is 10 s or more (the figure the README states).
import { parseArgs } from 'node:util';
import { readFixtureJson } from '../test/support/fixtures.js';
import { Daemon } from '../test/support/daemon.js';
import { ACCOUNT, MALLORY, REGION, Scenario, after } from '../test/support/scenario.js';

const { values } = parseArgs({ options: { events: { type: 'string', default: '20' }, json: { type: 'boolean', default: false } } });
const N = Number(values.events);
const TARGET_P95_MS = 10_000;

const POLICY = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {} }
    respond: { mode: observe, notify: { slack: { channel: "#sec" } } }
`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

async function main(): Promise<number> {
  const s = await Scenario.start();
  let daemon: Daemon | undefined;
  try {
    await s.writePolicies(POLICY);
    const fleet = await s.launch(await s.image('web'), { role: 'web' }, { count: N });
    const queueUrl = await s.queue('pristine-events');
    await s.writeConfig(`sources:\n  queues: ["${queueUrl}"]\n`);
    await after(Math.max(...fleet.map((l) => l.launchTime)) + 1500);
    const args = ['--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', s.statePath, '--schedule', '0 0 1 1 *', '--listen', '127.0.0.1:0'];
    daemon = new Daemon(args, s.env(s.slackEnv()), s.dir);
    await daemon.waitFor('cycle finished', 120_000);

    const template = readFixtureJson<Record<string, unknown>>('eventbridge/ssm-start-session.json');
    const latencies: number[] = [];
    for (const instance of fleet) {
      const record = s.trail('ssm-start-session', instance.instanceId, instance.launchTime + 1000, MALLORY);
      s.fake.cloudtrail.records.pop(); // CloudTrail has not delivered it yet: only the queue knows
      const sent = Date.now();
      await s.send(queueUrl, { ...template, id: `eb-${String(record['eventID'])}`, account: ACCOUNT, region: REGION, detail: record });
      await s.slack.waitFor((m) => m.channel === '#sec' && (m.text ?? '').includes(instance.instanceId), 60_000);
      latencies.push(Date.now() - sent);
    }
    const sorted = [...latencies].sort((a, b) => a - b);
    const result = { events: N, p50Ms: percentile(sorted, 50), p95Ms: percentile(sorted, 95), maxMs: sorted[sorted.length - 1] ?? NaN, targetP95Ms: TARGET_P95_MS };
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      process.stdout.write(`queue -> Slack, ${N} events, one at a time (SQS long polling, daemon between cycles):\n`);
      process.stdout.write(`  p50 ${result.p50Ms} ms   p95 ${result.p95Ms} ms   max ${result.maxMs} ms   (target: p95 under ${TARGET_P95_MS} ms)\n`);
    }
    return result.p95Ms < TARGET_P95_MS ? 0 : 1;
  } finally {
    await daemon?.stop(30_000).catch(() => daemon?.kill());
    await s.stop();
  }
}

process.exitCode = await main();
