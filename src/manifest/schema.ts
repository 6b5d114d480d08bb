import { z } from 'zod';

/** `ami-` and 8 or 17 hex digits (older and current EC2 id lengths). */
export const AMI_ID = /^ami-[0-9a-f]{8,17}$/;

/** `us-east-1`, `us-gov-west-1`, `ap-southeast-2`, `eusc-de-east-1`, ... */
export const AWS_REGION = /^[a-z]{2,4}(?:-[a-z]+)+-\d{1,2}$/;

const token = (what: string) =>
  z.string().regex(/^\S+$/, { message: `${what} must be non-empty and contain no whitespace` });

export const ManifestPackage = z.strictObject({
  name: token('name'),
  version: token('version'),
  arch: token('arch'),
});
export type ManifestPackage = z.infer<typeof ManifestPackage>;

const Packages = z
  .array(ManifestPackage)
  .min(1, { message: 'must list at least one package' })
  .superRefine((packages, ctx) => {
    const first = new Map<string, number>();
    packages.forEach((p, i) => {
      const key = `${p.name}\t${p.arch}\t${p.version}`;
      const at = first.get(key);
      if (at === undefined) first.set(key, i);
      else {
        ctx.addIssue({
          code: 'custom',
          path: [i],
          message: `duplicate of packages[${at}] (${p.name} ${p.version} ${p.arch})`,
        });
      }
    });
  });

const Files = z
  .array(
    z.strictObject({
      path: z.string().regex(/^\//, { message: 'must be an absolute path' }),
      sha256: z.string().regex(/^[0-9a-f]{64}$/, { message: 'must be 64 lowercase hex digits' }),
    }),
  )
  .superRefine((files, ctx) => {
    const first = new Map<string, number>();
    files.forEach((f, i) => {
      const at = first.get(f.path);
      if (at === undefined) first.set(f.path, i);
      else ctx.addIssue({ code: 'custom', path: [i, 'path'], message: `duplicate of files[${at}].path (${f.path})` });
    });
  });

const isoDateTime = () =>
  z.iso.datetime({ offset: true, message: 'must be an ISO-8601 date and time with a zone, e.g. 2025-11-18T10:00:00Z' });

/**
 * One file in the manifests directory: what a baked image contained when it was built.
 * Objects are strict so that a misspelt key is reported rather than silently ignored.
 */
export const ManifestFile = z.strictObject({
  version: z.literal(1, { message: 'unsupported manifest version (expected 1)' }).default(1),
  imageId: z.string().regex(AMI_ID, { message: 'expected an AMI id like ami-0123456789abcdef0' }),
  region: z.string().regex(AWS_REGION, { message: 'expected an AWS region like us-east-1' }),
  name: z.string().min(1, { message: 'must not be empty' }),
  builtAt: isoDateTime(),
  packageManager: z.enum(['dpkg', 'rpm']),
  sourceImage: z.string().min(1, { message: 'must not be empty' }).optional(),
  packer: z
    .strictObject({
      buildName: z.string().optional(),
      runUuid: z.string().optional(),
      buildTime: isoDateTime().optional(),
      customData: z.record(z.string(), z.string()).optional(),
    })
    .optional(),
  files: Files.optional(),
  packages: Packages,
});
export type ManifestFile = z.infer<typeof ManifestFile>;
/** What a manifest file may contain before defaults are applied (e.g. without `version`). */
export type ManifestFileInput = z.input<typeof ManifestFile>;
