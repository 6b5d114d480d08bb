/**
 * Benchmark of a cycle's judgement: a synthetic fleet built in memory, no AWS.
 *
 *   npm run bench                       # 10,000 instances, 50,000 CloudTrail records (5 an instance), 700 packages
 *   npm run bench -- --instances 2000 --json
 *   npm run bench -- --distinct-inventories 100    # every instance reports an inventory of its own
 *
 * The fleet: 20 recorded images and one unrecorded, most instances as their image built them, ~5%
 * drifted, some with no or stale inventory; GetInventory results carry SSM's ContentHash (a few do
 * not, and are fingerprinted by their packages). Records are generated in pages of 50, as LookupEvents
 * returns them, and each page is parsed as it comes.
 *
 * Phases of one cycle's judgement (their CPU is `totalCpuS`): normalise (the inventory catalog),
 * parse (as the LookupEvents collector reads a page: the tracked events' records to
 * recordsToEvidence, JSON.parse and activityFromRecord), attribute (ScopeJudge), evaluate (every
 * instance) and report (built, as every cycle builds it). Reported apart: json (the report written as
 * `audit`/`run --format json` write it, streamed into a counter), store (the evidence log and the
 * verdicts in a SQLite file), a second cycle ten minutes later over the same inventories and 1% more
 * records (`secondCycleCpuS`; its report is built, not written, as the daemon does), and 200 events
 * pushed between cycles, each re-judging the instance it names (`rejudgeMs`). Between the cycles the
 * daemon sleeps (`idle`, `idle2`: what V8 did meanwhile, in no cycle's figure). Generating data is
 * setup, marked so. A seeded PRNG makes every run the same fleet. Exits 1 when the verdicts look
 * implausible; `--dump FILE` writes every verdict and finding (the equivalence test compares them).
 */
// Loaded by bench.ts once the V8 tuning pristine runs with is in place (as the CLI: src/cli.ts).
import { appliedV8Flags } from '../src/runtime-tuning.js';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { createHash } from 'node:crypto';
import { InventoryCatalog } from '../src/evidence/sources/ssm-inventory/catalog.js';
import { recordsToEvidence } from '../src/evidence/records.js';
import { recordsOf, trackedOf, type LookupEvent } from '../src/evidence/sources/lookup-events/index.js';
import { TRACKED_EVENT_NAMES } from '../src/core/event-catalog.js';
import { ScopeJudge, type ScopeResult } from '../src/core/evaluate.js';
import { buildReport, type Report } from '../src/report/model.js';
import { jsonChunks } from '../src/report/json-stream.js';
import { verdictInputOf } from '../src/state/records.js';
import { SqliteStateStore } from '../src/state/sqlite/store.js';
import type { Activity, Instance, InventorySnapshot, ScopeFacts } from '../src/core/facts.js';
import type { Manifest, ManifestIndex } from '../src/manifest/types.js';
import { manifestKey } from '../src/manifest/types.js';
import { parsePolicyText } from '../src/policy/load.js';
import type { LoadedPolicy } from '../src/policy/schema.js';

// ---------------------------------------------------------------------------------------------
// Options

