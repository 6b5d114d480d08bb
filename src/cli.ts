#!/usr/bin/env node
import { mkdir, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { loadAuditInputs, runAudit } from './audit.js';
import { defaultRegion } from './collect/clients.js';
import { parseDuration } from './core/duration.js';
import { describeError, InputError } from './errors.js';
import { createLogger } from './logger.js';
import { recordManifests } from './manifest/record.js';
import { iamPolicyFor } from './permissions.js';
import { loadPolicies } from './policy/load.js';
import { runDaemon } from './commands/daemon.js';
import { ClientPool } from './commands/shared.js';
import { replaceOne } from './commands/replace.js';
import { runOnce } from './commands/run.js';
import { statusOf } from './commands/status.js';
import { createInterface } from 'node:readline/promises';
import { EXIT, exitCodeOf } from './report/model.js';
import { renderTable } from './report/table.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

/** `24h`, `7d` (ago) or an ISO-8601 time, to epoch ms. */
export function parseSince(text: string, now: number): number {
  const ms = parseDuration(text);
  if (ms !== null) return now - ms;
  const at = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(at)) throw new InputError(`--since: expected a duration such as 24h or 7d, or an ISO-8601 time; got "${text}"`);
  if (at > now) throw new InputError(`--since: ${text} is in the future`);
  return at;
}

async function writeOutput(text: string, file: string | undefined): Promise<void> {
  if (!file) {
    process.stdout.write(text);
    return;
  }
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await writeFile(file, text);
}

interface AuditFlags {
  policies: string;
  manifests: string;
  since?: string;
  format: 'table' | 'json';
  output?: string;
}

/** The flags `audit`, `run` and `daemon` share. */
function withAuditFlags(cmd: Command): Command {
  return cmd
    .option('--policies <dir>', 'policy directory or file', 'policies')
    .option('--manifests <dir>', 'directory of baked-image manifests', 'manifests')
    .option('--since <duration|iso>', "examine activity from this time (e.g. 24h, 7d, 2026-11-01T00:00:00Z); default: since each region's oldest launch")
    .addOption(new Option('--format <format>', 'report format').choices(['table', 'json']).default('table'))
    .option('--output <file>', 'write the report to a file instead of stdout');
}

const STATE_FLAG = ['--state <path>', 'state file (SQLite)', 'pristine.db'] as const;

