/**
 * The few error classes pristine throws. Each maps to an exit status in the CLI:
 * InputError -> 2 (bad flags, policy or manifest files; nothing was audited),
 * CollectError -> recorded as a gap in the evidence (the affected instances become `unknown`).
 */
export class InputError extends Error {
  override name = 'InputError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export class CollectError extends Error {
  override name = 'CollectError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A message fit for a user: the error's own message, never its stack. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { name?: string }).name;
    const base = err.message || code || 'unknown error';
    return code && code !== 'Error' && !base.startsWith(code) && !(err instanceof InputError) && !(err instanceof CollectError)
      ? `${code}: ${base}`
      : base;
  }
  return String(err);
}
