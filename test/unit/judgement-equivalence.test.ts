// Same facts, same verdicts: the bench's fleet (1,000 instances, 10,000 records) judged by the fast path
// must give every verdict, finding and gap the straightforward path gave. The expected file was written
// by `npm run bench -- --instances 1000 --events 10000 --packages 60 --dump FILE` before the judgement
// was made fast (per-instance normalising, diffing, scanning and glob matching).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const EXPECTED = path.join(ROOT, 'test/fixtures/bench/judged-1000.json.gz');
const run = promisify(execFile);

interface Judged {
  exempt: number;
  outOfScope: number;
  results: Array<{ instanceId: string; verdict: string; findings: unknown[]; gaps: unknown[] }>;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pristine-equivalence-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function judge(...flags: string[]): Promise<Judged> {
  const out = path.join(dir, `${flags.join('_') || 'default'}.json`);
  await run(path.join(ROOT, 'node_modules/.bin/tsx'), ['scripts/bench.ts', '--instances', '1000', '--events', '10000', '--packages', '60', '--dump', out, ...flags], { cwd: ROOT });
  return JSON.parse(await readFile(out, 'utf8')) as Judged;
}

describe("the bench's fleet, judged by the fast path", () => {
  it('gives every verdict, finding and gap the straightforward path gave', { timeout: 120_000 }, async () => {
    const want = JSON.parse(gunzipSync(await readFile(EXPECTED)).toString('utf8')) as Judged;
    const got = await judge();
    expect(got.results.length).toBe(want.results.length);
    expect({ exempt: got.exempt, outOfScope: got.outOfScope }).toEqual({ exempt: want.exempt, outOfScope: want.outOfScope });
    for (let n = 0; n < want.results.length; n++) expect(got.results[n]).toEqual(want.results[n]);
    // The fleet is varied enough to mean something.
    const verdicts = new Set(want.results.map((r) => r.verdict));
    expect([...verdicts].sort()).toEqual(['pristine', 'tainted', 'unknown']);
  });

  it('gives the same when every inventory has a content of its own: fingerprints change cost, never a verdict', { timeout: 120_000 }, async () => {
    const want = JSON.parse(gunzipSync(await readFile(EXPECTED)).toString('utf8')) as Judged;
    const got = await judge('--distinct-inventories', '100');
    expect(got).toEqual(want);
  });
});
