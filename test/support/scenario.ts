// A small AWS world for integration tests and the demo: moto (EC2 and friends, real state) behind
// the CloudTrail/SSM fake, a temp folder for policies and manifests, and a way to run the real CLI.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AutoScalingClient, CreateAutoScalingGroupCommand } from '@aws-sdk/client-auto-scaling';
import {
  CreateLaunchTemplateCommand,
  DescribeInstancesCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  EC2Client,
  RegisterImageCommand,
  RunInstancesCommand,
  type Instance,
  type Tag,
} from '@aws-sdk/client-ec2';
import {
  CreateTargetGroupCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  ModifyTargetGroupAttributesCommand,
  RegisterTargetsCommand,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { SlackFake } from './slack-fake.js';
import { AwsFake, type CloudTrailRecord } from './aws-fake.js';
import { readFixtureJson, repoRoot } from './fixtures.js';
import { FIXTURE_INSTANCE, debianPackages } from './facts.js';
import { motoForThisWorker, type MotoServer } from './moto.js';

export const REGION = 'us-east-1';
export const ACCOUNT = '123456789012';
export const CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

/** Callers for CloudTrail records: a person with an admin role, a developer, the deploy pipeline. */
export const ALICE = { arn: `arn:aws:sts::${ACCOUNT}:assumed-role/Admin/alice`, roleArn: `arn:aws:iam::${ACCOUNT}:role/Admin` };
export const MALLORY = { arn: `arn:aws:sts::${ACCOUNT}:assumed-role/Developer/mallory`, roleArn: `arn:aws:iam::${ACCOUNT}:role/Developer` };
export const DEPLOYER = { arn: `arn:aws:sts::${ACCOUNT}:assumed-role/Deployer-prod/ci-42`, roleArn: `arn:aws:iam::${ACCOUNT}:role/Deployer-prod` };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Launched {
  instanceId: string;
  launchTime: number;
  privateIpAddress: string;
}

/** Where a test puts something: an account (moto's default unless said) and a region. */
export interface Place {
  account?: string;
  region?: string;
}

type Credentials = { accessKeyId: string; secretAccessKey: string; sessionToken?: string };

let seq = 0;

export class Scenario {
  readonly fake: AwsFake;
  /** seeding goes straight to moto, so the fake's call log holds only what pristine called */
  readonly ec2: EC2Client;
  readonly elbv2: ElasticLoadBalancingV2Client;
  readonly autoscaling: AutoScalingClient;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly slack = new SlackFake();
  readonly statePath: string;
  readonly policiesDir: string;
  readonly manifestsDir: string;
  private readonly clients = new Map<string, { ec2: EC2Client; elbv2: ElasticLoadBalancingV2Client; autoscaling: AutoScalingClient }>();
  private readonly credentials = new Map<string, Promise<Credentials>>();

  private constructor(
    readonly moto: MotoServer,
    fake: AwsFake,
    readonly dir: string,
  ) {
    this.fake = fake;
    this.ec2 = new EC2Client({ region: REGION, endpoint: moto.url, credentials: CREDENTIALS });
    this.elbv2 = new ElasticLoadBalancingV2Client({ region: REGION, endpoint: moto.url, credentials: CREDENTIALS });
    this.autoscaling = new AutoScalingClient({ region: REGION, endpoint: moto.url, credentials: CREDENTIALS });
    this.s3 = new S3Client({ region: REGION, endpoint: moto.url, credentials: CREDENTIALS, forcePathStyle: true });
    this.sqs = new SQSClient({ region: REGION, endpoint: moto.url, credentials: CREDENTIALS });
    this.statePath = path.join(dir, 'state', 'pristine.db');
    this.policiesDir = path.join(dir, 'policies');
    this.manifestsDir = path.join(dir, 'manifests');
  }

  static async start(opts: { lookupEventsPerSecond?: number } = {}): Promise<Scenario> {
    const moto = await motoForThisWorker();
    const fake = new AwsFake({ upstream: moto.url, lookupEventsPerSecond: opts.lookupEventsPerSecond ?? 2 });
    await fake.start();
    const dir = await mkdtemp(path.join(tmpdir(), 'pristine-it-'));
    const s = new Scenario(moto, fake, dir);
    await mkdir(s.policiesDir);
    await mkdir(s.manifestsDir);
    await s.slack.start();
    return s;
  }

  /** Credentials that act in `account` (moto's STS: assuming a role there returns keys of that account). */
  credentialsFor(account: string): Promise<Credentials> {
    if (account === ACCOUNT) return Promise.resolve(CREDENTIALS);
    let c = this.credentials.get(account);
    if (!c) {
      const sts = new STSClient({ region: REGION, endpoint: this.moto.url, credentials: CREDENTIALS });
      c = sts
        .send(new AssumeRoleCommand({ RoleArn: `arn:aws:iam::${account}:role/TestSeeder`, RoleSessionName: 'seeder' }))
        .then((r) => ({ accessKeyId: r.Credentials!.AccessKeyId!, secretAccessKey: r.Credentials!.SecretAccessKey!, sessionToken: r.Credentials!.SessionToken! }))
        .finally(() => sts.destroy());
      this.credentials.set(account, c);
    }
    return c;
  }

  /** Seeding clients for another account or region, straight to moto. */
  async clientsIn(place: Place = {}): Promise<{ ec2: EC2Client; elbv2: ElasticLoadBalancingV2Client; autoscaling: AutoScalingClient }> {
    const account = place.account ?? ACCOUNT;
    const region = place.region ?? REGION;
    if (account === ACCOUNT && region === REGION) return { ec2: this.ec2, elbv2: this.elbv2, autoscaling: this.autoscaling };
    const key = `${account}/${region}`;
    let c = this.clients.get(key);
    if (!c) {
      const credentials = await this.credentialsFor(account);
      const base = { region, endpoint: this.moto.url, credentials };
      c = { ec2: new EC2Client(base), elbv2: new ElasticLoadBalancingV2Client(base), autoscaling: new AutoScalingClient(base) };
      this.clients.set(key, c);
    }
    return c;
  }

  async stop(): Promise<void> {
    this.ec2.destroy();
    this.elbv2.destroy();
    this.autoscaling.destroy();
    this.s3.destroy();
    this.sqs.destroy();
    for (const c of this.clients.values()) {
      c.ec2.destroy();
      c.elbv2.destroy();
      c.autoscaling.destroy();
    }
    await this.slack.stop();
    await this.fake.stop();
    await this.moto.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Environment for the CLI: the SDK's standard variables only, pointing at the fake and moto. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '',
      HOME: this.dir,
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      AWS_REGION: REGION,
      AWS_CONFIG_FILE: path.join(this.dir, 'no-aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: path.join(this.dir, 'no-aws-credentials'),
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      // Per-service variables for the three the audit reads; the rest (ELBv2, Auto Scaling) by the global one.
      AWS_ENDPOINT_URL: this.fake.url,
      AWS_ENDPOINT_URL_EC2: this.fake.url,
      AWS_ENDPOINT_URL_CLOUDTRAIL: this.fake.url,
      AWS_ENDPOINT_URL_SSM: this.fake.url,
      ...extra,
    };
  }

  /** Run the built `pristine` CLI (dist/cli.js) as a user would. */
  run(args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
    return runCli(args, this.env(extraEnv), this.dir);
  }

  /** Slack environment for the CLI: the token and the stand-in's API base. */
  slackEnv(): Record<string, string> {
    return { SLACK_BOT_TOKEN: 'xoxb-test-token-do-not-log', SLACK_API_URL: this.slack.url };
  }

  /** `pristine run --format json` with this scenario's policies, manifests, state and Slack. */
  async cycle(extra: string[] = [], env: Record<string, string> = this.slackEnv()): Promise<CliResult & { report: CycleReport }> {
    const r = await this.run(['run', '--policies', this.policiesDir, '--manifests', this.manifestsDir, '--state', this.statePath, '--format', 'json', ...extra], env);
    let report: CycleReport;
    try {
      report = JSON.parse(r.stdout) as CycleReport;
    } catch {
      throw new Error(`run printed no JSON report (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    }
    return { ...r, report };
  }

  async defaultSubnet(): Promise<{ vpcId: string; subnetId: string }> {
    const vpcs = await this.ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: 'isDefault', Values: ['true'] }] }));
    const vpcId = vpcs.Vpcs?.[0]?.VpcId ?? '';
    const subnets = await this.ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }] }));
    return { vpcId, subnetId: subnets.Subnets?.[0]?.SubnetId ?? '' };
  }

  /**
   * An ELBv2 target group (instance targets, HTTP) holding the given instances. Its deregistration delay
   * is 1 s unless said (ELB's default of 300 s would make every replacement in a test wait five minutes).
   */
  async targetGroup(name: string, instanceIds: string[], port = 80, opts: { deregistrationDelaySeconds?: number } = {}): Promise<string> {
    const { vpcId } = await this.defaultSubnet();
    const tg = await this.elbv2.send(new CreateTargetGroupCommand({ Name: name, Protocol: 'HTTP', Port: port, VpcId: vpcId, TargetType: 'instance' }));
    const arn = tg.TargetGroups?.[0]?.TargetGroupArn ?? '';
    await this.elbv2.send(
      new ModifyTargetGroupAttributesCommand({ TargetGroupArn: arn, Attributes: [{ Key: 'deregistration_delay.timeout_seconds', Value: String(opts.deregistrationDelaySeconds ?? 1) }] }),
    );
    if (instanceIds.length) await this.elbv2.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: instanceIds.map((Id) => ({ Id, Port: port })) }));
    return arn;
  }

  /** Target ids and states in a target group. */
  async targets(arn: string): Promise<Record<string, string>> {
    const out = await this.elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn }));
    return Object.fromEntries((out.TargetHealthDescriptions ?? []).map((d) => [d.Target?.Id ?? '', d.TargetHealth?.State ?? '']));
  }

  /** An Auto Scaling group launching `imageId` from a launch template, its instances tagged. */
  async autoScalingGroup(name: string, imageId: string, tags: Record<string, string>, opts: { desired?: number; targetGroupArns?: string[] } = {}): Promise<string[]> {
    const { subnetId } = await this.defaultSubnet();
    const lt = await this.ec2.send(
      new CreateLaunchTemplateCommand({
        LaunchTemplateName: `${name}-lt`,
        LaunchTemplateData: { ImageId: imageId, InstanceType: 't3.micro', TagSpecifications: [{ ResourceType: 'instance', Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }] },
      }),
    );
    const desired = opts.desired ?? 2;
    await this.autoscaling.send(
      new CreateAutoScalingGroupCommand({
        AutoScalingGroupName: name,
        MinSize: desired,
        MaxSize: desired + 2,
        DesiredCapacity: desired,
        VPCZoneIdentifier: subnetId,
        LaunchTemplate: { LaunchTemplateId: lt.LaunchTemplate?.LaunchTemplateId, Version: '$Latest' },
        TargetGroupARNs: opts.targetGroupArns,
      }),
    );
    const members = await this.instances([{ Name: 'tag:aws:autoscaling:groupName', Values: [name] }]);
    for (const i of members) if (i.InstanceId) this.cleanInventory(i.InstanceId);
    return members.flatMap((i) => (i.InstanceId ? [i.InstanceId] : []));
  }

  /** Instances in moto matching the filters (every state unless filtered). */
  async instances(filters: Array<{ Name: string; Values: string[] }>): Promise<Instance[]> {
    const out = await this.ec2.send(new DescribeInstancesCommand({ Filters: filters }));
    return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
  }

  async state(instanceId: string): Promise<string | undefined> {
    return (await this.instances([{ Name: 'instance-id', Values: [instanceId] }]))[0]?.State?.Name;
  }

  /** `pristine audit --format json` against this scenario's policies and manifests. */
  async audit(extra: string[] = []): Promise<CliResult & { report: AuditReport }> {
    const r = await this.run(['audit', '--policies', this.policiesDir, '--manifests', this.manifestsDir, '--format', 'json', ...extra]);
    let report: AuditReport;
    try {
      report = JSON.parse(r.stdout) as AuditReport;
    } catch {
      throw new Error(`audit printed no JSON report (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    }
    return { ...r, report };
  }

  /** An SQS queue in moto; its URL. */
  async queue(name: string): Promise<string> {
    const out = await this.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '30' } }));
    return out.QueueUrl ?? '';
  }

  async send(queueUrl: string, body: unknown): Promise<void> {
    await this.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: typeof body === 'string' ? body : JSON.stringify(body) }));
  }

  async bucket(name: string): Promise<string> {
    await this.s3.send(new CreateBucketCommand({ Bucket: name }));
    return name;
  }

  /**
   * A trail log file as CloudTrail delivers it: `{"Records": [...]}` gzipped under
   * `AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/`; its key and the SHA-256 a digest would list.
   */
  async putTrailFile(bucket: string, records: CloudTrailRecord[], place: Place = {}): Promise<{ key: string; sha256: string }> {
    const account = place.account ?? ACCOUNT;
    const region = place.region ?? REGION;
    const now = new Date();
    const day = now.toISOString().slice(0, 10).replace(/-/g, '/');
    const stamp = now.toISOString().replace(/[-:]/g, '').slice(0, 13);
    const key = `AWSLogs/${account}/CloudTrail/${region}/${day}/${account}_CloudTrail_${region}_${stamp}Z_${String(++seq).padStart(16, 'x')}.json.gz`;
    const plain = Buffer.from(JSON.stringify({ Records: records }));
    await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: gzipSync(plain) }));
    return { key, sha256: createHash('sha256').update(plain).digest('hex') };
  }

  /** An hourly digest file listing log files with the hashes given (a wrong one is what tampering looks like). */
  async putDigest(bucket: string, span: { from: number; to: number }, files: Array<{ key: string; sha256: string }>, place: Place = {}): Promise<string> {
    const account = place.account ?? ACCOUNT;
    const region = place.region ?? REGION;
    const end = new Date(span.to);
    const day = end.toISOString().slice(0, 10).replace(/-/g, '/');
    const stamp = end.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const key = `AWSLogs/${account}/CloudTrail-Digest/${region}/${day}/${account}_CloudTrail-Digest_${region}_trail_${region}_${stamp}.json.gz`;
    const digest = {
      awsAccountId: account,
      digestStartTime: new Date(span.from).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      digestEndTime: end.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      digestS3Bucket: bucket,
      digestS3Object: key,
      digestPublicKeyFingerprint: '5a1c7e0b2f3d4c6e8a9b0c1d2e3f4a5b',
      digestSignatureAlgorithm: 'SHA256withRSA',
      logFiles: files.map((f) => ({ s3Bucket: bucket, s3Object: f.key, hashValue: f.sha256, hashAlgorithm: 'SHA-256' })),
    };
    await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: gzipSync(Buffer.from(JSON.stringify(digest))) }));
    return key;
  }

  /** pristine.yaml in the CLI's working directory, which every command reads when no --config is given. */
  async writeConfig(yaml: string): Promise<void> {
    await writeFile(path.join(this.dir, 'pristine.yaml'), yaml);
  }

  async writePolicies(yaml: string, file = 'policies.yaml'): Promise<void> {
    await writeFile(path.join(this.policiesDir, file), yaml);
  }

  /** An AMI in moto, with a manifest of the fixtures' Debian 12 packages (unless told otherwise). */
  async image(name: string, opts: { manifest?: boolean } & Place = {}): Promise<string> {
    const { ec2 } = await this.clientsIn(opts);
    const out = await ec2.send(
      new RegisterImageCommand({ Name: name, RootDeviceName: '/dev/xvda', Architecture: 'x86_64', VirtualizationType: 'hvm' }),
    );
    const imageId = out.ImageId;
    if (!imageId) throw new Error('moto returned no image id');
    if (opts.manifest !== false) {
      const manifest = {
        imageId,
        region: opts.region ?? REGION,
        name,
        builtAt: '2026-11-18T10:00:00Z',
        packageManager: 'dpkg',
        packages: debianPackages(),
      };
      await writeFile(path.join(this.manifestsDir, `${name}-${opts.account ?? ACCOUNT}-${opts.region ?? REGION}.json`), `${JSON.stringify(manifest, null, 2)}\n`);
    }
    return imageId;
  }

  /** Launch instances in moto; each gets a clean SSM inventory (its image's packages) unless told otherwise. */
  async launch(imageId: string, tags: Record<string, string>, opts: { count?: number; inventory?: boolean } & Place = {}): Promise<Launched[]> {
    const count = opts.count ?? 1;
    const Tags: Tag[] = Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
    const { ec2 } = await this.clientsIn(opts);
    const out = await ec2.send(
      new RunInstancesCommand({
        ImageId: imageId,
        MinCount: count,
        MaxCount: count,
        InstanceType: 't3.micro',
        TagSpecifications: Tags.length ? [{ ResourceType: 'instance', Tags }] : undefined,
      }),
    );
    const launched = (out.Instances ?? []).map((i) => ({
      instanceId: i.InstanceId ?? '',
      launchTime: i.LaunchTime?.getTime() ?? Date.now(),
      privateIpAddress: i.PrivateIpAddress ?? '',
    }));
    if (opts.inventory !== false) for (const i of launched) this.cleanInventory(i.instanceId, new Date(), opts);
    return launched;
  }

  async launchOne(imageId: string, tags: Record<string, string>, opts: { inventory?: boolean } & Place = {}): Promise<Launched> {
    const [one] = await this.launch(imageId, tags, opts);
    if (!one) throw new Error('moto launched no instance');
    return one;
  }

  /** SSM Inventory equal to the baked Debian 12 list, captured now. */
  cleanInventory(instanceId: string, captureTime = new Date(), place: Place = {}): void {
    this.fake.ssm.inventory.set(instanceId, {
      account: place.account ?? ACCOUNT,
      region: place.region ?? REGION,
      captureTime: captureTime.toISOString(),
      content: debianPackages().map((p) => ({ Name: p.name, Version: p.version, Architecture: p.arch, Release: '', Epoch: '' })),
    });
  }

  /**
   * A fixture CloudTrail record (cloudtrail/NAME.json) re-aimed at `instanceId` at time `at`,
   * optionally by another caller. The fixture's own instance id is replaced wherever it appears.
   */
  trail(name: string, instanceId: string, at: number, actor?: { arn: string; roleArn?: string }, place: Place = {}): CloudTrailRecord {
    const account = place.account ?? ACCOUNT;
    const text = JSON.stringify(readFixtureJson(`cloudtrail/${name}.json`)).split(FIXTURE_INSTANCE).join(instanceId);
    const record = JSON.parse(text) as Record<string, unknown>;
    record['eventTime'] = new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
    record['eventID'] = `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`;
    record['recipientAccountId'] = account;
    record['awsRegion'] = place.region ?? REGION;
    if (actor) {
      record['userIdentity'] = {
        type: 'AssumedRole',
        arn: actor.arn,
        accountId: account,
        ...(actor.roleArn ? { sessionContext: { sessionIssuer: { type: 'Role', arn: actor.roleArn } } } : {}),
      };
    }
    this.fake.cloudtrail.records.push(record);
    return record;
  }
}

