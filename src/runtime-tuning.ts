import v8 from 'node:v8';

/**
 * V8 tuned for what pristine runs: a cycle sweeps much of its code over a fleet for well under a
 * second, then sleeps. V8 optimises a function once it has spent an "interrupt budget" of bytecode;
 * by default (132 KB) the cycle's code is compiled by TurboFan, on background threads, while it is
 * still running once, and much of it again after a deoptimisation. Eight times the budget keeps
 * short-lived code in the interpreter and baseline tiers and optimises what stays hot: `npm run bench`
 * measured about 10% less CPU for the first cycle of 10,000 instances and 30% less for the next one.
 * Imported first by the CLI (and by the bench, which measures what the CLI runs). A flag the user
 * gives node (on its command line or in NODE_OPTIONS) wins.
 */
export const TUNED_V8_FLAGS: readonly string[] = ['--interrupt-budget=1081344'];

/** The flags of TUNED_V8_FLAGS the user did not set themselves. */
export function flagsToSet(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map((a) => a.replace(/^--/, '').split('=')[0]?.replace(/_/g, '-'));
  return TUNED_V8_FLAGS.filter((f) => !given.includes(f.replace(/^--/, '').split('=')[0]));
}

export const appliedV8Flags: readonly string[] = flagsToSet(process.execArgv, process.env['NODE_OPTIONS']);
for (const flag of appliedV8Flags) v8.setFlagsFromString(flag);
