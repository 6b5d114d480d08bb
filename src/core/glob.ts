import picomatch from 'picomatch';

/**
 * Globs in policies follow IAM's reading: `*` matches any run of characters, `/` included,
 * so `arn:aws:iam::*:role/Deployer*` matches `arn:aws:iam::111122223333:role/Deployer-ci`.
 * Brackets must balance; braces and extglobs are not special.
 */
const OPTIONS: picomatch.PicomatchOptions = {
  bash: true,
  dot: true,
  strictBrackets: true,
  nobrace: true,
  noextglob: true,
  nonegate: true,
};

export type Matcher = (value: string) => boolean;

/** Throws an Error with picomatch's reason when the pattern is not a valid glob. */
export function compileGlob(pattern: string): Matcher {
  if (pattern.length === 0) throw new Error('empty glob');
  return picomatch(pattern, OPTIONS);
}

/** Null when the pattern compiles, else why not. */
export function globProblem(pattern: string): string | null {
  try {
    compileGlob(pattern);
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** A matcher that is true when any of the patterns matches. */
export function anyGlob(patterns: readonly string[]): Matcher {
  const matchers = patterns.map(compileGlob);
  return (value) => matchers.some((m) => m(value));
}

const cache = new WeakMap<readonly string[], Matcher>();

/** anyGlob, compiled once per (frozen, policy-owned) pattern list and remembering its answers: detectors run once per instance. */
export function cachedAnyGlob(patterns: readonly string[]): Matcher {
  let m = cache.get(patterns);
  if (!m) {
    m = memoized(anyGlob(patterns));
    cache.set(patterns, m);
  }
  return m;
}

/** A matcher that remembers its answer per string: for globs asked about the same few values again and again. */
export function memoized(match: Matcher): Matcher {
  const answers = new Map<string, boolean>();
  return (value) => {
    let yes = answers.get(value);
    if (yes === undefined) {
      yes = match(value);
      // Bounded: a glob asked about endless distinct strings stops remembering rather than growing.
      if (answers.size < 100_000) answers.set(value, yes);
    }
    return yes;
  };
}
