import { z } from 'zod';
import { parseDuration } from './duration.js';
import { globProblem } from './glob.js';

/** A glob, checked when the policy is loaded so a bad one fails validation, not the audit. */
export const Glob = z.string().superRefine((value, ctx) => {
  const problem = globProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: `invalid glob "${value}": ${problem}` });
});

/** `10m`, `24h`, `7d`: parsed to milliseconds. */
export const Duration = z.string().transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: `invalid duration "${value}": expected a number and a unit, e.g. 90s, 10m, 24h, 7d` });
    return z.NEVER;
  }
  return ms;
});
