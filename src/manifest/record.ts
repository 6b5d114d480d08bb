import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { InputError } from '../errors.js';
import { parseOrThrow } from '../validation.js';
import { parsePackageList, type PackageManager } from './package-list.js';
import { parsePackerManifest } from './packer.js';
import { AMI_ID, AWS_REGION, ManifestFile, type ManifestFileInput } from './schema.js';

export interface RecordOptions {
  /** dpkg/rpm three-column list or CycloneDX SBOM */
  packagesFile: string;
  /** one AMI (needs `region`) ... */
  image?: string;
  /** ... or every AMI of the last run in a Packer manifest */
  packerFile?: string;
  outDir: string;
  /** the AMI's region; required with `image`, not allowed with `packerFile` */
  region?: string;
  /** default: the Packer build name, or the image id */
  name?: string;
  /** ISO-8601; default: the Packer build time, or now */
  builtAt?: string;
  /** skip dpkg/rpm detection for a package list whose arches and versions don't tell */
  packageManager?: PackageManager;
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function readInput(file: string, what: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`${what} not found: ${file}`);
    throw new InputError(`cannot read ${what} ${file}: ${reason(err)}`, { cause: err });
  }
}

/** Replace `target` in one step: write a temporary file beside it, then rename it over. */
async function writeAtomically(target: string, content: string): Promise<void> {
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await fs.writeFile(tmp, content, { encoding: 'utf8', flag: 'wx' });
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/**
 * Write one manifest file per baked AMI into `outDir` (`<region>_<ami>.json`) and return their paths.
 * Every input is read and every manifest validated before the first file is written.
 */
export async function recordManifests(opts: RecordOptions): Promise<string[]> {
  const hasImage = opts.image !== undefined && opts.image !== '';
  const hasPacker = opts.packerFile !== undefined && opts.packerFile !== '';
  if (hasImage === hasPacker) {
    throw new InputError('give exactly one of --image (with --region) or --packer');
  }

  const drafts: ManifestFileInput[] = [];
  if (opts.builtAt !== undefined && !ManifestFile.shape.builtAt.safeParse(opts.builtAt).success) {
    throw new InputError(`--built-at: expected an ISO-8601 date and time with a zone (e.g. 2025-11-18T10:00:00Z), got ${JSON.stringify(opts.builtAt)}`);
  }
  if (opts.name !== undefined && opts.name.trim() === '') throw new InputError('--name must not be empty');
  if (hasImage) {
    const image = opts.image ?? '';
    const problems: string[] = [];
    if (!AMI_ID.test(image)) problems.push(`--image: expected an AMI id like ami-0123456789abcdef0, got ${JSON.stringify(image)}`);
    if (opts.region === undefined || opts.region === '') problems.push('--region is required with --image');
    else if (!AWS_REGION.test(opts.region)) problems.push(`--region: expected an AWS region like us-east-1, got ${JSON.stringify(opts.region)}`);
    if (problems.length > 0) throw new InputError(problems.join('\n'));
  } else if (opts.region !== undefined) {
    throw new InputError('--region applies only with --image (a Packer manifest names the regions of its AMIs)');
  }

  const list = parsePackageList(await readInput(opts.packagesFile, 'packages file'), opts.packagesFile, {
    ...(opts.packageManager ? { packageManager: opts.packageManager } : {}),
  });
  const packages = list.packages.map((p) => ({ ...p }));

  if (hasImage) {
    const imageId = opts.image ?? '';
    drafts.push({
      version: 1,
      imageId,
      region: opts.region ?? '',
      name: opts.name ?? imageId,
      builtAt: opts.builtAt ?? new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      packageManager: list.packageManager,
      packages,
    });
  } else {
    const packerFile = opts.packerFile ?? '';
    const images = parsePackerManifest(await readInput(packerFile, 'Packer manifest'), packerFile);
    for (const img of images) {
      const packer: NonNullable<ManifestFileInput['packer']> = {
        buildName: img.buildName,
        runUuid: img.runUuid,
        buildTime: img.buildTime,
      };
      if (Object.keys(img.customData).length > 0) packer.customData = img.customData;
      drafts.push({
        version: 1,
        imageId: img.imageId,
        region: img.region,
        name: opts.name ?? img.buildName,
        builtAt: opts.builtAt ?? img.buildTime,
        packageManager: list.packageManager,
        packer,
        packages,
      });
    }
  }

  // Validate all of them first: nothing is written unless every manifest is good.
  const outputs: Array<{ target: string; content: string }> = [];
  const problems: string[] = [];
  for (const draft of drafts) {
    const target = path.join(opts.outDir, `${draft.region}_${draft.imageId}.json`);
    try {
      const manifest = parseOrThrow(ManifestFile, draft, target);
      outputs.push({ target, content: `${JSON.stringify(manifest, null, 2)}\n` });
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      problems.push(err.message);
    }
  }
  if (problems.length > 0) throw new InputError(problems.join('\n'));

  try {
    await fs.mkdir(opts.outDir, { recursive: true });
  } catch (err) {
    throw new InputError(`cannot create output directory ${opts.outDir}: ${reason(err)}`, { cause: err });
  }
  const written: string[] = [];
  for (const { target, content } of outputs) {
    await writeAtomically(target, content);
    written.push(target);
  }
  return written;
}
