import { describe, expect, it } from 'vitest';
import { inAnyWindow, inWindow, parseWindow } from '../../src/core/windows.js';
import { parsePolicyText } from '../../src/policy/load.js';

const at = (iso: string) => Date.parse(iso);

// Calendar used below (checked against the Gregorian calendar):
// 2026-01-05 Mon, 2026-01-06 Tue, 2026-01-07 Wed, 2026-01-09 Fri, 2026-01-10 Sat, 2026-01-11 Sun.
// Europe/Berlin: CET (UTC+1) until Sun 2026-03-29 01:00 UTC, CEST (UTC+2) until Sun 2026-10-25 01:00 UTC.
// America/New_York in January: EST (UTC-5). Asia/Kolkata: IST (UTC+05:30), no DST.

describe('parseWindow', () => {
  it('reads days, start and end in minutes after midnight, and the zone', () => {
    // Prepare
    const text = 'Mon-Fri 09:00-17:30 Europe/Berlin';

    // Act
    const w = parseWindow(text);

    // Assess
    expect(w.text).toBe(text);
    expect([...w.days].sort()).toEqual([1, 2, 3, 4, 5]);
    expect(w.start).toBe(9 * 60);
    expect(w.end).toBe(17 * 60 + 30);
    expect(w.timeZone).toBe('Europe/Berlin');
  });

  it.each([
    ['Mon-Fri', [1, 2, 3, 4, 5]],
    ['Fri-Mon', [0, 1, 5, 6]],
    ['Mon,Wed', [1, 3]],
    ['Mon,Wed-Thu,Sat', [1, 3, 4, 6]],
    ['Sun', [0]],
    ['Daily', [0, 1, 2, 3, 4, 5, 6]],
    ['daily', [0, 1, 2, 3, 4, 5, 6]],
    ['*', [0, 1, 2, 3, 4, 5, 6]],
    ['mon-fri', [1, 2, 3, 4, 5]],
  ])('reads the days %j', (days, expected) => {
    // Act
    const w = parseWindow(`${days} 02:00-06:00 UTC`);

    // Assess
    expect([...w.days].sort()).toEqual(expected);
  });

  it('rejects a day range with three names ("Mon-Fri-Sun") instead of silently reading Mon-Fri', () => {
    // Act
    const act = () => parseWindow('Mon-Fri-Sun 09:00-17:00 UTC');

    // Assess
    expect(act).toThrow(/Mon-Fri-Sun/);
  });

  it('accepts 24:00 as the end of the day', () => {
    // Act
    const w = parseWindow('Daily 23:00-24:00 UTC');

    // Assess
    expect(w.end).toBe(1440);
  });

  it.each([
    ['Mon-Fri 9:00-17:00 Europe/Berlin', /expected "DAYS HH:MM-HH:MM TIMEZONE"/],
    ['Mon-Fri 09:00 17:00 Europe/Berlin', /expected "DAYS HH:MM-HH:MM TIMEZONE"/],
    ['09:00-17:00 Europe/Berlin', /expected "DAYS HH:MM-HH:MM TIMEZONE"/],
    ['Mon-Fri 09:00-17:00', /expected "DAYS HH:MM-HH:MM TIMEZONE"/],
    ['', /expected "DAYS HH:MM-HH:MM TIMEZONE"/],
    ['Mon-Fry 09:00-17:00 UTC', /unknown day "Fry"/],
    ['Monday 09:00-17:00 UTC', /unknown day "Monday"/],
    ['Mon,,Wed 09:00-17:00 UTC', /empty day in "Mon,,Wed"/],
    ['Mon-Fri 09:00-17:00 Mars/Olympus', /unknown time zone "Mars\/Olympus"/],
    ['Mon-Fri 09:00-25:00 UTC', /invalid time in "Mon-Fri 09:00-25:00 UTC"/],
    ['Mon-Fri 25:00-26:00 UTC', /invalid time/],
    ['Mon-Fri 24:00-02:00 UTC', /invalid time/],
    ['Mon-Fri 09:60-17:00 UTC', /invalid time/],
    ['Mon-Fri 09:00-24:30 UTC', /invalid time/],
    ['Mon-Fri 09:00-09:00 UTC', /empty window "Mon-Fri 09:00-09:00 UTC"/],
  ])('rejects %j with a message saying what is wrong', (text, message) => {
    // Act
    const act = () => parseWindow(text);

    // Assess
    expect(act).toThrow(message);
  });
});

