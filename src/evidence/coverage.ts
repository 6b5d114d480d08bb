/**
 * Spans of time, epoch ms, inclusive at both ends: what a source has proven it read in full.
 * Pure arithmetic, shared by every source and by the check that decides whether an instance's
 * evidence window is covered.
 */
export interface Span {
  from: number;
  to: number;
}

/** Sorted, disjoint spans; overlapping or touching ones (within 1 ms) are joined. */
export function mergeSpans(spans: readonly Span[]): Span[] {
  const sorted = spans.filter((s) => s.to >= s.from).sort((a, b) => a.from - b.from);
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.from <= last.to + 1) last.to = Math.max(last.to, s.to);
    else out.push({ from: s.from, to: s.to });
  }
  return out;
}

/** The parts of `want` that `have` does not cover, oldest first. */
export function uncovered(want: Span, have: readonly Span[]): Span[] {
  if (want.to < want.from) return [];
  const out: Span[] = [];
  let cursor = want.from;
  for (const s of mergeSpans(have)) {
    if (s.to < cursor) continue;
    if (s.from > want.to) break;
    if (s.from > cursor) out.push({ from: cursor, to: s.from - 1 });
    cursor = Math.max(cursor, s.to + 1);
    if (cursor > want.to) break;
  }
  if (cursor <= want.to) out.push({ from: cursor, to: want.to });
  return out;
}

/** Spans cut at `max`: a clock that moved backwards must not leave coverage of a future it never read. */
export function clampSpans(spans: readonly Span[], max: number): Span[] {
  return spans.flatMap((s) => (s.from > max ? [] : [{ from: s.from, to: Math.min(s.to, max) }]));
}

export const isoSpan = (s: Span) => `${new Date(s.from).toISOString()} to ${new Date(s.to).toISOString()}`;

/**
 * A digest lists the log files delivered in its hour, and a file holds what happened up to some
 * minutes before its delivery: files delivered without a break from A to B prove what happened from
 * A to B - settle (what happened later may be in a file of the next hour's digest).
 */
export function deliveredToHappened(delivered: readonly Span[], settle: number): Span[] {
  return mergeSpans(delivered).flatMap((s) => (s.to - settle >= s.from ? [{ from: s.from, to: s.to - settle }] : []));
}
