import { z } from 'zod';
import { InputError } from '../errors.js';
import { parseOrThrow } from '../validation.js';
import { AMI_ID, AWS_REGION } from './schema.js';

/** One AMI a Packer build produced. */
export interface PackerImage {
  region: string;
  imageId: string;
  buildName: string;
  runUuid: string;
  /** ISO-8601, from the build's `build_time` (epoch seconds) */
  buildTime: string;
  /** the build's `custom_data` (empty if it had none) */
  customData: Record<string, string>;
}

const PackerBuild = z.looseObject({
  name: z.string().min(1),
  builder_type: z.string().optional(),
  build_time: z.number().int().nonnegative(),
  artifact_id: z.string(),
  packer_run_uuid: z.string().min(1),
  custom_data: z.record(z.string(), z.string()).nullable().optional(),
});

const PackerManifestSchema = z.looseObject({
  builds: z.array(PackerBuild).min(1, { message: 'no builds in the Packer manifest' }),
  last_run_uuid: z.string().min(1).optional(),
});

/** `2025-11-18T10:00:00Z` from epoch seconds. */
function isoFromEpochSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/**
 * Read the output of Packer's `manifest` post-processor: every `region:ami-id` of the builds of the
 * last run (`last_run_uuid`; every build when that is absent).
 */
export function parsePackerManifest(text: string, file: string): PackerImage[] {
  let data: unknown;
  try {
    data = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new InputError(`${file}: invalid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  const manifest = parseOrThrow(PackerManifestSchema, data, file);
  const lastRun = manifest.last_run_uuid;

  const images: PackerImage[] = [];
  const seenAt = new Map<string, string>();
  manifest.builds.forEach((build, i) => {
    if (lastRun !== undefined && build.packer_run_uuid !== lastRun) return;
    const field = `builds[${i}].artifact_id`;
    const pairs = build.artifact_id.split(',').map((p) => /^([^:\s]+):([^:\s]+)$/.exec(p.trim()));
    const parsed: Array<{ region: string; imageId: string }> = [];
    for (const m of pairs) {
      const region = m?.[1];
      const imageId = m?.[2];
      if (!region || !imageId || !AWS_REGION.test(region) || !AMI_ID.test(imageId)) {
        throw new InputError(
          `${file}: ${field}: expected region:ami-id pairs separated by commas (e.g. us-east-1:ami-0123456789abcdef0), ` +
            `got ${JSON.stringify(build.artifact_id)}`,
        );
      }
      parsed.push({ region, imageId });
    }
    for (const { region, imageId } of parsed) {
      const key = `${region}:${imageId}`;
      const earlier = seenAt.get(key);
      if (earlier !== undefined) {
        throw new InputError(`${file}: ${field}: ${key} is already listed in ${earlier}`);
      }
      seenAt.set(key, field);
      images.push({
        region,
        imageId,
        buildName: build.name,
        runUuid: build.packer_run_uuid,
        buildTime: isoFromEpochSeconds(build.build_time),
        customData: { ...(build.custom_data ?? {}) },
      });
    }
  });
  if (images.length === 0) {
    throw new InputError(`${file}: last_run_uuid: no build has packer_run_uuid ${lastRun ?? ''}`);
  }
  return images;
}
