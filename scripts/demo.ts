// `npm run demo`: pristine's audit, end to end, against a local AWS.
// moto plays EC2 (real instances, images and tags); the project's stand-ins play the CloudTrail and
// SSM APIs moto lacks. A small fleet is seeded with a few instances changed in place, then the real
// `pristine` CLI runs against it through the standard AWS_ENDPOINT_URL_* variables. Cleans up after itself.
import path from 'node:path';
import { readFixtureJsonl, fixturePath, repoRoot } from '../test/support/fixtures.js';
import { Scenario, after, runCli, type CliResult } from '../test/support/scenario.js';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function step(title: string): void {
  process.stdout.write(`\n${bold(`▶ ${title}`)}\n`);
}

function show(cmd: string[], r: CliResult): void {
  process.stdout.write(`$ pristine ${cmd.join(' ')}\n${r.stdout}${r.stderr}`);
  process.stdout.write(`(exit status ${r.code})\n`);
}

async function main(): Promise<number> {
  step('Starting a local AWS: moto for EC2, stand-ins for CloudTrail LookupEvents and SSM');
  const s = await Scenario.start();
  const pristine = async (...args: string[]) => {
    const r = await runCli(args, s.env(), repoRoot);
    show(args.map((a) => (a.startsWith(s.dir) ? path.join('$DEMO', path.relative(s.dir, a)) : a)), r);
    return r;
  };
  try {
    process.stdout.write(`moto at ${s.moto.url}, stand-ins at ${s.fake.url} (AWS_ENDPOINT_URL_EC2, _CLOUDTRAIL, _SSM)\n`);

    step('Recording the baked image: its packages as Packer left them');
    const web = await s.image('web-2026-11-18', { manifest: false });
    const handMade = await s.image('hand-made', { manifest: false });
    await pristine('manifest', 'record', '--packages', path.relative(repoRoot, fixturePath('packages/debian12-base.dpkg.tsv')), '--image', web, '--name', 'web-2026-11-18', '--built-at', '2026-11-18T10:00:00Z', '--out', s.manifestsDir);

    step('Launching a fleet: five web servers from the recorded image, one from an image nobody recorded, one database');
    const names = ['web-1', 'web-2', 'web-3', 'web-4', 'web-5'];
    const fleet = Object.fromEntries(
      await Promise.all(names.map(async (n) => [n, await s.launchOne(web, { role: 'web', Name: n, ...(n === 'web-5' ? { 'pristine:exempt': 'true' } : {}) })] as const)),
    );
    const odd = await s.launchOne(handMade, { role: 'web', Name: 'web-6' });
    await s.launchOne(web, { role: 'db', Name: 'db-1' });
    const at = (n: string, seconds: number) => fleet[n]!.launchTime + seconds * 1000;

    process.stdout.write('web-1  left alone\n');
    s.trail('ssm-start-session', fleet['web-2']!.instanceId, at('web-2', 1), { arn: 'arn:aws:sts::123456789012:assumed-role/Admin/alice', roleArn: 'arn:aws:iam::123456789012:role/Admin' });
    process.stdout.write('web-2  alice opens an SSM shell session\n');
    s.fake.ssm.inventory.set(fleet['web-3']!.instanceId, { captureTime: new Date().toISOString(), content: readFixtureJsonl('ssm/inventory-drifted.jsonl') });
    process.stdout.write('web-3  someone installs tcpdump and netcat and patches openssl by hand (SSM Inventory shows it)\n');
    s.trail('ssm-send-command-instance-ids', fleet['web-4']!.instanceId, at('web-4', 1), { arn: 'arn:aws:sts::123456789012:assumed-role/Deployer-prod/pipeline', roleArn: 'arn:aws:iam::123456789012:role/Deployer-prod' });
    process.stdout.write('web-4  the deploy pipeline (an allowed principal) runs a command\n');
    s.trail('ec2-create-tags-exempt', fleet['web-5']!.instanceId, at('web-5', 1), { arn: 'arn:aws:sts::123456789012:assumed-role/Developer/mallory', roleArn: 'arn:aws:iam::123456789012:role/Developer' });
    s.trail('ec2ic-send-ssh-public-key', fleet['web-5']!.instanceId, at('web-5', 1), { arn: 'arn:aws:sts::123456789012:assumed-role/Developer/mallory', roleArn: 'arn:aws:iam::123456789012:role/Developer' });
    process.stdout.write('web-5  mallory tags it pristine:exempt=true, then pushes an SSH key\n');
    process.stdout.write(`web-6  runs ${handMade}, an image nobody recorded\n`);
    process.stdout.write('db-1   not in scope of any policy\n');
    await after(Math.max(...Object.values(fleet).map((l) => l.launchTime), odd.launchTime) + 1500);

    step('Checking the policies shipped in policies/');
    await pristine('policy', 'validate', 'policies');

    step('Auditing (CloudTrail LookupEvents is paced to 2 calls a second: about ten seconds)');
    const r = await pristine('audit', '--policies', 'policies', '--manifests', s.manifestsDir);
    process.stdout.write(
      '\nExit status 1: at least one instance is tainted. 0 would mean every in-scope instance is pristine;\n' +
        '3 that some evidence could not be read (those instances are unknown, never pristine); 2 bad input.\n' +
        'Add --format json for the machine-readable report.\n',
    );
    return r.code === 1 ? 0 : 1;
  } finally {
    await s.stop();
    process.stdout.write('\nLocal AWS stopped and demo files removed.\n');
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
