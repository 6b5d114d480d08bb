import { z } from 'zod';
import { parseDuration } from './duration.js';
import { globProblem } from './glob.js';
import { parseShare, type Share as ShareValue } from './share.js';
import { parseWindow, type Window as WindowValue } from './windows.js';

export const Region = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'expected an AWS region such as us-east-1');

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

/** `25%` or a whole number. */
export const Share = z.union([z.string(), z.number()]).transform((value, ctx): ShareValue => {
  const share = parseShare(value);
  if (!share) {
    ctx.addIssue({ code: 'custom', message: `invalid share "${value}": expected a percentage such as 25% or a whole number` });
    return z.NEVER;
  }
  return share;
});

/** `Mon-Fri 09:00-17:00 Europe/Berlin` */
export const Window = z.string().transform((value, ctx): WindowValue => {
  try {
    return parseWindow(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `invalid window "${value}": ${err instanceof Error ? err.message : String(err)}` });
    return z.NEVER;
  }
});
