import v8 from 'node:v8';

/**
 * V8 tuned for what pristine runs: a cycle sweeps much of its code over a fleet for well under a
 * second, then sleeps; CPU is what it costs, a pause of a few milliseconds costs nothing. Set by the
 * CLI's entry (cli.ts) before the rest of pristine loads, and by the bench's (which measures what the
 * CLI runs). A flag the user gives node (on its command line or in NODE_OPTIONS, either spelling, with
 * or without `no-`) wins.
 *
 * - `--interrupt-budget`: V8 optimises a function once it has spent an "interrupt budget" of
 *   bytecode; by default (66 KB in Node 20's V8) the cycle's code is compiled by TurboFan, on
 *   background threads, while it is still running once, and much of it again after a deoptimisation.
 *   Thirty-two times the budget keeps short-lived code in the interpreter and baseline tiers and
 *   optimises what stays hot: `npm run bench` measured about 10% less CPU for the first cycle of
 *   10,000 instances with sixteen times the default than with the default, and 7% less again with
 *   thirty-two times (medians of runs side by side, 2026-12-03). Code left in those tiers makes an
 *   object for each step of a `for ... of` iterator (and each array destructuring), which TurboFan
 *   would have optimised away: the loops over a cycle's many items (activities, inventory rows,
 *   packages, findings) are indexed for that reason.
 * - `--no-concurrent-marking`: a first cycle grows the heap past V8's first limit, and the full
 *   collection that follows marks ~100 MB. Marked on the main thread, in increments between the
 *   cycle's work, it costs less CPU in all than marked by helper threads alongside it: `npm run
 *   bench` measured 0.1 to 0.2 CPU-s less for that first cycle, and the same for the next ones.
 * - `--no-parallel-scavenge`: the young generation is collected by the main thread alone. A cycle's
 *   young collections are many and short; shared with a helper thread they cost more CPU in all
 *   (`npm run bench`: 0.03 to 0.1 CPU-s less for the first cycle without, in each of five runs side
 *   by side), and pristine's pauses do not matter.
 */
export const TUNED_V8_FLAGS: readonly string[] = ['--interrupt-budget=2162688', '--no-concurrent-marking', '--no-parallel-scavenge'];

/** A flag's name as V8 reads it: no dashes before, `_` as `-`, no `no-`, no value. */
const flagName = (arg: string): string =>
  (arg.replace(/^--?/, '').split('=')[0] ?? '').replace(/_/g, '-').replace(/^no-/, '');

/** The flags of TUNED_V8_FLAGS the user did not set themselves. */
export function flagsToSet(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].filter((a) => a.startsWith('-')).map(flagName));
  return TUNED_V8_FLAGS.filter((f) => !given.has(flagName(f)));
}

export const appliedV8Flags: readonly string[] = flagsToSet(process.execArgv, process.env['NODE_OPTIONS']);
for (const flag of appliedV8Flags) v8.setFlagsFromString(flag);
