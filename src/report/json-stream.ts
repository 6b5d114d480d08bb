import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { once } from 'node:events';

/**
 * Members of an outer array stringified together: one call for a few dozen instances costs about what
 * one costs, and the piece (tens of KB) stays below V8's large-object size, so it dies young.
 */
const BATCH = 32;

/**
 * `JSON.stringify(value, null, 2)`, in pieces: the outer objects and arrays are written a member (or,
 * at the last level split, BATCH members) at a time, so a report of 100,000 instances with full
 * diffs never becomes one string (V8 caps a string at 512 MiB) and never sits in memory twice. The
 * text is the same, byte for byte.
 */
export function* jsonChunks(value: unknown, depth = 0, splitDepth = 2): Generator<string> {
  const pad = '  '.repeat(depth);
  const inner = '  '.repeat(depth + 1);
  if (depth >= splitDepth || value === null || typeof value !== 'object' || typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    yield indented(value, depth);
    return;
  }
  if (Array.isArray(value)) {
    if (value.length === 0) {
      yield '[]';
      return;
    }
    yield '[';
    if (depth + 1 >= splitDepth) {
      // The members are written whole: a batch at a time, stringified as one array and cut out of it.
      for (let i = 0; i < value.length; i += BATCH) {
        const batch = indented(value.slice(i, i + BATCH), depth);
        yield `${i === 0 ? '' : ','}\n${inner}${batch.slice(2 + inner.length, batch.length - 2 - pad.length)}`;
      }
      yield `\n${pad}]`;
      return;
    }
    for (let i = 0; i < value.length; i++) {
      yield `${i === 0 ? '' : ','}\n${inner}`;
      const v: unknown = value[i];
      // In an array, what JSON cannot hold is written null, as JSON.stringify does.
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') yield 'null';
      else yield* jsonChunks(v, depth + 1, splitDepth);
    }
    yield `\n${pad}]`;
    return;
  }
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined && typeof v !== 'function' && typeof v !== 'symbol');
  if (entries.length === 0) {
    yield '{}';
    return;
  }
  yield '{';
  let first = true;
  for (const [k, v] of entries) {
    yield `${first ? '' : ','}\n${inner}${JSON.stringify(k)}: `;
    first = false;
    yield* jsonChunks(v, depth + 1, splitDepth);
  }
  yield `\n${pad}}`;
}

/**
 * A value as JSON.stringify(…, null, 2) writes it `depth` levels down: stringified inside as many
 * arrays, which indent it, and cut out of them (cheaper than re-indenting every line).
 */
function indented(value: unknown, depth: number): string {
  if (depth === 0) return JSON.stringify(value, null, 2) ?? 'null';
  let wrapped: unknown = value;
  let prefix = '';
  let suffix = '';
  for (let k = 1; k <= depth; k++) {
    wrapped = [wrapped];
    prefix += `[\n${'  '.repeat(k)}`;
    suffix = `\n${'  '.repeat(k - 1)}]${suffix}`;
  }
  const text = JSON.stringify(wrapped, null, 2);
  return text.slice(prefix.length, text.length - suffix.length);
}

/** Writes chunks to a stream, waiting whenever it asks to. */
export async function writeChunks(chunks: Iterable<string>, out: Writable): Promise<void> {
  let batch = '';
  for (const chunk of chunks) {
    batch += chunk;
    if (batch.length < 64 * 1024) continue;
    if (!out.write(batch)) await once(out, 'drain');
    batch = '';
  }
  if (batch && !out.write(batch)) await once(out, 'drain');
}

/** Pretty JSON and a newline to a file (made with its directory) or to stdout, without building one string. */
export async function writeJson(value: unknown, file?: string): Promise<void> {
  const chunks = (function* () {
    yield* jsonChunks(value);
    yield '\n';
  })();
  if (!file) {
    await writeChunks(chunks, process.stdout);
    return;
  }
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const out = createWriteStream(file);
  await writeChunks(chunks, out);
  out.end();
  await once(out, 'finish');
}
