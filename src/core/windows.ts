/**
 * Maintenance windows: `Mon-Fri 09:00-17:00 Europe/Berlin`, `Sat,Sun 02:00-06:00 UTC`,
 * `Daily 22:00-04:00 America/New_York` (an end before the start runs past midnight).
 */
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const WINDOW = /^(\S+)\s+(\d{2}):(\d{2})-(\d{2}):(\d{2})\s+(\S+)$/;

export interface Window {
  text: string;
  days: ReadonlySet<number>;
  /** minutes after midnight, local to the zone */
  start: number;
  end: number;
  timeZone: string;
}

function dayIndex(name: string): number {
  const i = DAYS.findIndex((d) => d.toLowerCase() === name.toLowerCase());
  if (i < 0) throw new Error(`unknown day "${name}" (use ${DAYS.join(', ')})`);
  return i;
}

function parseDays(spec: string): Set<number> {
  if (/^(daily|\*)$/i.test(spec)) return new Set([0, 1, 2, 3, 4, 5, 6]);
  const days = new Set<number>();
  for (const part of spec.split(',')) {
    const names = part.split('-');
    if (names.length > 2) throw new Error(`bad day range "${part}"`);
    const [a, b] = names;
    if (a === undefined || a === '') throw new Error(`empty day in "${spec}"`);
    const from = dayIndex(a);
    const to = b === undefined ? from : dayIndex(b);
    for (let d = from; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === to) break;
    }
  }
  return days;
}

/** Throws an Error saying what is wrong with the window text. */
export function parseWindow(text: string): Window {
  const m = WINDOW.exec(text.trim());
  if (!m) throw new Error(`expected "DAYS HH:MM-HH:MM TIMEZONE", e.g. "Mon-Fri 09:00-17:00 Europe/Berlin"`);
  const [, days = '', h1 = '', m1 = '', h2 = '', m2 = '', timeZone = ''] = m;
  const start = Number(h1) * 60 + Number(m1);
  const end = Number(h2) * 60 + Number(m2);
  if (Number(h1) > 23 || Number(h2) > 24 || Number(m1) > 59 || Number(m2) > 59 || end > 1440) throw new Error(`invalid time in "${text}"`);
  if (start === end) throw new Error(`empty window "${text}"`);
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    throw new Error(`unknown time zone "${timeZone}"`);
  }
  return { text, days: parseDays(days), start, end, timeZone };
}

function localParts(at: number, timeZone: string): { day: number; minute: number } {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(new Date(at));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return { day: dayIndex(get('weekday')), minute: Number(get('hour')) * 60 + Number(get('minute')) };
}

export function inWindow(w: Window, at: number): boolean {
  const { day, minute } = localParts(at, w.timeZone);
  if (w.start < w.end) return w.days.has(day) && minute >= w.start && minute < w.end;
  // Past midnight: the window belongs to the day it starts on.
  return (w.days.has(day) && minute >= w.start) || (w.days.has((day + 6) % 7) && minute < w.end);
}

/** True when there are no windows, or `at` falls in one of them. */
export function inAnyWindow(windows: readonly Window[] | undefined, at: number): boolean {
  return !windows || windows.length === 0 || windows.some((w) => inWindow(w, at));
}
