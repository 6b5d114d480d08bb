// The `pristine` command: its subcommands, options and exit codes (started by cli.ts).
import { mkdir, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { loadAuditInputs, runAudit } from './audit.js';
import { defaultRegion } from './collect/clients.js';
import { loadConfig } from './config/load.js';
import { deployTemplate, TEMPLATE_PARTS, type TemplatePart } from './deploy/template.js';
import { parseDuration } from './core/duration.js';
import { describeError, InputError } from './errors.js';
import { createLogger } from './logger.js';
import { recordManifests } from './manifest/record.js';
import { iamPoliciesFor, iamPolicyFor, isMultiAccount } from './permissions.js';
import { loadPolicies } from './policy/load.js';
import { runDaemon } from './commands/daemon.js';
import { createPool } from './commands/shared.js';
import { SqliteStateStore } from './state/sqlite/store.js';
import { replaceOne } from './commands/replace.js';
import { runOnce } from './commands/run.js';
import { statusOf } from './commands/status.js';
import { createInterface } from 'node:readline/promises';
import { EXIT, exitCodeOf } from './report/model.js';
import { renderTable } from './report/table.js';
import { writeJson } from './report/json-stream.js';

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
  config?: string;
  policies: string;
  manifests: string;
  since?: string;
  format: 'table' | 'json';
  output?: string;
  concurrency?: number;
}

function positiveInt(flag: string) {
  return (text: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new InputError(`${flag}: expected a whole number from 1 to 64; got "${text}"`);
    return n;
  };
}

/** `--config FILE`: every command takes it. */
function withConfig(cmd: Command): Command {
  return cmd.option('--config <file>', 'pristine.yaml: accounts, organisation, regions, evidence sources (default: ./pristine.yaml when present)');
}

/** The flags of every command that audits. */
function withScopeFlags(cmd: Command): Command {
  return withConfig(cmd)
    .option('--policies <dir>', 'policy directory or file', 'policies')
    .option('--manifests <dir>', 'directory of baked-image manifests', 'manifests')
    .option('--concurrency <n>', '(account, region) scopes read side by side (default: the config\'s concurrency, 8)', positiveInt('--concurrency'));
}

/** The flags `audit` and `run` share. */
function withAuditFlags(cmd: Command): Command {
  return withScopeFlags(cmd)
    .option('--since <duration|iso>', "examine activity from this time (e.g. 24h, 7d, 2026-11-01T00:00:00Z); default: since each scope's oldest first launch")
    .addOption(new Option('--format <format>', 'report format').choices(['table', 'json']).default('table'))
    .option('--output <file>', 'write the report to a file instead of stdout');
}