async function ask(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new InputError('not confirmed: run with --yes to replace without a prompt');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

function build(): Command {
  const program = new Command()
    .name('pristine')
    .description('Finds EC2 instances changed in place since they were launched from their baked image.')
    .version(pkg.version)
    .addOption(new Option('--log-level <level>', 'log level (JSON lines on stderr)').choices(['debug', 'info', 'warn', 'error', 'silent']).default('warn'))
    .showHelpAfterError()
    .exitOverride();

  const logLevel = () => program.opts<{ logLevel: string }>().logLevel;

  withAuditFlags(program.command('audit').description('inventory running instances, gather evidence of in-place change, print a verdict per instance'))
    .action(async (opts: AuditFlags) => {
      const logger = createLogger(logLevel());
      const since = opts.since === undefined ? null : parseSince(opts.since, Date.now());
      const inputs = await loadAuditInputs({ policiesDir: opts.policies, manifestsDir: opts.manifests });
      const pool = new ClientPool();
      const { report } = await runAudit(inputs, { since, logger, clientsFor: pool.get }).finally(() => pool.destroy());
      await writeOutput(opts.format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : renderTable(report), opts.output);
      process.exitCode = exitCodeOf(report);
    });

  withAuditFlags(program.command('run').description('one cycle: audit, then alert and replace as each policy\'s respond block says'))
    .option(...STATE_FLAG)
    .option('--dry-run', 'print the planned actions and change nothing', false)
    .action(async (opts: AuditFlags & { state: string; dryRun: boolean }) => {
      const logger = createLogger(logLevel());
      const since = opts.since === undefined ? null : parseSince(opts.since, Date.now());
      const { text, exitCode } = await runOnce({ ...opts, since }, logger);
      await writeOutput(text, opts.output);
      process.exitCode = exitCode;
    });

  program
    .command('daemon')
    .description('run a cycle at start and then on a schedule; serve /healthz and /metrics; log JSON lines')
    .option('--policies <dir>', 'policy directory or file', 'policies')
    .option('--manifests <dir>', 'directory of baked-image manifests', 'manifests')
    .option('--since <duration|iso>', 'examine activity from this time on the first cycle (later cycles read only what is new)')
    .option(...STATE_FLAG)
    .option('--schedule <cron>', 'cron expression (five fields, or six with seconds)', '*/10 * * * *')
    .option('--listen <[host:]port>', 'address for /healthz and /metrics', '9464')
    .action(async (opts: { policies: string; manifests: string; since?: string; state: string; schedule: string; listen: string }) => {
      // A daemon logs its cycles: info unless --log-level says otherwise.
      const logger = createLogger(program.getOptionValueSource('logLevel') === 'default' ? 'info' : logLevel());
      const since = opts.since === undefined ? null : parseSince(opts.since, Date.now());
      process.exitCode = await runDaemon({ ...opts, since }, logger);
    });

  program
    .command('replace')
    .description('replace one instance now, the way a cycle would (asks first unless --yes)')
    .argument('<instance-id>', 'the instance to replace')
    .option('--policies <dir>', 'policy directory or file', 'policies')
    .option('--manifests <dir>', 'directory of baked-image manifests', 'manifests')
    .option(...STATE_FLAG)
    .option('--yes', 'do not ask', false)
    .action(async (instanceId: string, opts: { policies: string; manifests: string; state: string; yes: boolean }) => {
      const logger = createLogger(logLevel());
      const { text, exitCode } = await replaceOne({ instanceId, ...opts }, logger, ask);
      process.stdout.write(text);
      process.exitCode = exitCode;
    });

  program
    .command('status')
    .description('open findings, replacements in flight and their step, recent history')
    .option(...STATE_FLAG)
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action((opts: { state: string; format: 'table' | 'json' }) => {
      process.stdout.write(statusOf(opts.state, opts.format));
    });

  const policy = program.command('policy').description('work with policy files');
  policy
    .command('validate')
    .description('check policy files; errors name the file, the policy and the field')
    .argument('[dir]', 'policy directory or file', 'policies')
    .action(async (dir: string) => {
      const policies = await loadPolicies(dir);
      const files = new Set(policies.map((p) => p.file));
      for (const p of policies) process.stdout.write(`${p.file}: ${p.name}: ok\n`);
      process.stdout.write(`${policies.length} ${policies.length === 1 ? 'policy' : 'policies'} in ${files.size} ${files.size === 1 ? 'file' : 'files'}: valid\n`);
    });

  policy
    .command('iam')
    .description('print the least-privilege IAM policy for these policies')
    .argument('[dir]', 'policy directory or file', 'policies')
    .option('--replace', 'include what replacing needs even when no policy enforces (for `pristine replace`)', false)
    .action(async (dir: string, opts: { replace: boolean }) => {
      process.stdout.write(`${JSON.stringify(iamPolicyFor(await loadPolicies(dir), opts), null, 2)}\n`);
    });

  const manifest = program.command('manifest').description('work with baked-image manifests');
  manifest
    .command('record')
    .description('write a manifest per image from the packages recorded at bake time')
    .requiredOption('--packages <file>', 'dpkg or rpm list (name<TAB>version<TAB>arch) or a CycloneDX JSON SBOM')
    .option('--image <ami>', 'the image the packages belong to')
    .option('--packer <file>', "Packer's manifest post-processor output: records every AMI of its artifact_id")
    .option('--region <region>', 'region of --image (default: the SDK\'s region)')
    .option('--name <name>', 'image name for --image')
    .option('--built-at <iso>', 'when the image was built, for --image (default: now)')
    .option('--out <dir>', 'manifests directory', 'manifests')
    .action(async (opts: { packages: string; image?: string; packer?: string; region?: string; name?: string; builtAt?: string; out: string }) => {
      if (Boolean(opts.image) === Boolean(opts.packer)) throw new InputError('manifest record: give exactly one of --image AMI_ID or --packer PACKER_MANIFEST');
      const region = opts.image ? (opts.region ?? (await defaultRegion())) : opts.region;
      if (opts.image && !region) throw new InputError('manifest record: --image needs --region (or AWS_REGION)');
      const written = await recordManifests({
        packagesFile: opts.packages,
        image: opts.image,
        packerFile: opts.packer,
        outDir: opts.out,
        region: region ?? undefined,
        name: opts.name,
        builtAt: opts.builtAt,
      });
      for (const f of written) process.stdout.write(`${f}\n`);
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = build();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; every usage error is bad input.
      process.exitCode = err.exitCode === 0 ? 0 : EXIT.badInput;
    } else if (err instanceof InputError) {
      process.stderr.write(`pristine: ${err.message}\n`);
      process.exitCode = EXIT.badInput;
    } else {
      process.stderr.write(`pristine: failed: ${describeError(err)}\n`);
      process.exitCode = EXIT.incomplete;
    }
  }
}

await main(process.argv);
