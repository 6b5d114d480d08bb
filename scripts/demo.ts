// `npm run demo`: pristine end to end, against a local AWS.
// moto plays EC2, ELBv2 and Auto Scaling (real instances, images, tags, a load balancer); the project's
// stand-ins play the CloudTrail and SSM APIs moto lacks. A small fleet behind a load balancer is
// seeded with instances changed in place, then the real `pristine` CLI audits it and runs one enforce
// cycle through the standard AWS_ENDPOINT_URL variables. Slack messages are shown in the terminal
// (no SLACK_BOT_TOKEN is set). Cleans up after itself.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CreateListenerCommand, CreateLoadBalancerCommand } from '@aws-sdk/client-elastic-load-balancing-v2';
import { DescribeSubnetsCommand } from '@aws-sdk/client-ec2';
import { WEB_POLICY } from '../test/support/facts.js';
import { fixturePath, readFixtureJsonl, repoRoot } from '../test/support/fixtures.js';
import { ALICE, DEPLOYER, Scenario, after, runCli, type CliResult } from '../test/support/scenario.js';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s: string) => process.stdout.write(`${s}\n`);

function step(title: string): void {
  say(`\n${bold(`▶ ${title}`)}`);
}

const DEMO_POLICY = `${WEB_POLICY.trimStart()}    respond:
      mode: enforce
      notify: { slack: { channel: "#infra-alerts" } }
      replace: { maxPerCycle: 2, maxUnavailable: 50%, minAge: 0s, healthTimeout: 5m }
      breaker: { taintedShare: 50% }
`;

async function main(): Promise<number> {
  step('Starting a local AWS: moto for EC2, ELBv2 and Auto Scaling; stand-ins for CloudTrail LookupEvents and SSM');
  const s = await Scenario.start();
  const shown = (a: string) => (a.startsWith(s.dir) ? path.join('$DEMO', path.relative(s.dir, a)) : a);
  const pristine = async (args: string[], opts: { slackHeading?: boolean } = {}): Promise<CliResult> => {
    const r = await runCli(args, s.env(), repoRoot);
    say(`$ pristine ${args.map(shown).join(' ')}`);
    process.stdout.write(r.stdout);
    if (r.stderr) {
      if (opts.slackHeading) say(`\n${bold('Slack messages')} (no SLACK_BOT_TOKEN is set, so pristine prints them):\n`);
      process.stdout.write(r.stderr);
    }
    say(`(exit status ${r.code})`);
    return r;
  };
  try {
    say(`moto at ${s.moto.url}, stand-ins at ${s.fake.url}; pristine finds them through AWS_ENDPOINT_URL`);

    step('Recording the baked image: its packages as the image build left them');
    const web = await s.image('web-2026-11-18', { manifest: false });
    await pristine([
      'manifest', 'record',
      '--packages', path.relative(repoRoot, fixturePath('packages/debian12-base.dpkg.tsv')),
      '--image', web, '--name', 'web-2026-11-18', '--built-at', '2026-11-18T10:00:00Z', '--out', s.manifestsDir,
    ]);

    step('Launching four web servers behind a load balancer, and a database nobody is watching');
    const fleet = await Promise.all(['web-1', 'web-2', 'web-3', 'web-4'].map((Name) => s.launchOne(web, { role: 'web', Name })));
    await s.launchOne(web, { role: 'db', Name: 'db-1' });
    const [web1, web2, web3, web4] = fleet as [(typeof fleet)[0], (typeof fleet)[0], (typeof fleet)[0], (typeof fleet)[0]];
    const tg = await s.targetGroup('web', fleet.map((f) => f.instanceId));
    const { vpcId } = await s.defaultSubnet();
    const subnets = await s.ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }] }));
    const lb = await s.elbv2.send(new CreateLoadBalancerCommand({ Name: 'web', Subnets: (subnets.Subnets ?? []).slice(0, 2).map((x) => x.SubnetId ?? '') }));
    await s.elbv2.send(
      new CreateListenerCommand({ LoadBalancerArn: lb.LoadBalancers?.[0]?.LoadBalancerArn, Protocol: 'HTTP', Port: 80, DefaultActions: [{ Type: 'forward', TargetGroupArn: tg }] }),
    );
    say(`load balancer "web" forwards to target group "web": ${fleet.map((f) => f.instanceId).join(', ')}`);

    step('Changing two servers in place');
    s.trail('ssm-start-session', web2.instanceId, web2.launchTime + 1000, ALICE);
    say(`web-2 (${web2.instanceId})  alice opens an SSM shell session`);
    s.fake.ssm.inventory.set(web3.instanceId, { captureTime: new Date().toISOString(), content: readFixtureJsonl('ssm/inventory-drifted.jsonl') });
    say(`web-3 (${web3.instanceId})  someone installs tcpdump and netcat and patches openssl by hand`);
    s.trail('ssm-send-command-instance-ids', web4.instanceId, web4.launchTime + 1000, DEPLOYER);
    say(`web-4 (${web4.instanceId})  the deploy pipeline, an allowed principal, runs a command: not a taint`);
    say(`web-1 (${web1.instanceId})  left alone`);
    await after(Math.max(...fleet.map((l) => l.launchTime)) + 1500);

    step('The policy: enforce mode, alerts to #infra-alerts');
    await writeFile(path.join(s.policiesDir, 'web.yaml'), DEMO_POLICY);
    process.stdout.write(DEMO_POLICY);
    await pristine(['policy', 'validate', s.policiesDir]);

    step('Auditing (read-only; CloudTrail LookupEvents is paced to 2 calls a second: about ten seconds)');
    await pristine(['audit', '--policies', s.policiesDir, '--manifests', s.manifestsDir]);

    step('One enforce cycle: alert, then replace each tainted server (launch, register, drain, terminate)');
    const state = path.join(s.dir, 'pristine.db');
    await pristine(['run', '--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', state], { slackHeading: true });

    step('What the load balancer serves now');
    const targets = await s.targets(tg);
    const names = new Map(fleet.map((f, k) => [f.instanceId, `web-${k + 1}`]));
    for (const [id, health] of Object.entries(targets)) {
      const replaces = (await s.instances([{ Name: 'instance-id', Values: [id] }]))[0]?.Tags?.find((t) => t.Key === 'pristine:replaces')?.Value;
      say(`  ${id}  ${health}${replaces ? `  fresh, replaces ${names.get(replaces) ?? replaces}` : `  ${names.get(id) ?? ''}`}`);
    }
    for (const old of [web2, web3]) say(`  ${old.instanceId} (${names.get(old.instanceId)}): ${await s.state(old.instanceId)}`);

    step('What pristine remembers');
    await pristine(['status', '--state', state]);
    return 0;
  } finally {
    await s.stop();
    say('\nLocal AWS stopped and demo files removed.');
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
