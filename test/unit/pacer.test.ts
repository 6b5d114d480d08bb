// LookupEvents' 2 calls a second are counted where they arrive: a call keeps its place until a window
// after its answer, so no delay on the way can bring three into one window.
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Pacer } from '../../src/collect/pacer.js';

describe('Pacer', () => {
  it('lets a call start only when fewer than the limit were answered within the window before', async () => {
    const pacer = new Pacer(2, 100);
    const calls: Array<{ start: number; end: number }> = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, n) => {
        const release = await pacer.acquire();
        const start = Date.now();
        await sleep([5, 40, 15, 0, 30, 10, 25, 5][n] as number);
        const end = Date.now();
        release();
        calls.push({ start, end });
      }),
    );
    for (const c of calls) {
      // The calls that still counted when c started: in flight, or answered less than a window before.
      const counting = calls.filter((d) => d !== c && d.start <= c.start && c.start < d.end + 100);
      expect(counting.length).toBeLessThan(2);
    }
    // And it is not slower than it must be: 8 calls, two at a time, a window after each answer.
    const first = Math.min(...calls.map((c) => c.start));
    const last = Math.max(...calls.map((c) => c.start));
    expect(last - first).toBeLessThan(4 * (100 + 40) + 100);
  });

  it('frees the place of a call that failed', async () => {
    const pacer = new Pacer(1, 50);
    const release = await pacer.acquire();
    release();
    release(); // twice is once
    const t0 = Date.now();
    (await pacer.acquire())();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
  });
});