/** Where state lives: a SQLite file (the default), or postgres://… shared by several replicas. */
const stateOption = () =>
  new Option('--state <file-or-url>', 'state store: a SQLite file, or a postgres:// URL (several replicas share one)').env('PRISTINE_STATE_URL').default('pristine.db');

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
      const inputs = await loadAuditInputs({ policiesDir: opts.policies, manifestsDir: opts.manifests, configFile: opts.config });
      const pool = await createPool();
      // A one-off audit keeps its evidence log in memory: it reads the whole window, and writes no file.
      const store = SqliteStateStore.open(':memory:');
      const { report } = await runAudit(inputs, { since, logger, pool, store, concurrency: opts.concurrency }).finally(() => {
        pool.destroy();
        return store.close();
      });
      if (opts.format === 'json') await writeJson(report, opts.output);
      else await writeOutput(renderTable(report), opts.output);
      process.exitCode = exitCodeOf(report);
    });

  withAuditFlags(program.command('run').description('one cycle: audit, then alert and replace as each policy\'s respond block says'))
    .addOption(stateOption())
    .option('--dry-run', 'print the planned actions and change nothing', false)
    .option('--wait <duration>', 'drive replacements this long after the cycle (e.g. 0s, 10m); default: until they are done; a later run resumes them')
    .action(async (opts: AuditFlags & { state: string; dryRun: boolean; wait?: string }) => {
      const logger = createLogger(logLevel());
      const since = opts.since === undefined ? null : parseSince(opts.since, Date.now());
      const wait = opts.wait === undefined ? null : parseDuration(opts.wait);
      if (wait === null && opts.wait !== undefined) throw new InputError(`--wait: expected a duration such as 0s, 90s or 10m; got "${opts.wait}"`);
      const { output, exitCode } = await runOnce({ ...opts, since, wait }, logger);
      if ('json' in output) await writeJson(output.json, opts.output);
      else await writeOutput(output.text, opts.output);
      process.exitCode = exitCode;
    });

  withScopeFlags(program.command('daemon'))
    .description('run a cycle at start and then on a schedule, and consume the event queues between cycles; serve /healthz and /metrics; log JSON lines')
    .option('--since <duration|iso>', 'examine activity from this time (instances first launched earlier are unknown)')
    .addOption(stateOption())
    .option('--schedule <cron>', 'cron expression (five fields, or six with seconds)', '*/10 * * * *')
    .option('--listen <[host:]port>', 'address for /healthz and /metrics', '9464')
    .action(async (opts: { config?: string; policies: string; manifests: string; since?: string; state: string; schedule: string; listen: string; concurrency?: number }) => {
      // A daemon logs its cycles: info unless --log-level says otherwise.
      const logger = createLogger(program.getOptionValueSource('logLevel') === 'default' ? 'info' : logLevel());
      const since = opts.since === undefined ? null : parseSince(opts.since, Date.now());
      process.exitCode = await runDaemon({ ...opts, since }, logger);
    });

  withScopeFlags(program.command('replace'))
    .description('replace one instance now, the way a cycle would (asks first unless --yes)')
    .argument('<instance-id>', 'the instance to replace')
    .addOption(stateOption())
    .option('--yes', 'do not ask', false)
    .action(async (instanceId: string, opts: { config?: string; policies: string; manifests: string; state: string; yes: boolean; concurrency?: number }) => {
      const logger = createLogger(logLevel());
      const { text, exitCode } = await replaceOne({ instanceId, ...opts }, logger, ask);
      process.stdout.write(text);
      process.exitCode = exitCode;
    });

  withConfig(program.command('status'))
    .description('open findings, replacements in flight and their step, recent history')
    .addOption(stateOption())
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (opts: { state: string; format: 'table' | 'json' }) => {
      process.stdout.write(await statusOf(opts.state, opts.format));
    });

  const policy = program.command('policy').description('work with policy files');
  withConfig(policy.command('validate'))
    .description('check policy files (and pristine.yaml); errors name the file, the policy and the field')
    .argument('[dir]', 'policy directory or file', 'policies')
    .action(async (dir: string, opts: { config?: string }) => {
      const { file } = await loadConfig(opts.config);
      if (file) process.stdout.write(`${file}: ok\n`);
      const policies = await loadPolicies(dir);
      const files = new Set(policies.map((p) => p.file));
      for (const p of policies) process.stdout.write(`${p.file}: ${p.name}: ok\n`);
      process.stdout.write(`${policies.length} ${policies.length === 1 ? 'policy' : 'policies'} in ${files.size} ${files.size === 1 ? 'file' : 'files'}: valid\n`);
    });

  withConfig(policy.command('iam'))
    .description("print the least-privilege IAM policy for these policies; with member accounts, two: pristine's own and the member role's")
    .argument('[dir]', 'policy directory or file', 'policies')
    .option('--replace', 'include what replacing needs even when no policy enforces (for `pristine replace`)', false)
    .action(async (dir: string, opts: { replace: boolean; config?: string }) => {
      const { config } = await loadConfig(opts.config);
      const policies = await loadPolicies(dir);
      const doc = isMultiAccount(config) ? iamPoliciesFor(policies, config, opts) : iamPolicyFor(policies, { ...opts, config });
      process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    });

  const deploy = program.command('deploy').description('set pristine up in AWS');
  withConfig(deploy.command('template'))
    .description('print CloudFormation (YAML): the member role (a StackSet over the organisation), the EventBridge rule per region, the event queue with its dead-letter queue')
    .addOption(new Option('--part <part>', 'which template').choices([...TEMPLATE_PARTS]).default('all'))
    .action(async (opts: { config?: string; part: TemplatePart }) => {
      await loadConfig(opts.config);
      process.stdout.write(deployTemplate(opts.part));
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