describe('inWindow: days', () => {
  const weekdays = parseWindow('Mon-Fri 09:00-17:00 UTC');

  it.each([
    ['2026-01-05T09:00:00Z', true], // Monday, at the start
    ['2026-01-05T16:59:00Z', true], // Monday, the last minute
    ['2026-01-05T17:00:00Z', false], // the end is not in the window
    ['2026-01-05T08:59:00Z', false],
    ['2026-01-09T12:00:00Z', true], // Friday
    ['2026-01-10T12:00:00Z', false], // Saturday
    ['2026-01-11T12:00:00Z', false], // Sunday
  ])('Mon-Fri 09:00-17:00 UTC at %s: %s', (when, expected) => {
    // Act
    const inside = inWindow(weekdays, at(when));

    // Assess
    expect(inside).toBe(expected);
  });

  it.each([
    ['2026-01-09T03:00:00Z', true], // Friday
    ['2026-01-10T03:00:00Z', true], // Saturday
    ['2026-01-11T03:00:00Z', true], // Sunday
    ['2026-01-05T03:00:00Z', true], // Monday
    ['2026-01-06T03:00:00Z', false], // Tuesday
    ['2026-01-07T03:00:00Z', false], // Wednesday
  ])('Fri-Mon (wrapping over the week end) at %s: %s', (when, expected) => {
    // Prepare
    const w = parseWindow('Fri-Mon 02:00-06:00 UTC');

    // Act
    const inside = inWindow(w, at(when));

    // Assess
    expect(inside).toBe(expected);
  });

  it.each([
    ['2026-01-05T03:00:00Z', true], // Monday
    ['2026-01-06T03:00:00Z', false], // Tuesday
    ['2026-01-07T03:00:00Z', true], // Wednesday
  ])('a list Mon,Wed at %s: %s', (when, expected) => {
    // Prepare
    const w = parseWindow('Mon,Wed 02:00-06:00 UTC');

    // Act
    const inside = inWindow(w, at(when));

    // Assess
    expect(inside).toBe(expected);
  });

  it('Daily covers every day of the week', () => {
    // Prepare
    const w = parseWindow('Daily 02:00-06:00 UTC');
    const days = ['05', '06', '07', '08', '09', '10', '11'].map((d) => at(`2026-01-${d}T03:00:00Z`));

    // Act
    const inside = days.map((d) => inWindow(w, d));

    // Assess
    expect(inside).toEqual([true, true, true, true, true, true, true]);
  });

  it('reads midnight as 00:00, not 24:00', () => {
    // Prepare
    const w = parseWindow('Daily 00:00-01:00 UTC');

    // Act
    const atMidnight = inWindow(w, at('2026-01-06T00:00:00Z'));
    const justBefore = inWindow(w, at('2026-01-05T23:59:00Z'));

    // Assess
    expect(atMidnight).toBe(true);
    expect(justBefore).toBe(false);
  });

  it('a window ending at 24:00 runs to the last minute of the day', () => {
    // Prepare
    const w = parseWindow('Mon 23:00-24:00 UTC');

    // Act
    const lastMinute = inWindow(w, at('2026-01-05T23:59:00Z'));
    const nextDay = inWindow(w, at('2026-01-06T00:00:00Z'));

    // Assess
    expect(lastMinute).toBe(true);
    expect(nextDay).toBe(false);
  });
});

describe('inWindow: past midnight', () => {
  const fridayNight = parseWindow('Fri 22:00-04:00 UTC');

  it.each([
    ['2026-01-09T21:59:00Z', false], // Friday, before it opens
    ['2026-01-09T22:00:00Z', true], // Friday, when it opens
    ['2026-01-09T23:00:00Z', true], // Friday 23:00
    ['2026-01-10T00:00:00Z', true], // Saturday midnight: still Friday's window
    ['2026-01-10T03:00:00Z', true], // Saturday 03:00: still Friday's window
    ['2026-01-10T04:00:00Z', false], // Saturday 04:00: closed
    ['2026-01-10T23:00:00Z', false], // Saturday 23:00: Saturday has no window
    ['2026-01-11T03:00:00Z', false], // Sunday 03:00: would be Saturday's window
    ['2026-01-09T03:00:00Z', false], // Friday 03:00: would be Thursday's window
  ])('Fri 22:00-04:00 UTC belongs to Friday: at %s %s', (when, expected) => {
    // Act
    const inside = inWindow(fridayNight, at(when));

    // Assess
    expect(inside).toBe(expected);
  });

  it('Sun 22:00-04:00 runs into Monday morning (the week wraps)', () => {
    // Prepare
    const w = parseWindow('Sun 22:00-04:00 UTC');

    // Act
    const mondayMorning = inWindow(w, at('2026-01-05T03:00:00Z'));
    const sundayMorning = inWindow(w, at('2026-01-11T03:00:00Z'));

    // Assess
    expect(mondayMorning).toBe(true);
    expect(sundayMorning).toBe(false);
  });
});

