// vitest globalSetup: find (or install) moto_server once before any test file runs, so a machine
// without moto fails fast with one clear message instead of every integration test timing out.
import { resolveMotoServer } from './moto.js';

export default async function setup(): Promise<void> {
  await resolveMotoServer();
}
