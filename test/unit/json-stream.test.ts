// The JSON report written in pieces is the same text JSON.stringify would have made.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { jsonChunks, writeJson } from '../../src/report/json-stream.js';

const SAMPLES: unknown[] = [
  null,
  42,
  'text with "quotes" and\nnewlines',
  [],
  {},
  [1, 'two', null, undefined, { three: 3 }],
  { a: undefined, b: [], c: {}, d: [[[[1, [2, { deep: ['x'] }]]]]], e: 'é ✓', f: null, g: false },
  { version: 1, instances: [{ instanceId: 'i-1', findings: [{ evidence: { changed: [{ name: 'openssl', from: '1', to: '2' }] } }], gaps: [] }], errors: [] },
  { when: new Date(Date.UTC(2026, 10, 21)), nested: { when: new Date(0) } },
  // Outer arrays of more members than one batch, with members JSON cannot hold and holes among them.
  { instances: Array.from({ length: 250 }, (_, n) => (n % 7 === 0 ? undefined : n % 11 === 0 ? () => n : { id: n, at: [n, { n }] })), errors: [] },
  Array.from({ length: 201 }, (_, n) => [n, [String(n)], { n }]),
  { sparse: Object.assign(new Array(230), { 3: 'x', 150: { y: 1 } }), when: [new Date(0)] },
];

describe('jsonChunks', () => {
  it.each(SAMPLES.map((v) => [JSON.stringify(v) ?? 'undefined', v]))('writes %s as JSON.stringify(v, null, 2) does', (_name, value) => {
    expect([...jsonChunks(value)].join('')).toBe(JSON.stringify(value, null, 2) ?? 'null');
  });

  it('writes the outer arrays a few dozen members at a time, never the whole as one piece', () => {
    const report = { instances: Array.from({ length: 1000 }, (_, n) => ({ instanceId: `i-${n}`, findings: [] })) };
    const counts = [...jsonChunks(report)].map((c) => c.match(/"instanceId"/g)?.length ?? 0).filter((n) => n > 0);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(counts.length).toBeGreaterThanOrEqual(10);
    expect(Math.max(...counts)).toBeLessThanOrEqual(100);
  });
});

describe('writeJson', () => {
  it('writes pretty JSON and a newline to a file, making its directory', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pristine-json-'));
    try {
      const file = path.join(dir, 'nested', 'report.json');
      const value = { instances: Array.from({ length: 5000 }, (_, n) => ({ instanceId: `i-${n}`, evidence: { text: 'x'.repeat(100) } })) };
      await writeJson(value, file);
      expect(await readFile(file, 'utf8')).toBe(`${JSON.stringify(value, null, 2)}\n`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
