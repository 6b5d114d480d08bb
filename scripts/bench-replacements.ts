// `npm run bench:replacements`: replacements run side by side. One tainted instance in a target group
// with a 20 s deregistration delay is replaced; then five, each in its own such group. Each run is the
// real `pristine run` against moto; the ratio of the two durations is printed (1.0: five cost as one).
import { MALLORY, Scenario, after } from '../test/support/scenario.js';

const DRAIN_SECONDS = 20;
const POLICY = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      replace: { maxPerCycle: 10, maxConcurrent: 10, maxUnavailable: 50%, minAge: 0s, healthTimeout: 5m }
      breaker: { taintedShare: 100% }
`;

async function replaceAtOnce(n: number): Promise<number> {
  const s = await Scenario.start();
  try {
    await s.writePolicies(POLICY);
    const image = await s.image('web');
    const tainted = [];
    for (let k = 0; k < n; k++) {
      const pair = await s.launch(image, { role: 'web' }, { count: 2 });
      await s.targetGroup(`web-${k}`, pair.map((p) => p.instanceId), 80, { deregistrationDelaySeconds: DRAIN_SECONDS });
      tainted.push(pair[0]!);
    }
    for (const t of tainted) s.trail('ssm-start-session', t.instanceId, t.launchTime + 1000, MALLORY);
    await after(Math.max(...tainted.map((t) => t.launchTime)) + 1500);
    // The audit before the replacements costs the same either way: time from the first launch to the last terminate.
    await s.cycle([], {});
    const runs = s.fake.callsTo('RunInstances').map((c) => c.at);
    const terminates = s.fake.callsTo('TerminateInstances').map((c) => c.at);
    if (terminates.length !== n) throw new Error(`${terminates.length} of ${n} replacements finished`);
    return Math.max(...terminates) - Math.min(...runs);
  } finally {
    await s.stop();
  }
}

const one = await replaceAtOnce(1);
const five = await replaceAtOnce(5);
process.stdout.write(`one replacement (a ${DRAIN_SECONDS} s drain): ${(one / 1000).toFixed(1)} s\n`);
process.stdout.write(`five, each in its own target group: ${(five / 1000).toFixed(1)} s\n`);
process.stdout.write(`ratio: ${(five / one).toFixed(2)} (1.00: five cost as much as one)\n`);
