/** `25%` as a share of a group (0.25), or a plain count. */
export type Share = { kind: 'percent'; value: number } | { kind: 'count'; value: number };

export function parseShare(input: string | number): Share | null {
  if (typeof input === 'number') return Number.isInteger(input) && input >= 0 ? { kind: 'count', value: input } : null;
  const m = /^(\d+(?:\.\d+)?)%$/.exec(input.trim());
  if (!m) return null;
  const value = Number(m[1]);
  return value <= 100 ? { kind: 'percent', value: value / 100 } : null;
}

/** How many of `size` the share allows; at least one, so a small group can still be worked through one at a time. */
export function allowedOf(share: Share, size: number): number {
  const n = share.kind === 'count' ? share.value : Math.floor(share.value * size);
  return Math.max(1, n);
}
