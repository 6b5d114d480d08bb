/** A baked image's record, as loaded from the manifests directory (see ./schema.ts for the file format). */
export interface Manifest {
  imageId: string;
  region: string;
  name: string;
  /** ISO-8601 */
  builtAt: string;
  packageManager: 'dpkg' | 'rpm';
  /** versions as recorded (e.g. `1:2.38.1-5+deb12u3`); the core normalises them before comparing */
  packages: Array<{ name: string; version: string; arch: string }>;
  /** Where the file was loaded from, for messages */
  file: string;
  packer?: { buildName?: string; runUuid?: string; buildTime?: string; customData?: Record<string, string> };
}

/** Manifests keyed by `${region}/${imageId}`. */
export type ManifestIndex = Map<string, Manifest>;

export function manifestKey(region: string, imageId: string): string {
  return `${region}/${imageId}`;
}