describe('inWindow: time zones', () => {
  it('reads the same instant in the window’s zone: UTC vs America/New_York', () => {
    // Prepare
    const utc = parseWindow('Mon-Fri 09:00-17:00 UTC');
    const newYork = parseWindow('Mon-Fri 09:00-17:00 America/New_York');
    const mondayMorningUtc = at('2026-01-05T10:00:00Z'); // 05:00 in New York
    const mondayEveningUtc = at('2026-01-05T20:00:00Z'); // 15:00 in New York

    // Act
    const results = [inWindow(utc, mondayMorningUtc), inWindow(newYork, mondayMorningUtc), inWindow(utc, mondayEveningUtc), inWindow(newYork, mondayEveningUtc)];

    // Assess
    expect(results).toEqual([true, false, false, true]);
  });

  it('takes the day of the week from the zone, not from UTC', () => {
    // Prepare: Monday 03:00 UTC is still Sunday 22:00 in New York
    const sundayNewYork = parseWindow('Sun 21:00-23:00 America/New_York');
    const mondayNewYork = parseWindow('Mon 00:00-23:00 America/New_York');
    const instant = at('2026-01-05T03:00:00Z');

    // Act
    const sunday = inWindow(sundayNewYork, instant);
    const monday = inWindow(mondayNewYork, instant);

    // Assess
    expect(sunday).toBe(true);
    expect(monday).toBe(false);
  });

  it.each([
    ['2026-01-05T03:29:00Z', false], // 08:59 IST
    ['2026-01-05T03:30:00Z', true], // 09:00 IST
    ['2026-01-05T04:29:00Z', true], // 09:59 IST
    ['2026-01-05T04:30:00Z', false], // 10:00 IST
  ])('applies the half-hour offset of Asia/Kolkata (+05:30): at %s %s', (when, expected) => {
    // Prepare
    const w = parseWindow('Daily 09:00-10:00 Asia/Kolkata');

    // Act
    const inside = inWindow(w, at(when));

    // Assess
    expect(inside).toBe(expected);
  });

  it.each([
    // Monday 07:30 UTC is 08:30 in Berlin in winter (CET), 09:30 in summer (CEST)
    ['2026-03-23T07:30:00Z', false],
    ['2026-03-30T07:30:00Z', true],
    // Monday 15:30 UTC is 17:30 in summer (CEST), 16:30 after the clocks go back (CET)
    ['2026-10-19T15:30:00Z', false],
    ['2026-10-26T15:30:00Z', true],
  ])('follows Berlin’s daylight saving time: Mon-Fri 09:00-17:00 Europe/Berlin at %s %s', (when, expected) => {
    // Prepare
    const w = parseWindow('Mon-Fri 09:00-17:00 Europe/Berlin');

    // Act
    const inside = inWindow(w, at(when));

    // Assess
    expect(inside).toBe(expected);
  });
});

describe('inAnyWindow', () => {
  const night = parseWindow('Daily 01:00-02:00 UTC');
  const noon = parseWindow('Daily 12:00-13:00 UTC');

  it('is true when no windows are set, or the list is empty', () => {
    // Act
    const none = inAnyWindow(undefined, at('2026-01-05T08:00:00Z'));
    const empty = inAnyWindow([], at('2026-01-05T08:00:00Z'));

    // Assess
    expect(none).toBe(true);
    expect(empty).toBe(true);
  });

  it('is true inside any one of the windows and false outside all of them', () => {
    // Act
    const inFirst = inAnyWindow([night, noon], at('2026-01-05T01:30:00Z'));
    const inSecond = inAnyWindow([night, noon], at('2026-01-05T12:30:00Z'));
    const inNeither = inAnyWindow([night, noon], at('2026-01-05T08:00:00Z'));

    // Assess
    expect(inFirst).toBe(true);
    expect(inSecond).toBe(true);
    expect(inNeither).toBe(false);
  });
});

describe('windows in a policy', () => {
  const policyWith = (windows: string) => `
policies:
  - name: web
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      replace:
        windows: ${windows}
`;

  it('rejects a bad window, naming the file and the field', () => {
    // Act
    const { policies, problems } = parsePolicyText(policyWith('["Mon-Fri 09:00-17:00 Mars/Olympus"]'), 'policies/web.yaml');

    // Assess
    expect(policies).toEqual([]);
    expect(problems).toEqual([
      'policies/web.yaml: policies[0].respond.replace.windows[0]: invalid window "Mon-Fri 09:00-17:00 Mars/Olympus": unknown time zone "Mars/Olympus"',
    ]);
  });

  it('names the position of the bad window in the list', () => {
    // Act
    const { problems } = parsePolicyText(policyWith('["Sat,Sun 02:00-06:00 UTC", "Mon 25:00-26:00 UTC"]'), 'p.yaml');

    // Assess
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^p\.yaml: policies\[0\]\.respond\.replace\.windows\[1\]: invalid window "Mon 25:00-26:00 UTC": invalid time/);
  });

  it('loads good windows parsed, ready for the planner', () => {
    // Act
    const { policies, problems } = parsePolicyText(policyWith('["Mon-Fri 09:00-17:00 Europe/Berlin"]'), 'p.yaml');

    // Assess
    expect(problems).toEqual([]);
    const w = policies[0]?.respond.replace.windows?.[0];
    expect(w?.timeZone).toBe('Europe/Berlin');
    expect(w?.start).toBe(540);
    expect(w?.text).toBe('Mon-Fri 09:00-17:00 Europe/Berlin');
  });

  it('rejects an empty list of windows', () => {
    // Act
    const { problems } = parsePolicyText(policyWith('[]'), 'p.yaml');

    // Assess
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^p\.yaml: policies\[0\]\.respond\.replace\.windows: /);
  });
});
