import cron, { type Logger as CronLogger, type ScheduledTask, type TaskContext } from 'node-cron';
import { describeError, InputError } from '../errors.js';
import { createLogger, type Logger } from '../logger.js';

/**
 * Checks a `--schedule` cron expression the way node-cron will read it: 5 fields
 * (minute hour day-of-month month day-of-week) or 6 with seconds first; names (MON-FRI, JAN),
 * `@hourly`-style nicknames and node-cron's L/W/# tokens are accepted. Times are the process's
 * local time zone.
 */
export function validateSchedule(expr: string): void {
  let ok = cron.validate(expr);
  let reason: string | undefined;
  // validate() and parse() (what schedule() runs) take slightly different paths: require both.
  try {
    cron.parse(expr);
  } catch (err) {
    ok = false;
    reason = describeError(err);
  }
  if (!ok) {
    throw new InputError(`--schedule: invalid cron expression ${JSON.stringify(expr)}${reason ? ` (${reason})` : ''}`);
  }
}

/** How many fire times schedulePeriodMs looks at: enough to span a weekend for weekday-only schedules. */
const PERIOD_SAMPLE_RUNS = 10;
/** How far ahead it looks, as node-cron does (100 years). */
const MAX_SCAN_DAYS = 366 * 100;

function numbers(values: readonly (number | string)[]): number[] {
  return values.filter((v): v is number => typeof v === 'number').sort((a, b) => a - b);
}

/**
 * The next `count` fire times after `from` (ms since the epoch, ascending), fewer if the schedule
 * fires fewer times within 100 years. node-cron can list next runs only from the current time
 * (`getNextRuns`), so this walks the calendar itself: for each local day whose month is in the
 * expression, it takes the first hour:minute:second of the expression after `from` and asks the
 * task's own matcher (`match`) whether it fires then; day-of-month and day-of-week rules
 * (ranges, names, L, W, #) are thus node-cron's own.
 */
export function nextFireTimes(expr: string, from: Date, count: number): number[] {
  validateSchedule(expr);
  const fields = cron.parse(expr);
  const seconds = numbers(fields.second);
  const minutes = numbers(fields.minute);
  const hours = numbers(fields.hour);
  const months = new Set(numbers(fields.month));
  // A task that is never started: it only answers match(); destroy() removes it from node-cron's registry.
  const task: ScheduledTask = cron.createTask(expr, () => undefined);
  try {
    const out: number[] = [];
    let after = from.getTime();
    const start = new Date(after);
    for (let i = 0; i < MAX_SCAN_DAYS && out.length < count; i++) {
      const day = new Date(start.getFullYear(), start.getMonth(), start.getDate() + i);
      if (!months.has(day.getMonth() + 1)) continue;
      // Several fire times may fall on one day: keep looking at it until it has no more.
      for (;;) {
        const t = firstTimeAfter(day, after, hours, minutes, seconds);
        if (t === null || !task.match(new Date(t))) break;
        out.push(t);
        after = t;
        if (out.length >= count) break;
      }
    }
    return out;
  } finally {
    void task.destroy();
  }
}

function firstTimeAfter(day: Date, after: number, hours: number[], minutes: number[], seconds: number[]): number | null {
  const y = day.getFullYear();
  const mo = day.getMonth();
  const d = day.getDate();
  for (const h of hours) {
    // Skip whole hours and minutes that end before `after` (up to an hour of DST slack).
    if (new Date(y, mo, d, h, 59, 59).getTime() + 3_600_000 <= after) continue;
    for (const mi of minutes) {
      if (new Date(y, mo, d, h, mi, 59).getTime() + 3_600_000 <= after) continue;
      for (const s of seconds) {
        const t = new Date(y, mo, d, h, mi, s).getTime();
        if (t > after) return t;
      }
    }
  }
  return null;
}

/**
 * The gap between runs to expect, in ms: the longest gap among the next ten fire times after
 * `from` (default now). The longest rather than the most common, so an irregular schedule (weekdays
 * only, 09:00 and 17:00) does not make the daemon look stale over a weekend or a night:
 * `*\/10 * * * *` gives 600000, `0 9 * * 1-5` three days.
 */
export function schedulePeriodMs(expr: string, from: Date = new Date()): number {
  const runs = nextFireTimes(expr, from, PERIOD_SAMPLE_RUNS);
  let longest = 0;
  for (let i = 1; i < runs.length; i++) longest = Math.max(longest, (runs[i] ?? 0) - (runs[i - 1] ?? 0));
  if (runs.length < 2 || longest <= 0) {
    throw new InputError(`--schedule: cron expression ${JSON.stringify(expr)} fires less than twice in 100 years`);
  }
  return longest;
}

/** Stale when no cycle finished within 2 × period + 60 s (counted from process start before the first). */
export function isStale(lastFinishedAt: number | null, startedAt: number, periodMs: number, now: number): boolean {
  const since = lastFinishedAt ?? startedAt;
  return now - since > 2 * periodMs + 60_000;
}

export interface ScheduleHandle {
  /** Stops scheduling, then waits for a run in progress to finish. */
  stop(): Promise<void>;
  /** True while a run is in progress. */
  running(): boolean;
  /** The next fire time, or null once stopped. */
  nextRun(): Date | null;
}

function cronLogger(log: Logger): CronLogger {
  const child = log.child({ component: 'node-cron' });
  const write = (level: 'debug' | 'info' | 'warn' | 'error', message: string | Error, err?: Error): void => {
    if (message instanceof Error) child[level]({ err: message }, message.message);
    else if (err) child[level]({ err }, message);
    else child[level](message);
  };
  return {
    info: (m) => write('info', m),
    warn: (m) => write('warn', m),
    error: (m, e) => write('error', m, e),
    debug: (m, e) => write('debug', m, e),
  };
}

/**
 * Runs `run` on the cron schedule `expr`, never two at once: a tick that comes while a run is in
 * progress is skipped (and logged at info). A run that throws or rejects is logged and the schedule
 * goes on. node-cron's own messages (missed ticks after a blocked event loop) go to the logger too.
 */
export function startSchedule(expr: string, run: () => Promise<void>, logger?: Logger): ScheduleHandle {
  validateSchedule(expr);
  const log = logger ?? createLogger('info');
  let inFlight: Promise<void> | null = null;
  let stopped = false;

  const tick = (ctx: TaskContext): void => {
    if (stopped) return;
    if (inFlight) {
      log.info({ schedule: expr, tick: ctx.date.toISOString() }, 'previous cycle still running; skipping this tick');
      return;
    }
    inFlight = (async () => {
      try {
        await run();
      } catch (err) {
        log.error({ err, schedule: expr }, `scheduled cycle failed: ${describeError(err)}`);
      }
    })().finally(() => {
      inFlight = null;
    });
    // Nothing is returned to node-cron: overlap is decided here, so its own noOverlap is not used.
  };

  const task = cron.schedule(expr, tick, { name: 'pristine-cycle', logger: cronLogger(log) });

  let stopping: Promise<void> | null = null;
  return {
    stop(): Promise<void> {
      stopping ??= (async () => {
        stopped = true;
        await task.destroy();
        if (inFlight) await inFlight;
      })();
      return stopping;
    },
    running: () => inFlight !== null,
    nextRun: () => (stopped ? null : task.getNextRun()),
  };
}
