import cron from 'node-cron';
import { pino, type Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { isStale, nextFireTimes, schedulePeriodMs, startSchedule, validateSchedule } from '../../src/daemon/schedule.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** A pino logger whose lines land in an array. */
function captureLogger(): { logger: Logger; lines: { level: number; msg: string; [k: string]: unknown }[] } {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
  return { logger, lines };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe('validateSchedule', () => {
  it.each(['*/10 * * * *', '*/2 * * * * *', '0 3 * * *', '0 9 * * MON-FRI', '@hourly', '15 */6 * * *'])('accepts %j', (expr) => {
    expect(() => validateSchedule(expr)).not.toThrow();
  });

  it.each(['nope', '61 * * * *', '', '* * * *', '* * * * * * *', '*/0 * * * *', '0 0 31 2 *', '0 25 * * *'])('rejects %j', (expr) => {
    expect(() => validateSchedule(expr)).toThrow(InputError);
    expect(() => validateSchedule(expr)).toThrow(`--schedule: invalid cron expression ${JSON.stringify(expr)}`);
  });

  it('says why', () => {
    expect(() => validateSchedule('61 * * * *')).toThrow(/\(61 is a invalid expression for minute\)$/);
  });
});

describe('schedulePeriodMs', () => {
  it('is the gap between runs', () => {
    expect(schedulePeriodMs('*/10 * * * *')).toBe(600_000);
    expect(schedulePeriodMs('*/2 * * * * *')).toBe(2_000);
    expect(schedulePeriodMs('@hourly')).toBe(HOUR);
    expect(schedulePeriodMs('0 3 * * *')).toBe(DAY);
  });

  it('takes the longest gap of an irregular schedule', () => {
    const wednesday = new Date(2026, 5, 3, 12, 0, 0); // June: no DST change in the following weeks
    expect(schedulePeriodMs('0 9 * * 1-5', wednesday)).toBe(3 * DAY);
    expect(schedulePeriodMs('0 9,17 * * *', wednesday)).toBe(16 * HOUR);
    expect(schedulePeriodMs('*/7 * * * *', wednesday)).toBe(7 * MIN);
  });

  it('lists fire times after the given time', () => {
    const from = new Date(2026, 5, 3, 10, 5, 0);
    expect(nextFireTimes('*/10 * * * *', from, 3)).toEqual([
      new Date(2026, 5, 3, 10, 10, 0).getTime(),
      new Date(2026, 5, 3, 10, 20, 0).getTime(),
      new Date(2026, 5, 3, 10, 30, 0).getTime(),
    ]);
    expect(nextFireTimes('0 0 L * *', from, 2)).toEqual([new Date(2026, 5, 30).getTime(), new Date(2026, 6, 31).getTime()]);
    // Exactly on a fire time: the next one.
    expect(nextFireTimes('0 9 * * *', new Date(2026, 5, 3, 9, 0, 0), 1)).toEqual([new Date(2026, 5, 4, 9, 0, 0).getTime()]);
  });

  it("agrees with node-cron's own next runs", () => {
    for (const expr of ['0 0 L * *', '0 12 * * 1#2', '30 4 15W * *', '0 0 * * 5L', '0 6 1,15 * *', '0 0 29 2 *']) {
      const task = cron.createTask(expr, () => undefined);
      try {
        const theirs = task.getNextRuns(4).map((d) => d.getTime());
        expect(nextFireTimes(expr, new Date(), 4), expr).toEqual(theirs);
      } finally {
        void task.destroy();
      }
    }
    expect(cron.getTasks().size).toBe(0);
  });
});

describe('isStale', () => {
  const start = 1_000_000_000;
  const period = 10 * MIN;
  it('counts from process start until a cycle finishes', () => {
    expect(isStale(null, start, period, start + 2 * period + 60_000)).toBe(false);
    expect(isStale(null, start, period, start + 2 * period + 60_001)).toBe(true);
  });
  it('counts from the last finished cycle', () => {
    const last = start + 5 * period;
    expect(isStale(last, start, period, last + 2 * period)).toBe(false);
    expect(isStale(last, start, period, last + 2 * period + 60_001)).toBe(true);
  });
});

describe('startSchedule', () => {
  it('runs on schedule, never overlaps a slow run, and stop() waits for it', async () => {
    const { logger, lines } = captureLogger();
    let started = 0;
    let finished = 0;
    let concurrent = 0;
    let maxConcurrent = 0;
    const handle = startSchedule(
      '* * * * * *',
      async () => {
        started++;
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        await sleep(2_500);
        concurrent--;
        finished++;
      },
      logger,
    );
    expect(handle.nextRun()).toBeInstanceOf(Date);
    await until(() => started === 1, 2_000);
    expect(handle.running()).toBe(true);
    // The next tick comes while the first run is still going: it is skipped and logged at info.
    await until(() => lines.some((l) => l.msg.includes('skipping')), 2_000);
    expect(lines.find((l) => l.msg.includes('skipping'))?.level).toBe(30);
    expect(started).toBe(1);

    await handle.stop();
    expect(finished).toBe(1);
    expect(handle.running()).toBe(false);
    expect(handle.nextRun()).toBeNull();
    expect(maxConcurrent).toBe(1);

    // No more runs once stopped.
    await sleep(1_100);
    expect(started).toBe(1);
  });

  it('logs a failed run and goes on', async () => {
    const { logger, lines } = captureLogger();
    let calls = 0;
    const handle = startSchedule(
      '* * * * * *',
      async () => {
        calls++;
        throw new Error(`boom ${calls}`);
      },
      logger,
    );
    try {
      await until(() => calls >= 2, 3_000);
    } finally {
      await handle.stop();
    }
    const failures = lines.filter((l) => l.level === 50);
    expect(failures.length).toBeGreaterThanOrEqual(1);
    expect(failures[0]?.msg).toBe('scheduled cycle failed: boom 1');
  });

  it('rejects an invalid expression before scheduling anything', () => {
    expect(() => startSchedule('nope', async () => undefined)).toThrow(InputError);
    expect(cron.getTasks().size).toBe(0);
  });
});