const { values: argv } = parseArgs({
  options: {
    instances: { type: 'string', default: '10000' },
    events: { type: 'string' },
    packages: { type: 'string', default: '700' },
    seed: { type: 'string', default: '20261121' },
    json: { type: 'boolean', default: false },
    dump: { type: 'string' },
    'distinct-inventories': { type: 'string', default: '0' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
  allowPositionals: false,
});

if (argv.help) {
  console.log('usage: tsx scripts/bench.ts [--instances N] [--events N] [--packages N] [--seed N] [--distinct-inventories PCT] [--json] [--dump FILE]');
  process.exit(0);
}

function positiveInt(name: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got "${text}"`);
    process.exit(2);
  }
  return n;
}

const N_INSTANCES = positiveInt('instances', argv.instances, 1);
// Five records an instance unless told: the fleet's density of activity stays the same at any size.
const N_EVENTS = argv.events === undefined ? N_INSTANCES * 5 : positiveInt('events', argv.events, 0);
const N_PACKAGES = positiveInt('packages', argv.packages, 10);
const SEED = positiveInt('seed', argv.seed, 0);
const DISTINCT_PCT = positiveInt('distinct-inventories', argv['distinct-inventories'], 0);
if (DISTINCT_PCT > 100) {
  console.error(`--distinct-inventories is a percentage, 0 to 100; got ${DISTINCT_PCT}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: a 32-bit state PRNG, plenty for repeatable synthetic data. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const rand = mulberry32(SEED);
/** integer in [lo, hi] */
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
const chance = (p: number): boolean => rand() < p;
const hex = (len: number): string => {
  let s = '';
  while (s.length < len) s += Math.floor(rand() * 0x1_0000_0000).toString(16).padStart(8, '0');
  return s.slice(0, len);
};
const uuid = (): string => `${hex(8)}-${hex(4)}-4${hex(3)}-${'89ab'[int(0, 3)]}${hex(3)}-${hex(12)}`;
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The world

const REGION = 'us-east-1';
const ACCOUNT = '111122223333';
/** The account and region the bench's collectors read. */
const SCOPE = { accountId: ACCOUNT, region: REGION };
const NOW = Date.parse('2026-11-21T12:00:00Z');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const WINDOW = { from: NOW - 14 * DAY, to: NOW };
const N_AMIS = 20;

/** The policies shipped in policies/immutable.yaml: the first policy whose scope matches judges the instance. */
// Run from scripts/ (tsx) or from .bench/scripts/ (compiled, as `npm run bench` does).
const POLICY_FILE = [new URL('../policies/immutable.yaml', import.meta.url), new URL('../../policies/immutable.yaml', import.meta.url)]
  .map((u) => fileURLToPath(u))
  .find((f) => existsSync(f)) as string;

// ---------------------------------------------------------------------------------------------
// Packages: dpkg-style names and versions

const TOOLS = [
  'acl', 'adduser', 'apt', 'apt-utils', 'base-files', 'base-passwd', 'bash', 'bsdutils', 'ca-certificates', 'chrony',
  'cloud-guest-utils', 'cloud-init', 'coreutils', 'cpio', 'cron', 'curl', 'dash', 'dbus', 'debconf', 'debianutils',
  'diffutils', 'dmidecode', 'dmsetup', 'dpkg', 'e2fsprogs', 'ethtool', 'fdisk', 'file', 'findutils', 'gawk', 'gettext-base',
  'gnupg', 'gpgv', 'grep', 'groff-base', 'grub-common', 'gzip', 'hostname', 'ifupdown', 'init', 'init-system-helpers',
  'iproute2', 'iptables', 'iputils-ping', 'isc-dhcp-client', 'kmod', 'less', 'locales', 'login', 'logrotate', 'lsb-release',
  'lsof', 'man-db', 'mawk', 'mount', 'nano', 'ncurses-base', 'ncurses-bin', 'netbase', 'nginx', 'nginx-common', 'openssh-client',
  'openssh-server', 'openssh-sftp-server', 'openssl', 'passwd', 'perl', 'perl-base', 'procps', 'python3', 'python3-minimal',
  'readline-common', 'rsyslog', 'sed', 'sensible-utils', 'sudo', 'systemd', 'systemd-sysv', 'systemd-timesyncd', 'sysvinit-utils',
  'tar', 'tzdata', 'udev', 'unattended-upgrades', 'usrmerge', 'util-linux', 'vim-common', 'vim-tiny', 'wget', 'whiptail',
  'xz-utils', 'zstd', 'amazon-ssm-agent', 'ec2-instance-connect', 'unzip', 'zip', 'rsync', 'git', 'git-man', 'make',
];
const LIB_STEMS = [
  'acl', 'apparmor', 'apt-pkg', 'attr', 'audit', 'blkid', 'bpf', 'brotli', 'bsd', 'bz2', 'cap', 'cap-ng', 'cbor', 'com-err',
  'crypt', 'cryptsetup', 'curl', 'db5.3', 'dbus', 'debconfclient', 'device-mapper', 'edit', 'elf', 'expat', 'ext2fs', 'fdisk',
  'ffi', 'fido2', 'freetype', 'fontconfig', 'fstrm', 'gcc-s', 'gcrypt', 'gdbm', 'glib2.0', 'gmp', 'gnutls', 'gpg-error',
  'gssapi-krb5', 'hogweed', 'icu', 'idn2', 'ip4tc', 'jansson', 'jpeg62-turbo', 'json-c', 'k5crypto', 'keyutils', 'kmod',
  'krb5support', 'ksba', 'ldap', 'lmdb', 'lz4', 'lzma', 'magic', 'maxminddb', 'mnl', 'mount', 'mpfr', 'ncursesw', 'netfilter-conntrack',
  'nettle', 'nfnetlink', 'nftables', 'nghttp2', 'npth', 'nss-systemd', 'p11-kit', 'pam', 'pcre2', 'pcre', 'png16', 'popt', 'psl',
  'python3.11', 'readline', 'rtmp', 'sasl2', 'seccomp', 'selinux', 'semanage', 'sepol', 'slang', 'smartcols', 'sqlite3', 'ss',
  'ssh2', 'ssl', 'stdc++', 'systemd', 'tasn1', 'tinfo', 'tirpc', 'udev', 'unistring', 'uuid', 'uv', 'xml2', 'xtables', 'xxhash',
  'yaml', 'zstd', 'z',
];
const PY_MODULES = [
  'apt', 'attr', 'certifi', 'chardet', 'configobj', 'cryptography', 'dbus', 'debconf', 'debian', 'distro', 'idna', 'jinja2',
  'jsonpatch', 'jsonpointer', 'jsonschema', 'markupsafe', 'netifaces', 'oauthlib', 'pkg-resources', 'requests', 'serial',
  'six', 'urllib3', 'yaml', 'jwt', 'blinker', 'pyrsistent', 'zipp', 'importlib-metadata', 'httplib2', 'pyparsing', 'setuptools',
];
const PERL_MODULES = [
  'text-charwidth', 'text-iconv', 'text-wrapi18n', 'locale-gettext', 'term-readkey', 'error', 'json', 'yaml-libyaml', 'uri',
  'html-parser', 'http-date', 'io-socket-ssl', 'net-ssleay', 'timedate', 'try-tiny', 'encode-locale', 'file-listing',
];
/** Packages an operator might install by hand on a drifted box. */
const HAND_INSTALLED = ['tcpdump', 'strace', 'gdb', 'htop', 'netcat-openbsd', 'telnet', 'nmap', 'ltrace', 'socat', 'jq', 'emacs-nox', 'iotop'];

function upstreamVersion(): string {
  const shape = rand();
  if (shape < 0.5) return `${int(0, 9)}.${int(0, 40)}.${int(0, 20)}`;
  if (shape < 0.7) return `${int(1, 300)}.${int(0, 20)}`;
  if (shape < 0.8) return `${int(0, 5)}.${int(0, 30)}.${int(0, 9)}+dfsg`;
  if (shape < 0.9) return `${int(2015, 2025)}${String(int(1, 12)).padStart(2, '0')}${String(int(1, 28)).padStart(2, '0')}`;
  return `${int(1, 9)}.${int(0, 9)}p${int(1, 3)}`;
}

function debianVersion(): string {
  const epoch = chance(0.06) ? `${int(1, 3)}:` : '';
  const suffix = chance(0.3) ? `+deb12u${int(1, 9)}` : chance(0.05) ? `~bpo12+1` : '';
  const revision = chance(0.1) ? '' : `-${int(1, 12)}${suffix}`;
  return `${epoch}${upstreamVersion()}${revision}`;
}

/** A security update of the same package: the next +deb12uN. */
function bumped(version: string): string {
  const m = /\+deb12u(\d+)$/.exec(version);
  if (m) return `${version.slice(0, m.index)}+deb12u${Number(m[1]) + 1}`;
  return version.includes('-') ? `${version}+deb12u1` : `${version}-1+deb12u1`;
}

interface PoolEntry {
  name: string;
  version: string;
  arch: string;
}

/** At least `size` distinct package names, each with a base version. */
function packagePool(size: number): PoolEntry[] {
  const names = new Set<string>();
  for (const t of TOOLS) names.add(t);
  for (const m of PY_MODULES) names.add(`python3-${m}`);
  for (const m of PERL_MODULES) names.add(`lib${m}-perl`);
  for (const s of LIB_STEMS) {
    names.add(`lib${s}${/\d$/.test(s) ? '-' : ''}${int(0, 6)}`);
    if (chance(0.6)) names.add(`lib${s}-dev`);
    if (chance(0.3)) names.add(`lib${s}-common`);
    if (chance(0.2)) names.add(`lib${s}-data`);
  }
  const variants = ['-bin', '-utils', '-doc', '-tools', '-dbg', '-l10n'];
  for (let round = 0; names.size < size; round++) {
    for (const s of LIB_STEMS) {
      if (names.size >= size) break;
      names.add(round < variants.length ? `lib${s}${variants[round]}` : `lib${s}-extra${round}`);
    }
  }
  return [...names].map((name) => ({
    name,
    version: debianVersion(),
    arch: name.startsWith('python3-') || name.endsWith('-perl') || name.endsWith('-doc') || name.endsWith('-common') || name.endsWith('-data') ? 'all' : 'amd64',
  }));
}

/** SSM Inventory's AWS:Application entries for dpkg packages: sometimes the epoch is split out. */
function inventoryRow(p: PoolEntry): Record<string, string> {
  const m = /^(\d+):(.*)$/.exec(p.version);
  const split = m !== null && chance(0.5);
  const version = split && m ? (m[2] ?? '') : p.version;
  return {
    Name: p.name,
    Version: version,
    Epoch: split && m ? (m[1] ?? '') : '',
    Release: '',
    Architecture: p.arch,
    ApplicationType: 'admin',
    Publisher: 'Debian',
    InstalledTime: '2026-11-01T10:00:00Z',
    PackageId: `${p.name}_${version}_${p.arch}.deb`,
  };
}

// ---------------------------------------------------------------------------------------------
// Fleet

interface Ami {
  imageId: string;
  manifest: Manifest | null;
  rows: Array<Record<string, string>>;
}

function buildAmis(pool: PoolEntry[]): Ami[] {
  const core = pool.slice(0, Math.min(pool.length, Math.round(N_PACKAGES * 0.85)));
  const rest = pool.slice(core.length);
  const amis: Ami[] = [];
  // One image more than the manifests: instances on it are "unrecorded".
  for (let k = 0; k <= N_AMIS; k++) {
    const imageId = `ami-0${hex(16)}`;
    const kernelAbi = 20 + k;
    const kernel: PoolEntry[] = [
      { name: `linux-image-6.1.0-${kernelAbi}-cloud-amd64`, version: `6.1.${100 + k}-1`, arch: 'amd64' },
      { name: 'linux-image-cloud-amd64', version: `6.1.${100 + k}-1`, arch: 'amd64' },
    ];
    const extra = shuffled(rest).slice(0, Math.max(0, N_PACKAGES - core.length - kernel.length));
    const packages = [...core, ...extra]
      .slice(0, N_PACKAGES - kernel.length)
      .map((p) => (chance(0.1) ? { ...p, version: bumped(p.version) } : p))
      .concat(kernel)
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    const manifest: Manifest | null =
      k === N_AMIS
        ? null
        : {
            imageId,
            region: REGION,
            name: `web-${k}`,
            builtAt: new Date(WINDOW.from - (30 - k) * DAY).toISOString(),
            packageManager: 'dpkg',
            packages,
            file: `manifests/web-${k}.json`,
          };
    amis.push({ imageId, manifest, rows: packages.map(inventoryRow) });
  }
  return amis;
}

interface FleetPlan {
  instances: Instance[];
  /** which image each instance runs, by instance index */
  amiOf: Ami[];
  /** instances human activity concentrates on (pets) */
  hot: Instance[];
  exempt: Instance[];
  drifted: Set<number>;
  /** the drifted instance whose drift is never only the (ignored) kernel, so small runs still taint */
  firstDrifted: number;
  asgMembers: Map<string, Instance[]>;
}

function buildInstances(amis: Ami[]): FleetPlan {
  const instances: Instance[] = [];
  const amiOf: Ami[] = [];
  const asgMembers = new Map<string, Instance[]>();
  for (let n = 0; n < N_INSTANCES; n++) {
    const roll = rand();
    const ami = chance(0.01) ? (amis[N_AMIS] as Ami) : (amis[int(0, N_AMIS - 1)] as Ami);
    const launchTime = chance(0.02) ? WINDOW.from - int(1, 10) * DAY : WINDOW.from + HOUR + Math.floor(rand() * (13 * DAY - 2 * HOUR));
    const id = `i-0${((n * 2_654_435_761) >>> 0).toString(16).padStart(8, '0')}${n.toString(16).padStart(8, '0')}`;
    const tags: Record<string, string> = { env: 'prod' };
    let asg: string | null = null;
    if (roll < 0.85) {
      asg = `web-asg-${int(1, 40)}`;
      Object.assign(tags, { role: 'web', Name: `web-${n}`, 'aws:autoscaling:groupName': asg });
    } else if (roll < 0.95) {
      Object.assign(tags, { role: 'batch', Name: `batch-${n}`, 'pristine:managed': 'true' });
    } else {
      Object.assign(tags, { role: 'bastion', Name: `bastion-${n}` });
    }
    if (roll < 0.95 && chance(0.03)) tags['pristine:exempt'] = 'true';
    const instance: Instance = {
      instanceId: id,
      region: REGION,
      accountId: ACCOUNT,
      imageId: ami.imageId,
      launchTime,
      firstLaunch: launchTime,
      state: 'running',
      name: tags['Name'] ?? null,
      tags,
      privateIpAddress: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
      vpcId: 'vpc-0bench',
      privateIpAddresses: [`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`],
      networkInterfaceIds: [`eni-${id.slice(2)}`],
      volumeIds: [`vol-${id.slice(2)}`],
      autoScalingGroup: asg,
    };
    instances.push(instance);
    amiOf.push(ami);
    if (asg) {
      const members = asgMembers.get(asg);
      if (members) members.push(instance);
      else asgMembers.set(asg, [instance]);
    }
  }
  const order = shuffled(instances.map((_, i) => i));
  const nDrift = Math.max(1, Math.round(N_INSTANCES * 0.05));
  const nHot = Math.max(1, Math.round(N_INSTANCES * 0.12));
  return {
    instances,
    amiOf,
    drifted: new Set(order.slice(0, nDrift)),
    firstDrifted: order[0] ?? 0,
    hot: shuffled(instances).slice(0, nHot),
    exempt: instances.filter((i) => i.tags['pristine:exempt'] === 'true'),
    asgMembers,
  };
}

/** An instance's AWS:Application rows: its image's, with some changes on ~5% of instances. */
function inventoryRowsFor(ami: Ami, drifted: boolean, kernelOnlyAllowed: boolean): Array<Record<string, string>> {
  if (!drifted) return ami.rows;
  const rows = [...ami.rows];
  if (kernelOnlyAllowed && chance(0.2)) {
    // Only the kernel moved (unattended-upgrades): ignored by policy, the instance stays pristine.
    const i = rows.findIndex((r) => r['Name'] === 'linux-image-cloud-amd64');
    const old = rows[i];
    if (old) rows[i] = { ...old, Version: bumped(old['Version'] ?? '') };
    rows.push({ ...(old ?? {}), Name: 'linux-image-6.1.0-99-cloud-amd64', Version: '6.1.140-1' });
    return rows;
  }
  for (let c = int(1, 3); c > 0; c--) {
    const i = int(0, rows.length - 1);
    const old = rows[i] as Record<string, string>;
    rows[i] = { ...old, Version: bumped(old['Version'] ?? '') };
  }
  for (let c = int(0, 2); c > 0; c--) rows.splice(int(0, rows.length - 1), 1);
  for (let c = int(0, 2); c > 0; c--) {
    rows.push(inventoryRow({ name: pick(HAND_INSTALLED), version: debianVersion(), arch: 'amd64' }));
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// CloudTrail records

interface Caller {
  role: string;
  session: string;
}
const HUMANS: Caller[] = [
  { role: 'Admin', session: 'alice' },
  { role: 'Admin', session: 'bob' },
  { role: 'Developer', session: 'carol' },
  { role: 'Developer', session: 'mallory' },
  { role: 'Ops', session: 'dave' },
  { role: 'Ops', session: 'erin' },
];
const DEPLOYERS: Caller[] = [
  { role: 'DeployerCI', session: 'codebuild-web' },
  { role: 'Deployer-prod', session: 'spinnaker' },
];
const SSM_SERVICE: Caller = { role: 'AWSServiceRoleForAmazonSSM', session: 'ssm-inventory' };

const cloudTrailTime = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function userIdentity(c: Caller): Record<string, unknown> {
  const principalId = `AROA${hex(16).toUpperCase()}`;
  return {
    type: 'AssumedRole',
    principalId: `${principalId}:${c.session}`,
    arn: `arn:aws:sts::${ACCOUNT}:assumed-role/${c.role}/${c.session}`,
    accountId: ACCOUNT,
    accessKeyId: `ASIA${hex(16).toUpperCase()}`,
    sessionContext: {
      sessionIssuer: { type: 'Role', principalId, arn: `arn:aws:iam::${ACCOUNT}:role/${c.role}`, accountId: ACCOUNT, userName: c.role },
      attributes: { creationDate: cloudTrailTime(NOW - 20 * DAY), mfaAuthenticated: 'true' },
    },
  };
}

function record(
  c: Caller,
  at: number,
  eventSource: string,
  eventName: string,
  requestParameters: Record<string, unknown> | null,
  responseElements: Record<string, unknown> | null,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const host = eventSource.replace('.amazonaws.com', '');
  return {
    eventVersion: '1.09',
    userIdentity: userIdentity(c),
    eventTime: cloudTrailTime(at),
    eventSource,
    eventName,
    awsRegion: REGION,
    sourceIPAddress: `203.0.113.${int(1, 254)}`,
    userAgent: 'aws-cli/2.15.30 Python/3.11.8 Linux/6.5 exe/x86_64.ubuntu.22',
    requestParameters,
    responseElements,
    requestID: uuid(),
    eventID: uuid(),
    readOnly: false,
    eventType: 'AwsApiCall',
    managementEvent: true,
    recipientAccountId: ACCOUNT,
    eventCategory: 'Management',
    tlsDetails: { tlsVersion: 'TLSv1.3', cipherSuite: 'TLS_AES_128_GCM_SHA256', clientProvidedHostHeader: `${host}.${REGION}.amazonaws.com` },
    ...extra,
  };
}

const sendCommandResponse = (commandId: string, documentName: string, instanceIds: string[], targets: unknown[]) => ({
  command: {
    commandId,
    documentName,
    documentVersion: '$DEFAULT',
    comment: '',
    parameters: 'HIDDEN_DUE_TO_SECURITY_REASONS',
    instanceIds,
    targets,
    status: 'Pending',
    statusDetails: 'Pending',
    maxConcurrency: '50',
    maxErrors: '0',
    targetCount: instanceIds.length,
    completedCount: 0,
    errorCount: 0,
    timeoutSeconds: 3600,
  },
});

type EventKind =
  | 'start-session'
  | 'resume-session'
  | 'send-command-ids'
  | 'send-command-asg'
  | 'send-command-name'
  | 'deployer-command-ids'
  | 'deployer-command-role'
  | 'inventory-command'
  | 'ssh-key'
  | 'modify-attribute'
  | 'attach-volume'
  | 'deployer-modify'
  | 'tag-guard'
  | 'tag-exempt'
  | 'tag-other'
  | 'tag-volume'
  | 'noise'
  | 'failed';

/** Mix of the 50,000 records; human actions land mostly on the "hot" instances. */
const EVENT_MIX: Array<[EventKind, number]> = [
  ['start-session', 12],
  ['resume-session', 2],
  ['send-command-ids', 10],
  ['send-command-asg', 0.01],
  ['send-command-name', 1],
  ['deployer-command-ids', 20],
  ['deployer-command-role', 0.4],
  ['inventory-command', 8],
  ['ssh-key', 5],
  ['modify-attribute', 3],
  ['attach-volume', 3],
  ['deployer-modify', 8],
  ['tag-guard', 0.5],
  ['tag-exempt', 0.5],
  ['tag-other', 9.6],
  ['tag-volume', 2],
  ['noise', 12],
  ['failed', 3],
];
const MIX_TOTAL = EVENT_MIX.reduce((s, [, w]) => s + w, 0);

function eventKind(): EventKind {
  let r = rand() * MIX_TOTAL;
  for (const [kind, w] of EVENT_MIX) {
    r -= w;
    if (r < 0) return kind;
  }
  return 'noise';
}

interface Trail {
  /** the events as LookupEvents returns them: each record one JSON string, its name beside it */
  events: LookupEvent[];
  /** command id -> instance ids, as ListCommandInvocations would report them (only some commands) */
  commandTargets: Map<string, string[]>;
  byKind: Map<EventKind, number>;
}

/**
 * A page of records as the collector gets them (src/evidence/sources/lookup-events): LookupEvents
 * answers with a JSON body whose every event carries its record as a JSON string (`CloudTrailEvent`),
 * and the SDK reads that body with JSON.parse. The strings handed on are the ones JSON.parse makes,
 * each one flat. JSON.stringify's own results are ropes of the pieces it wrote, which JSON.parse has
 * to flatten first (0.05 to 0.07 CPU-s for 50,000 records here): a cost the collector never pays, so
 * not the bench's.
 */
function asLookupEventsReturnsThem(records: ReadonlyArray<Record<string, unknown>>): LookupEvent[] {
  const body = JSON.stringify({
    Events: records.map((r) => ({
      EventId: r['eventID'],
      EventName: r['eventName'],
      EventSource: r['eventSource'],
      EventTime: Date.parse(r['eventTime'] as string) / 1000,
      CloudTrailEvent: JSON.stringify(r),
    })),
  });
  return (JSON.parse(body) as { Events: LookupEvent[] }).Events;
}

/**
 * `count` CloudTrail records. With `onPage`, each page of 50 is handed over as it is made (as the
 * LookupEvents collector reads a page as it comes) and not kept: the raw JSON of a whole window never
 * sits in memory.
 */
function buildTrail(plan: FleetPlan, count: number, onPage?: (page: LookupEvent[]) => void): Trail {
  const events: LookupEvent[] = [];
  const page: Array<Record<string, unknown>> = [];
  /** The page made so far, handed on (or kept, without `onPage`) as LookupEvents would return it. */
  const flush = (): void => {
    const records = asLookupEventsReturnsThem(page.splice(0));
    if (onPage) onPage(records);
    else events.push(...records);
  };
  const commandTargets = new Map<string, string[]>();
  const byKind = new Map<EventKind, number>();
  const sessions: string[] = [];
  const webInstances = plan.instances.filter((i) => i.tags['role'] === 'web');
  const asgs = [...plan.asgMembers.keys()];

  /** A target for a human action: mostly a hot instance. */
  const humanTarget = () => (chance(0.9) ? pick(plan.hot) : pick(plan.instances));
  /** After the instance's launch mostly; ~10% of events happened before it (they must not count). */
  const timeFor = (i: Instance) => {
    const start = Math.max(i.launchTime, WINDOW.from);
    if (chance(0.1) && i.launchTime > WINDOW.from) return WINDOW.from + Math.floor(rand() * (i.launchTime - WINDOW.from));
    return start + 1000 + Math.floor(rand() * (NOW - start - 2000));
  };
  const anyTime = () => WINDOW.from + Math.floor(rand() * (NOW - WINDOW.from));

  for (let e = 0; e < count; e++) {
    let kind = eventKind();
    if (kind === 'resume-session' && sessions.length === 0) kind = 'start-session';
    if (kind === 'tag-exempt' && plan.exempt.length === 0) kind = 'tag-guard';
    if (kind === 'send-command-asg' && asgs.length === 0) kind = 'send-command-ids';
    if (kind === 'deployer-command-role' && webInstances.length === 0) kind = 'deployer-command-ids';
    byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    let r: Record<string, unknown>;
    switch (kind) {
      case 'start-session': {
        const i = humanTarget();
        const c = pick(HUMANS);
        const sessionId = `${c.session}-${hex(17)}`;
        sessions.push(sessionId);
        const portForward = chance(0.2);
        r = record(
          c,
          timeFor(i),
          'ssm.amazonaws.com',
          'StartSession',
          portForward
            ? { target: i.instanceId, documentName: 'AWS-StartPortForwardingSession', parameters: { portNumber: ['5432'], localPortNumber: ['15432'] } }
            : { target: i.instanceId },
          {
            sessionId,
            tokenValue: 'Value hidden due to security reasons.',
            streamUrl: `wss://ssmmessages.${REGION}.amazonaws.com/v1/data-channel/${sessionId}?role=publish_subscribe`,
          },
        );
        break;
      }
      case 'resume-session': {
        const sessionId = pick(sessions);
        r = record(pick(HUMANS), anyTime(), 'ssm.amazonaws.com', 'ResumeSession', { sessionId }, { sessionId, tokenValue: 'Value hidden due to security reasons.' });
        break;
      }
      case 'send-command-ids':
      case 'deployer-command-ids':
      case 'inventory-command': {
        const human = kind === 'send-command-ids';
        const targets = Array.from({ length: human ? int(1, 3) : int(1, 20) }, () => (human ? humanTarget() : pick(plan.instances)));
        const ids = [...new Set(targets.map((i) => i.instanceId))];
        const doc = kind === 'inventory-command' ? 'AWS-GatherSoftwareInventory' : human ? pick(['AWS-RunShellScript', 'AWS-RunPatchBaseline']) : 'Deploy-WebApp';
        const caller = kind === 'inventory-command' ? SSM_SERVICE : human ? pick(HUMANS) : pick(DEPLOYERS);
        r = record(
          caller,
          timeFor(targets[0] as Instance),
          'ssm.amazonaws.com',
          'SendCommand',
          { instanceIds: ids, documentName: doc, parameters: 'HIDDEN_DUE_TO_SECURITY_REASONS', interactive: false },
          sendCommandResponse(uuid(), doc, ids, []),
        );
        break;
      }
      case 'send-command-asg':
      case 'send-command-name':
      case 'deployer-command-role': {
        const human = kind !== 'deployer-command-role';
        const named = kind === 'send-command-name' ? Array.from({ length: int(1, 3) }, humanTarget) : [];
        const targets =
          kind === 'send-command-asg'
            ? [{ key: 'tag:aws:autoscaling:groupName', values: [pick(asgs)] }]
            : kind === 'send-command-name'
              ? [{ key: 'tag:Name', values: [...new Set(named.map((i) => i.tags['Name'] ?? ''))] }]
              : [{ key: 'tag:role', values: ['web'] }];
        const commandId = uuid();
        const at = anyTime();
        const doc = human ? 'AWS-RunShellScript' : 'Deploy-WebApp';
        r = record(
          human ? pick(HUMANS) : pick(DEPLOYERS),
          at,
          'ssm.amazonaws.com',
          'SendCommand',
          { targets, documentName: doc, parameters: 'HIDDEN_DUE_TO_SECURITY_REASONS', interactive: false },
          sendCommandResponse(commandId, doc, [], targets),
        );
        // Half the commands' invocations are known (ListCommandInvocations); the rest resolve by tags.
        if (chance(0.5)) {
          const members =
            kind === 'send-command-asg' ? (plan.asgMembers.get(targets[0]?.values[0] ?? '') ?? []) : kind === 'send-command-name' ? named : webInstances;
          commandTargets.set(commandId, members.filter((i) => i.launchTime < at).map((i) => i.instanceId));
        }
        break;
      }
      case 'ssh-key': {
        const i = humanTarget();
        const c = pick(HUMANS);
        r = record(
          c,
          timeFor(i),
          'ec2-instance-connect.amazonaws.com',
          'SendSSHPublicKey',
          { instanceId: i.instanceId, instanceOSUser: pick(['ec2-user', 'admin', 'ubuntu']), sSHPublicKey: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${hex(43)} ${c.session}@laptop` },
          { requestId: uuid(), success: true },
        );
        break;
      }
      case 'modify-attribute':
      case 'attach-volume':
      case 'deployer-modify': {
        const deployer = kind === 'deployer-modify';
        const i = deployer ? pick(plan.instances) : humanTarget();
        const attach = kind === 'attach-volume' || (deployer && chance(0.5));
        const volumeId = `vol-0${hex(16)}`;
        r = attach
          ? record(
              deployer ? pick(DEPLOYERS) : pick(HUMANS),
              timeFor(i),
              'ec2.amazonaws.com',
              'AttachVolume',
              { volumeId, instanceId: i.instanceId, device: '/dev/sdf', deleteOnTermination: false },
              { requestId: uuid(), volumeId, instanceId: i.instanceId, device: '/dev/sdf', status: 'attaching', attachTime: timeFor(i), deleteOnTermination: false },
            )
          : record(
              deployer ? pick(DEPLOYERS) : pick(HUMANS),
              timeFor(i),
              'ec2.amazonaws.com',
              'ModifyInstanceAttribute',
              pick([
                { instanceId: i.instanceId, instanceType: { value: pick(['m6i.large', 'm6i.xlarge', 'c6i.2xlarge']) } },
                { instanceId: i.instanceId, disableApiTermination: { value: true } },
                { instanceId: i.instanceId, userData: '<sensitiveDataRemoved>' },
              ]),
              { requestId: uuid(), _return: true },
            );
        break;
      }
      case 'tag-guard':
      case 'tag-exempt':
      case 'tag-other': {
        // Exemption tags set by a deployer are allowed; by anyone else they are tampering.
        const i = kind === 'tag-exempt' ? pick(plan.exempt) : kind === 'tag-guard' ? humanTarget() : pick(plan.instances);
        const key = kind === 'tag-exempt' ? 'pristine:exempt' : kind === 'tag-guard' ? pick(['pristine:managed', 'pristine:note']) : pick(['Owner', 'CostCenter', 'Patch-Group']);
        const caller = kind === 'tag-exempt' && chance(0.5) ? pick(DEPLOYERS) : pick([...HUMANS, ...DEPLOYERS]);
        r = record(
          caller,
          timeFor(i),
          'ec2.amazonaws.com',
          'CreateTags',
          { resourcesSet: { items: [{ resourceId: i.instanceId }] }, tagSet: { items: [{ key, value: key.startsWith('pristine:') ? 'true' : `team-${int(1, 9)}` }] } },
          { requestId: uuid(), _return: true },
        );
        break;
      }
      case 'tag-volume':
        r = record(
          pick(HUMANS),
          anyTime(),
          'ec2.amazonaws.com',
          'CreateTags',
          { resourcesSet: { items: [{ resourceId: `vol-0${hex(16)}` }] }, tagSet: { items: [{ key: 'Backup', value: 'daily' }] } },
          { requestId: uuid(), _return: true },
        );
        break;
      case 'noise':
        r = chance(0.8)
          ? record(pick(HUMANS), anyTime(), 'ec2.amazonaws.com', 'DescribeInstances', { instancesSet: {}, filterSet: {} }, null, { readOnly: true })
          : record(pick(DEPLOYERS), anyTime(), 'ec2.amazonaws.com', 'RunInstances', { instancesSet: { items: [{ imageId: pick(plan.amiOf).imageId, minCount: 1, maxCount: 1 }] } }, null);
        break;
      case 'failed': {
        const i = humanTarget();
        r = record(pick(HUMANS), timeFor(i), 'ssm.amazonaws.com', 'StartSession', { target: i.instanceId }, null, {
          errorCode: 'AccessDeniedException',
          errorMessage: 'User is not authorized to perform: ssm:StartSession',
        });
        break;
      }
    }
    page.push(r);
    if (page.length === 50) flush();
  }
  if (page.length > 0) flush();
  return { events, commandTargets, byKind };
}

// ---------------------------------------------------------------------------------------------
// Timing

interface Row {
  /** short name, the key in --json */
  key: string;
  phase: string;
  start: number;
  ms: number;
  cpuS: number;
  setup: boolean;
  /** the daemon asleep between cycles (see `idle`): part of neither cycle's figure */
  idle?: boolean;
  /** resident set size when the phase ended */
  rssMiB: number;
  /** for a phase timed in pieces: when each ran */
  spans?: Array<[number, number]>;
}
const rows: Row[] = [];

// Main-thread GC pauses, attributed to phases afterwards by their start time.
const gcPauses: PerformanceEntry[] = [];
const gcObserver = new PerformanceObserver((list) => gcPauses.push(...list.getEntries()));
gcObserver.observe({ entryTypes: ['gc'] });

function timed<T>(key: string, phase: string, fn: () => T, setup = false): T {
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const out = fn();
  const ms = performance.now() - start;
  const cpu = process.cpuUsage(cpu0);
  rows.push({ key, phase, start, ms, cpuS: (cpu.user + cpu.system) / 1e6, setup, rssMiB: process.memoryUsage.rss() / 1048576 });
  return out;
}

/** A phase that awaits (the state store's port is async): timed from start to end. */
async function timedAsync<T>(key: string, phase: string, fn: () => Promise<T>): Promise<T> {
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const out = await fn();
  const ms = performance.now() - start;
  const cpu = process.cpuUsage(cpu0);
  rows.push({ key, phase, start, ms, cpuS: (cpu.user + cpu.system) / 1e6, setup: false, rssMiB: process.memoryUsage.rss() / 1048576 });
  return out;
}

/**
 * The daemon asleep between cycles (for minutes): V8 does then what a cycle left it, such as marking
 * the heap the cycle grew past its limit, or sweeping. The bench lets the event loop idle until it is
 * quiet (25 ms with under 1 ms of CPU; at most 2 s) and shows that CPU on its own row: the daemon pays
 * it, in neither cycle's figure. Back to back, without this, the next cycle would be charged for
 * the previous one's collection in some runs and not in others.
 */
async function idle(key: string, phase: string): Promise<void> {
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  for (;;) {
    const slice = process.cpuUsage();
    await new Promise((resolve) => setTimeout(resolve, 25));
    const used = process.cpuUsage(slice);
    if (used.user + used.system < 1000 || performance.now() - start > 2000) break;
  }
  const cpu = process.cpuUsage(cpu0);
  rows.push({ key, phase, start, ms: performance.now() - start, cpuS: (cpu.user + cpu.system) / 1e6, setup: false, idle: true, rssMiB: process.memoryUsage.rss() / 1048576 });
}

/**
 * A phase timed in pieces, between which untimed work runs (generating the next page of records):
 * its wall and CPU time are the pieces' sum.
 */
function pieces(key: string, phase: string): { run<T>(fn: () => T): T; done(): void } {
  const row: Row = { key, phase, start: performance.now(), ms: 0, cpuS: 0, setup: false, rssMiB: 0, spans: [] };
  return {
    run<T>(fn: () => T): T {
      const cpu0 = process.cpuUsage();
      const start = performance.now();
      const out = fn();
      const end = performance.now();
      const cpu = process.cpuUsage(cpu0);
      row.ms += end - start;
      row.cpuS += (cpu.user + cpu.system) / 1e6;
      row.spans?.push([start, end]);
      return out;
    },
    done() {
      row.rssMiB = process.memoryUsage.rss() / 1048576;
      rows.push(row);
    },
  };
}

const gcMsIn = (r: Row): number =>
  gcPauses
    .filter((e) => (r.spans ?? [[r.start, r.start + r.ms]]).some(([a, b]) => e.startTime >= a && e.startTime < b))
    .reduce((s, e) => s + e.duration, 0);

const fmt = (n: number): string => n.toLocaleString('en-US');

// ---------------------------------------------------------------------------------------------
// Run

function loadPolicies(): LoadedPolicy[] {
  const parsed = parsePolicyText(readFileSync(POLICY_FILE, 'utf8'), POLICY_FILE);
  if (parsed.problems.length > 0) throw new Error(`bench policy does not load:\n${parsed.problems.join('\n')}`);
  return parsed.policies;
}

const policies = loadPolicies();

const { amis, plan } = timed(
  'build',
  `build ${fmt(N_INSTANCES)} instances, ${N_AMIS} manifests`,
  () => {
    const amis = buildAmis(packagePool(Math.max(N_PACKAGES + 200, Math.round(N_PACKAGES * 1.3))));
    return { amis, plan: buildInstances(amis) };
  },
  true,
);

const manifests: ManifestIndex = new Map(
  amis.flatMap((a) => (a.manifest ? [[manifestKey(REGION, a.imageId), a.manifest] as [string, Manifest]] : [])),
);

/**
 * GetInventory's results as the collector receives them: ~1% of instances have none, ~1% a stale one.
 * Instances that did not drift report their image's rows, and SSM's ContentHash says so; a drifted one
 * has rows of its own. One in a thousand carries no ContentHash (fingerprinted by its packages, so
 * normalised every cycle), and --distinct-inventories makes that share of instances report an
 * inventory no other instance has.
 */
interface InventoryEntity {
  instanceId: string;
  captureTime: number;
  contentHash: string | null;
  rows: Array<Record<string, string>>;
}
const contentHash = (rows: ReadonlyArray<Record<string, string>>): string => createHash('md5').update(JSON.stringify(rows)).digest('hex');
const amiHashes = new Map(amis.map((a) => [a, contentHash(a.rows)]));
const distinctRand = mulberry32(SEED ^ 0x5eed);
const entities: InventoryEntity[] = timed(
  'inventories',
  `generate ${fmt(N_INSTANCES)} GetInventory results`,
  () =>
    plan.instances.flatMap((instance, n) => {
      if (chance(0.01)) return [];
      const captureTime = chance(0.01) ? NOW - int(72, 200) * HOUR : NOW - int(1, 12) * HOUR;
      const ami = plan.amiOf[n] as Ami;
      let rows = inventoryRowsFor(ami, plan.drifted.has(n), n !== plan.firstDrifted);
      let hash = rows === ami.rows ? (amiHashes.get(ami) as string) : contentHash(rows);
      if (distinctRand() * 100 < DISTINCT_PCT) {
        // Same packages, but reported at another time: a content (and a hash) of its own.
        rows = [...rows];
        rows[0] = { ...(rows[0] as Record<string, string>), InstalledTime: new Date(NOW - n * 1000).toISOString() };
        hash = `${hash}-${n}`;
      }
      return [{ instanceId: instance.instanceId, captureTime, contentHash: n % 1009 === 13 ? null : hash, rows }];
    }),
  true,
);

/** Normalise every inventory, through the catalog the collector keeps between cycles. */
function normalise(catalog: InventoryCatalog): Map<string, InventorySnapshot> {
  const out = new Map<string, InventorySnapshot>();
  for (const e of entities) out.set(e.instanceId, catalog.snapshot(e.instanceId, e.captureTime, e.rows, e.contentHash));
  catalog.sweep();
  return out;
}

interface Parsed {
  activities: Activity[];
  /** records of untracked events: left unparsed, by the name beside them */
  untracked: number;
  /** records parsed and dropped: failed calls, tags on other resources */
  ignored: number;
  malformed: string[];
}
const noneParsed = (): Parsed => ({ activities: [], untracked: 0, ignored: 0, malformed: [] });
const TRACKED = new Set(TRACKED_EVENT_NAMES);

/**
 * A page of events read as the LookupEvents collector reads one: the tracked ones (trackedOf) to
 * recordsToEvidence (JSON.parse, activityFromRecord). A sweep of the account's writes hands it every
 * name; a query by name, one tracked name.
 */
function parseRecords(events: readonly LookupEvent[], into: Parsed = noneParsed()): Parsed {
  const tracked = trackedOf(events, TRACKED);
  const evidence = recordsToEvidence(recordsOf(tracked), SCOPE, 'lookup-events');
  for (let n = 0; n < evidence.activities.length; n++) into.activities.push(evidence.activities[n] as Activity);
  into.untracked += events.length - tracked.length;
  into.ignored += tracked.length - evidence.activities.length - evidence.unreadable;
  for (const g of evidence.gaps) into.malformed.push(g.message);
  return into;
}

/** The report a cycle builds (the daemon alerts and plans from it). */
const reportOf = (result: ScopeResult, window: { from: number; to: number }, now: number) =>
  buildReport({ startedAt: now, finishedAt: now, scopes: [{ ...result, window, complete: true }], errors: [], warnings: [] });

/** The report as `pristine audit --format json` writes it, streamed into a counter instead of a file. */
function reportBytes(report: Report): number {
  let bytes = 0;
  for (const chunk of jsonChunks(report)) bytes += chunk.length;
  return bytes;
}

const factsOf = (activities: Activity[], inventory: Map<string, InventorySnapshot>, commandTargets: Map<string, string[]>, to: number): ScopeFacts => ({
  accountId: ACCOUNT,
  region: REGION,
  window: { from: WINDOW.from, to },
  instances: plan.instances,
  activities,
  inventory,
  commandTargets,
  unresolvedCommands: new Map(),
  associationTargets: new Map(),
  documentAssociations: new Map(),
  endpointVpcs: new Map(),
  gaps: [],
});

// The first cycle: every inventory is new to the catalog.
const catalog = new InventoryCatalog();
const inventory = timed('normalise', `normalise ${fmt(entities.length)} inventories (catalog)`, () => normalise(catalog));
const distinctInventories = catalog.size;
const normalisedRows = catalog.normalisedRows;
const parsing = pieces('parse', `read ${fmt(N_EVENTS)} records (tracked ones: JSON.parse, activityFromRecord)`);
const parsed = noneParsed();
const trailCpu0 = process.cpuUsage();
const trailStart = performance.now();
const trail = buildTrail(plan, N_EVENTS, (page) => parsing.run(() => parseRecords(page, parsed)));
{
  // Generating the records is setup; parsing them is the phase.
  const cpu = process.cpuUsage(trailCpu0);
  const ms = performance.now() - trailStart;
  const parseRow = { ms: 0, cpuS: 0 };
  parsing.done();
  const p = rows[rows.length - 1] as Row;
  parseRow.ms = p.ms;
  parseRow.cpuS = p.cpuS;
  rows.splice(rows.length - 1, 0, { key: 'generate', phase: `generate ${fmt(N_EVENTS)} CloudTrail records, a page at a time`, start: trailStart, ms: ms - parseRow.ms, cpuS: (cpu.user + cpu.system) / 1e6 - parseRow.cpuS, setup: true, rssMiB: p.rssMiB });
}

// Records of the second cycle and of pushes, generated after the first cycle's (the PRNG's order makes the fleet).
const N_NEW = Math.min(500, Math.max(1, Math.round(N_EVENTS / 100)));
const newTrail = timed('generate2', `generate ${fmt(N_NEW)} more records for the second cycle`, () => buildTrail(plan, N_NEW), true);
const PUSHES = 200;
const pushedRecords = timed(
  'generate3',
  `generate ${PUSHES} pushed records`,
  () =>
    Array.from({ length: PUSHES }, () => {
      const i = pick(plan.instances);
      const at = NOW + int(60, 500) * 1000;
      const sessionId = `pushed-${hex(17)}`;
      return JSON.stringify(record(pick(HUMANS), at, 'ssm.amazonaws.com', 'StartSession', { target: i.instanceId }, { sessionId, tokenValue: 'Value hidden due to security reasons.' }));
    }),
  true,
);

const facts = factsOf(parsed.activities, inventory, trail.commandTargets, NOW);
const judge = timed('attribute', `attribute ${fmt(parsed.activities.length)} activities (ScopeJudge)`, () => new ScopeJudge(facts, policies, manifests));
const result: ScopeResult = timed('evaluate', `evaluate ${fmt(N_INSTANCES)} instances`, () => judge.judgeAll(NOW));
const JUDGEMENT = ['normalise', 'parse', 'attribute', 'evaluate', 'report'];
// Built, then written as `audit` and `run --format json` write it (the daemon's cycle does not); not
// kept after, as neither keeps it.
const bytes = ((): number => {
  const report = timed('report', 'build the report', () => reportOf(result, facts.window, NOW));
  return timed('json', 'write the report as JSON (streamed)', () => reportBytes(report));
})();

// What a real cycle pays besides: the evidence log and the verdicts in the state store.
// A file, as the daemon keeps it: SQLite holds a bounded page cache, not the whole log, in memory.
const storeDir = mkdtempSync(path.join(tmpdir(), 'pristine-bench-'));
const store = SqliteStateStore.open(path.join(storeDir, 'state.db'));
await timedAsync('store', `store ${fmt(parsed.activities.length)} activities and ${fmt(result.results.length)} verdicts (SQLite)`, async () => {
  await store.ingest(parsed.activities, NOW);
  await store.transaction(() => store.recordVerdicts(NOW, result.results.map(verdictInputOf)));
});

// The daemon sleeps until its next cycle.
await idle('idle', 'asleep between the cycles (what V8 does meanwhile)');

// The second cycle, ten minutes later: the same inventories, some new records.
const NOW2 = NOW + 10 * 60_000;
const inventory2 = timed('normalise2', `second cycle: normalise ${fmt(entities.length)} unchanged inventories`, () => normalise(catalog));
const parsed2 = timed('parse2', `second cycle: parse ${fmt(N_NEW)} new records`, () => parseRecords(newTrail.events));
const facts2 = factsOf([...parsed.activities, ...parsed2.activities], inventory2, new Map([...trail.commandTargets, ...newTrail.commandTargets]), NOW2);
// As the daemon does: the first cycle's judge is the second's `previous` (its attribution carries over).
const judge2 = timed('attribute2', 'second cycle: attribute (carried over)', () => new ScopeJudge(facts2, policies, manifests, { previous: judge }));
const result2 = timed('evaluate2', 'second cycle: evaluate', () => judge2.judgeAll(NOW2));
// The daemon's cycle builds the report; only `audit`/`run --format json` write it out.
timed('report2', 'second cycle: build the report', () => reportOf(result2, facts2.window, NOW2));
const SECOND = ['normalise2', 'parse2', 'attribute2', 'evaluate2', 'report2'];
await timedAsync('store2', `second cycle: store ${fmt(parsed2.activities.length)} activities and ${fmt(result2.results.length)} verdicts (SQLite)`, async () => {
  await store.ingest(parsed2.activities, NOW2);
  await store.transaction(() => store.recordVerdicts(NOW2, result2.results.map(verdictInputOf)));
});
await store.close();
rmSync(storeDir, { recursive: true, force: true });

await idle('idle2', 'asleep after the second cycle');

// Events pushed between cycles: each re-judges the instance it names, as the daemon does (src/pushed.ts).
const pushedJudge = judge2.forPushedEvents();
const rejudgeMs: number[] = [];
let pushedTainted = 0;
timed('pushed', `${PUSHES} pushed events, each re-judging its instance`, () => {
  for (const text of pushedRecords) {
    const start = performance.now();
    // As the event queue's source reads an event (its record as text: parsing it is part of the cost).
    const { activities } = recordsToEvidence([{ raw: text }], SCOPE, 'eventbridge');
    if (activities.length !== 1) throw new Error('a pushed record did not parse');
    const judged = pushedJudge.judgeOnly(pushedJudge.add(activities), NOW2);
    rejudgeMs.push(performance.now() - start);
    pushedTainted += judged.filter((r) => r.verdict === 'tainted').length;
  }
});
rejudgeMs.sort((a, b) => a - b);
const quantile = (q: number): number => rejudgeMs[Math.min(rejudgeMs.length - 1, Math.floor(q * rejudgeMs.length))] ?? 0;

// ---------------------------------------------------------------------------------------------
// Report

// GC entries are delivered asynchronously: let them arrive.
await new Promise((resolve) => setTimeout(resolve, 20));
gcPauses.push(...gcObserver.takeRecords());
gcObserver.disconnect();

const verdicts = { pristine: 0, tainted: 0, unknown: 0 };
const findingsBy = new Map<string, number>();
let findingsTotal = 0;
for (const r of result.results) {
  verdicts[r.verdict]++;
  for (const f of r.findings) {
    const key = `${f.detector} (${f.effect})`;
    findingsBy.set(key, (findingsBy.get(key) ?? 0) + 1);
    findingsTotal++;
  }
}

/** The human report: stdout, or stderr when --json owns stdout. */
const say = (...parts: unknown[]): void => {
  (argv.json ? process.stderr : process.stdout).write(`${parts.join(' ')}\n`);
};
const cpuOf = (keys: string[]) => rows.filter((r) => keys.includes(r.key)).reduce((t, r) => t + r.cpuS, 0);
const msOf = (keys: string[]) => rows.filter((r) => keys.includes(r.key)).reduce((t, r) => t + r.ms, 0);
const gcOf = (keys: string[]) => rows.filter((r) => keys.includes(r.key)).reduce((t, r) => t + gcMsIn(r), 0);
const peakRssMiB = process.resourceUsage().maxRSS / 1024;

say(
  `\npristine bench: ${fmt(N_INSTANCES)} instances, ${fmt(N_EVENTS)} CloudTrail records, ${fmt(N_PACKAGES)} packages/instance, ` +
    `${manifests.size} manifests, ${DISTINCT_PCT}% distinct inventories, seed ${SEED}` +
    `${appliedV8Flags.length ? `, V8 ${appliedV8Flags.join(' ')}` : ''}\n`,
);
const w = Math.max(...rows.map((r) => r.phase.length)) + 10;
const line = (phase: string, ms: number, cpuS: number, gcMs: number, rss?: number) =>
  say(`${phase.padEnd(w)}${ms.toFixed(1).padStart(12)}${cpuS.toFixed(3).padStart(10)}${gcMs.toFixed(1).padStart(12)}${rss === undefined ? '' : rss.toFixed(0).padStart(9)}`);
say(`${'phase'.padEnd(w)}${'wall ms'.padStart(12)}${'CPU s'.padStart(10)}${'GC pause ms'.padStart(12)}${'RSS MiB'.padStart(9)}`);
say('-'.repeat(w + 43));
for (const r of rows) line(r.setup ? `${r.phase} [setup]` : r.idle ? `${r.phase} [idle]` : r.phase, r.ms, r.cpuS, gcMsIn(r), r.rssMiB);
say('-'.repeat(w + 43));
line('judgement of one cycle (normalise ... report)', msOf(JUDGEMENT), cpuOf(JUDGEMENT), gcOf(JUDGEMENT));
line('second cycle (unchanged inventories, new records)', msOf(SECOND), cpuOf(SECOND), gcOf(SECOND));

say(`\npeak RSS (maxRSS):           ${peakRssMiB.toFixed(1)} MiB`);
say(`inventories:                 ${fmt(entities.length)} results, ${fmt(distinctInventories)} distinct, ${fmt(normalisedRows)} rows normalised in the first cycle`);
say(`report:                      ${fmt(bytes)} bytes of JSON`);
say(`pushed event re-judged in:   p50 ${quantile(0.5).toFixed(3)} ms, p99 ${quantile(0.99).toFixed(3)} ms, max ${quantile(1).toFixed(3)} ms (${pushedTainted} tainted)`);

say(
  `\nrecords: ${fmt(parsed.activities.length)} activities, ${fmt(parsed.ignored)} ignored, ${fmt(parsed.malformed.length)} malformed, ${fmt(parsed.untracked)} untracked (not parsed)` +
    ` (${fmt(trail.commandTargets.size)} commands with known invocations)`,
);
say(
  `verdicts: ${fmt(result.results.length)} judged: pristine ${fmt(verdicts.pristine)}, tainted ${fmt(verdicts.tainted)}, unknown ${fmt(verdicts.unknown)};` +
    ` exempt ${fmt(result.exempt)}, out of scope ${fmt(result.outOfScope)}`,
);
say(`findings: ${fmt(findingsTotal)} (${[...findingsBy].sort().map(([k, n]) => `${k} ${fmt(n)}`).join(', ')})`);

// Plausibility: the fleet is built so that roughly 15-30% are tainted, a few % unknown, a few exempt.
const problems: string[] = [];
const judged = result.results.length;
const accounted = judged + result.exempt + result.outOfScope;
if (accounted !== N_INSTANCES) problems.push(`${accounted} instances accounted for, expected ${N_INSTANCES}`);
if (parsed.malformed.length > 0) problems.push(`malformed records: ${parsed.malformed.slice(0, 3).join('; ')}`);
if (N_EVENTS > 0 && parsed.activities.length === 0) problems.push('no record became an activity');
if (judged === 0) problems.push('no instance was judged');
if (judged >= 20 && verdicts.tainted === 0) problems.push('zero tainted');
if (judged > 0 && verdicts.tainted === judged) problems.push('every judged instance is tainted');
if (judged >= 20 && verdicts.pristine === 0) problems.push('zero pristine');
if (judged >= 100 && verdicts.tainted > judged * 0.6) problems.push(`${verdicts.tainted} of ${judged} tainted: more than 60%`);
if (judged >= 100 && verdicts.unknown > judged * 0.3) problems.push(`${verdicts.unknown} of ${judged} unknown: more than 30%`);
if (N_INSTANCES >= 1000 && result.exempt === 0) problems.push('zero exempt');
if (N_INSTANCES >= 1000 && !findingsBy.has('package-drift (taint)')) problems.push('no package drift found');
if (N_INSTANCES >= 1000 && N_EVENTS >= 10_000) {
  for (const d of ['interactive-session', 'remote-command', 'instance-modified', 'guard-tampered']) {
    if (!findingsBy.has(`${d} (taint)`)) problems.push(`no ${d} finding`);
  }
}
// The carried-over judgement must be the one a fresh judge gives.
{
  const fresh = new ScopeJudge(facts2, policies, manifests).judgeAll(NOW2);
  const digest = (r: ScopeResult) => JSON.stringify([r.exempt, r.outOfScope, r.results.map((x) => [x.instance.instanceId, x.verdict, x.findings, x.gaps])]);
  if (!judge2.carried) problems.push('the second cycle did not carry the first one over');
  if (digest(fresh) !== digest(result2)) problems.push('the second cycle, carried over, judged otherwise than a fresh judge');
}
if (result2.results.length + result2.exempt + result2.outOfScope !== N_INSTANCES) problems.push('the second cycle did not account for every instance');
if (result2.results.filter((r) => r.verdict === 'tainted').length < verdicts.tainted) problems.push('the second cycle found fewer tainted instances with more evidence');
if (parsed2.malformed.length > 0) problems.push(`malformed records in the second cycle: ${parsed2.malformed.slice(0, 3).join('; ')}`);
if (pushedTainted === 0) problems.push('no pushed session tainted its instance');
if (problems.length > 0) {
  console.error(`\nimplausible result:\n  - ${problems.join('\n  - ')}`);
  process.exit(1);
}
say('\nsanity checks passed');
if (argv.dump) {
  // Every verdict and finding, in a stable order: what the equivalence test compares.
  const judged = [...result.results]
    .sort((a, b) => (a.instance.instanceId < b.instance.instanceId ? -1 : 1))
    .map((r) => ({
      instanceId: r.instance.instanceId,
      policy: r.policy,
      verdict: r.verdict,
      findings: r.findings.map((f) => ({ key: f.key, detector: f.detector, effect: f.effect, severity: f.severity, at: f.at, actor: f.actor, summary: f.summary, evidence: f.evidence })),
      gaps: r.gaps.map((g) => ({ source: g.source, message: g.message, instanceIds: g.instanceIds ?? null })),
    }));
  writeFileSync(argv.dump, `${JSON.stringify({ exempt: result.exempt, outOfScope: result.outOfScope, results: judged }, null, 1)}\n`);
}
if (argv.json) {
  const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;
  const timedRows = rows.filter((r) => !r.setup);
  process.stdout.write(
    `${JSON.stringify({
      instances: N_INSTANCES,
      packages: N_PACKAGES,
      events: N_EVENTS,
      distinctInventoriesPct: DISTINCT_PCT,
      phases: Object.fromEntries(timedRows.map((r) => [r.key, { wallMs: round(r.ms, 1), cpuS: round(r.cpuS, 3) }])),
      // The judgement of one cycle: normalise, parse, attribute, evaluate, report (its JSON, the store, the second cycle and pushes are apart).
      totalCpuS: round(cpuOf(JUDGEMENT), 3),
      secondCycleCpuS: round(cpuOf(SECOND), 3),
      rejudgeMs: { p50: round(quantile(0.5), 3), p99: round(quantile(0.99), 3), max: round(quantile(1), 3) },
      peakRssMiB: round(peakRssMiB, 1),
      v8Flags: appliedV8Flags,
    })}\n`,
  );
}