/** `pristine run --format json`: the report plus what the cycle did. */
export interface CycleReport extends AuditReport {
  actions: Array<{ instanceId: string; policy: string; action: { kind: string; reason?: string } }>;
  breakers: Array<{ policy: string; tainted: number; inScope: number; limitPercent: number }>;
  replacements: Array<{ id: number; oldInstanceId: string; newInstanceId: string | null; status: string; step: string; error: string | null }>;
}

/** The report fields the integration tests read. */
export interface AuditReport {
  version: number;
  complete: boolean;
  summary: { pristine: number; tainted: number; unknown: number; exempt: number; outOfScope: number };
  instances: Array<{
    instanceId: string;
    verdict: 'pristine' | 'tainted' | 'unknown';
    policy: string;
    imageId: string;
    findings: Array<{ detector: string; severity: string; summary: string; at: string | null; actor: string | null; evidence: Record<string, unknown> }>;
    gaps: Array<{ source: string; message: string }>;
  }>;
  errors: Array<{ source: string; message: string }>;
  warnings: Array<{ source: string; region?: string; message: string }>;
}

export function runCli(args: string[], env: Record<string, string>, cwd: string, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Wait until the clock has moved past `ms` (events must fall between launch and the audit). */
export async function after(ms: number): Promise<void> {
  const wait = ms - Date.now() + 50;
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
