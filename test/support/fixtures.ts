// Locates the fixture corpus in test/fixtures (real-shaped CloudTrail records, SSM responses,
// package lists, a Packer manifest and an SBOM), resolved from this file so any working directory works.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of the repository (this file is `<repo>/test/support/fixtures.ts`). */
export const repoRoot: string = fileURLToPath(new URL('../../', import.meta.url));

/** Absolute path of the fixtures folder. */
export const fixturesDir: string = fileURLToPath(new URL('../fixtures/', import.meta.url));

/** Absolute path of a fixture, e.g. `fixturePath('cloudtrail/ssm-start-session.json')`. */
export function fixturePath(relPath: string): string {
  return join(fixturesDir, relPath);
}

/** Parses a JSON fixture. The type parameter is an unchecked assertion about its shape. */
export function readFixtureJson<T = unknown>(relPath: string): T {
  return JSON.parse(readFileSync(fixturePath(relPath), 'utf8')) as T;
}

/** Parses a JSON-lines fixture (one JSON value a line, blank lines skipped). */
export function readFixtureJsonl<T = unknown>(relPath: string): T[] {
  return readFileSync(fixturePath(relPath), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}
