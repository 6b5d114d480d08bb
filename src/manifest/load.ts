import { promises as fs } from 'node:fs';
import path from 'node:path';
import { InputError } from '../errors.js';
import { parseOrThrow } from '../validation.js';
import { ManifestFile } from './schema.js';
import { manifestKey, type Manifest, type ManifestIndex } from './types.js';

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The `*.json` files directly in `dir` (as a shell glob would match them: no dot files), sorted. */
async function listManifestFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') throw new InputError(`manifests directory not found: ${dir}`);
    if (code === 'ENOTDIR') throw new InputError(`manifests path is not a directory: ${dir}`);
    throw new InputError(`cannot read manifests directory ${dir}: ${reason(err)}`, { cause: err });
  }
  const files: string[] = [];
  for (const entry of entries) {
    if (!entry.name.endsWith('.json') || entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    if (entry.isFile()) files.push(full);
    else if (entry.isSymbolicLink()) {
      const target = await fs.stat(full).catch(() => undefined);
      if (target?.isFile()) files.push(full);
    }
  }
  return files.sort();
}

function toManifest(data: ManifestFile, file: string): Manifest {
  const manifest: Manifest = {
    imageId: data.imageId,
    region: data.region,
    name: data.name,
    builtAt: data.builtAt,
    packageManager: data.packageManager,
    packages: data.packages.map((p) => ({ name: p.name, version: p.version, arch: p.arch })),
    file,
  };
  if (data.packer) manifest.packer = data.packer;
  return manifest;
}

/**
 * Load every manifest in `dir`. All files are checked before anything is reported, so one run shows
 * every problem; any problem (bad JSON, a bad field, two files for the same image) is an InputError.
 */
export async function loadManifests(dir: string): Promise<ManifestIndex> {
  const files = await listManifestFiles(dir);
  const problems: string[] = [];
  const index: ManifestIndex = new Map();

  for (const file of files) {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      problems.push(`${file}: cannot read: ${reason(err)}`);
      continue;
    }
    let data: unknown;
    try {
      data = JSON.parse(text.replace(/^\uFEFF/, ''));
    } catch (err) {
      problems.push(`${file}: invalid JSON: ${reason(err)}`);
      continue;
    }
    let parsed: ManifestFile;
    try {
      parsed = parseOrThrow(ManifestFile, data, file);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      problems.push(err.message);
      continue;
    }
    const key = manifestKey(parsed.region, parsed.imageId);
    const earlier = index.get(key);
    if (earlier) {
      problems.push(`${file}: ${parsed.region} ${parsed.imageId} is already described by ${earlier.file}`);
      continue;
    }
    index.set(key, toManifest(parsed, file));
  }

  if (problems.length > 0) throw new InputError(problems.join('\n'));
  return index;
}
