// The pure parts of the evidence sources: coverage arithmetic, what LookupEvents reads and when the
// reconciler runs, the wire form of DescribeSessions' filter, trail file keys and queue messages.
import { describe, expect, it } from 'vitest';
import { clampSpans, deliveredToHappened, mergeSpans, uncovered } from '../../src/evidence/coverage.js';
import { lookupEvents, readTrackedEvents, reconcileDue, spansToRead, SWEEP_PAGES } from '../../src/evidence/sources/lookup-events/index.js';
import type { CloudTrailClient } from '@aws-sdk/client-cloudtrail';
import { pino } from 'pino';
import { SqliteStateStore } from '../../src/state/sqlite/store.js';
import { parseQueueMessage, s3EventKey } from '../../src/evidence/sources/event-queue/messages.js';
import { sessionFilterTime, sessionsFrom, ssmSessions } from '../../src/evidence/sources/ssm-sessions/index.js';
import { SSMClient } from '@aws-sdk/client-ssm';
import { daysOf } from '../../src/evidence/sources/trail-digests/index.js';
import { digestDayPrefix, parseTrailKey } from '../../src/evidence/trail-files.js';
import { SOURCES, SourcesConfig } from '../../src/evidence/sources/registry.js';
import { readFixtureJson } from '../support/fixtures.js';

const H = 3_600_000;

describe('coverage spans', () => {
  it('merge overlapping and touching spans, keep holes', () => {
    expect(mergeSpans([{ from: 30, to: 40 }, { from: 0, to: 10 }, { from: 11, to: 20 }, { from: 35, to: 50 }])).toEqual([
      { from: 0, to: 20 },
      { from: 30, to: 50 },
    ]);
  });

  it('tell what a window leaves uncovered', () => {
    expect(uncovered({ from: 0, to: 100 }, [])).toEqual([{ from: 0, to: 100 }]);
    expect(uncovered({ from: 0, to: 100 }, [{ from: 0, to: 100 }])).toEqual([]);
    expect(uncovered({ from: 0, to: 100 }, [{ from: 10, to: 20 }, { from: 50, to: 200 }])).toEqual([
      { from: 0, to: 9 },
      { from: 21, to: 49 },
    ]);
    expect(uncovered({ from: 50, to: 40 }, [])).toEqual([]);
  });

  it('of deliveries (digests) prove what happened up to `settle` before the end of each unbroken run of hours', () => {
    const M = 60_000;
    // Two hours' digests back to back, then a missing hour, then one more.
    const delivered = [{ from: 0, to: H }, { from: H, to: 2 * H }, { from: 3 * H, to: 4 * H }];
    expect(deliveredToHappened(delivered, 15 * M)).toEqual([{ from: 0, to: 2 * H - 15 * M }, { from: 3 * H, to: 4 * H - 15 * M }]);
    // A run shorter than settle proves nothing.
    expect(deliveredToHappened([{ from: 0, to: 10 * M }], 15 * M)).toEqual([]);
  });

  it('are cut at now when the clock moved backwards', () => {
    expect(clampSpans([{ from: 0, to: 10 }, { from: 20, to: 30 }], 25)).toEqual([{ from: 0, to: 10 }, { from: 20, to: 25 }]);
  });
});

describe('LookupEvents: what a cycle reads', () => {
  const now = 100 * H;

  it('reads only what the stored coverage leaves open', () => {
    expect(spansToRead({ from: 0, to: now }, [{ from: 0, to: now - H }], null)).toEqual([{ from: now - H + 1, to: now }]);
  });

  it('reads back to an instance launched before the covered span', () => {
    expect(spansToRead({ from: 10 * H, to: now }, [{ from: 50 * H, to: now - H }], null)).toEqual([
      { from: 10 * H, to: 50 * H - 1 },
      { from: now - H + 1, to: now },
    ]);
  });

  it('adds the reconcile window when it is due, joined with what is open', () => {
    expect(spansToRead({ from: 0, to: now }, [{ from: 0, to: now - H }], { from: now - 24 * H, to: now })).toEqual([{ from: now - 24 * H, to: now }]);
  });

  it('leaves the time of a reconcile to be kept after what it read is stored: a crash before reconciles again', async () => {
    const store = SqliteStateStore.open(':memory:');
    try {
      const now = Date.parse('2026-12-03T12:00:00Z');
      const cloudtrail = { send: async () => ({ Events: [] }) } as unknown as CloudTrailClient;
      const config = { enabled: true, settle: 15 * 60_000, reconcile: { every: H, window: 24 * H } };
      const out = await lookupEvents.read(
        { scope: { accountId: '111122223333', region: 'us-east-1' }, clients: { cloudtrail }, store, instances: [], window: { from: now - 48 * H, to: now }, now, settle: config.settle, logger: pino({ level: 'silent' }) },
        config,
      );
      expect(out.meta).toEqual([{ key: 'reconciled:111122223333/us-east-1', value: String(now) }]);
      expect(await store.metaWithPrefix('reconciled:')).toEqual(new Map());
    } finally {
      await store.close();
    }
  });

  it('proves spans up to AWS time minus settle when the local clock runs ahead of AWS (the SDK keeps the skew)', async () => {
    const store = SqliteStateStore.open(':memory:');
    try {
      const now = Date.parse('2026-12-03T12:00:00Z');
      const settle = 15 * 60_000;
      const read = async (systemClockOffset: number, ssmOffset = systemClockOffset) => {
        const cloudtrail = { config: { systemClockOffset }, send: async () => ({ Events: [] }) } as unknown as CloudTrailClient;
        // A real client (the paginator checks it), answering nothing.
        const ssm = new SSMClient({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
        ssm.send = (async () => ({ Sessions: [] })) as unknown as SSMClient['send'];
        ssm.config.systemClockOffset = ssmOffset;
        const ctx = { scope: { accountId: '111122223333', region: 'us-east-1' }, store, instances: [], window: { from: now - 48 * H, to: now }, now, settle, logger: pino({ level: 'silent' }) };
        const trail = await lookupEvents.read({ ...ctx, clients: { cloudtrail } }, { enabled: true, settle, reconcile: { every: H, window: 24 * H } });
        const sessions = await ssmSessions.read({ ...ctx, clients: { ssm } });
        return [Math.max(...trail.proven.map((p) => p.span.to)), Math.max(...sessions.proven.map((p) => p.span.to))];
      };
      // 20 minutes ahead: nothing after AWS's now minus settle is proven.
      expect(await read(-20 * 60_000)).toEqual([now - settle - 20 * 60_000, now - settle - 20 * 60_000]);
      // Within a minute (the Date header's second, the request's latency), or behind: as the local clock says.
      expect(await read(-30_000, 5 * 60_000)).toEqual([now - settle, now - settle]);
    } finally {
      await store.close();
    }
  });

  type Page = { Events: Array<{ EventId: string; EventName?: string; CloudTrailEvent: string }>; NextToken?: string };
  /** A CloudTrail answering LookupEvents from pages per lookup attribute (`ReadOnly=false`, `EventName=…`), logging each call. */
  const cloudTrailOf = (pages: Record<string, Page[]>, log: string[]) =>
    ({
      send: async (cmd: { input: { LookupAttributes: Array<{ AttributeKey: string; AttributeValue: string }>; NextToken?: string } }) => {
        const [{ AttributeKey: key, AttributeValue: value }] = cmd.input.LookupAttributes as [{ AttributeKey: string; AttributeValue: string }];
        const at = `${key}=${value}`;
        log.push(`send ${at} ${cmd.input.NextToken ?? '-'}`);
        return pages[at]?.[Number(cmd.input.NextToken ?? 0)] ?? { Events: [] };
      },
    }) as unknown as CloudTrailClient;
  const event = (id: string, name: string) => ({ EventId: id, EventName: name, CloudTrailEvent: '{}' });

  it('reads a quiet span in one call: its write events, of which only the tracked ones are handed on', async () => {
    const log: string[] = [];
    const cloudtrail = cloudTrailOf({ 'ReadOnly=false': [{ Events: [event('a', 'StartSession'), event('x', 'PutBucketPolicy'), { EventId: 'n', CloudTrailEvent: '{}' }, event('c', 'SendCommand')] }] }, log);
    const out = await readTrackedEvents(cloudtrail, ['StartSession', 'SendCommand'], { from: 0, to: H }, (records) => log.push(`page ${records.map((r) => r.eventId).join(',')}`));
    expect(out).toEqual({ calls: 1, swept: true });
    // A record without an event name is handed on, to be judged (an odd record is a gap, never skipped).
    expect(log).toEqual(['send ReadOnly=false -', 'page a,n,c']);
  });

  it(`reads a busy span by event name once its write events take more than ${SWEEP_PAGES} pages, and hands nothing on twice`, async () => {
    const log: string[] = [];
    const writes: Page[] = Array.from({ length: SWEEP_PAGES + 1 }, (_, p) => ({ Events: [event(`w${p}`, 'PutObjectAcl'), event(`s${p}`, 'StartSession')], NextToken: String(p + 1) }));
    const cloudtrail = cloudTrailOf(
      {
        'ReadOnly=false': writes,
        // s0 came with the sweep; s${SWEEP_PAGES} is on the sweep's page it never read.
        'EventName=StartSession': [{ Events: [event('s0', 'StartSession')], NextToken: '1' }, { Events: [event(`s${SWEEP_PAGES}`, 'StartSession')] }],
        'EventName=SendCommand': [{ Events: [event('c', 'SendCommand')] }],
      },
      log,
    );
    const out = await readTrackedEvents(cloudtrail, ['StartSession', 'SendCommand'], { from: 0, to: H }, (records) => log.push(`page ${records.map((r) => r.eventId).join(',')}`));
    expect(out).toEqual({ calls: SWEEP_PAGES + 3, swept: false });
    // Each page is handed on before the next is asked for: the raw records of a whole span never sit in memory.
    const sweep = Array.from({ length: SWEEP_PAGES }, (_, p) => [`send ReadOnly=false ${p === 0 ? '-' : p}`, `page s${p}`]).flat();
    expect(log).toEqual([...sweep, 'send EventName=StartSession -', 'page ', 'send EventName=StartSession 1', `page s${SWEEP_PAGES}`, 'send EventName=SendCommand -', 'page c']);
  });

  it('counts nothing of a span whose reading failed part way: a gap on the scope, and nothing proven', async () => {
    const store = SqliteStateStore.open(':memory:');
    try {
      const now = Date.parse('2026-12-03T12:00:00Z');
      const record = readFixtureJson<Record<string, unknown>>('cloudtrail/ssm-start-session.json');
      let sent = 0;
      const cloudtrail = {
        send: async () => {
          // A busy span (every page has a next): the sweep's pages, then the first query by name fails.
          if (++sent === SWEEP_PAGES + 1) throw new Error('ThrottlingException: Rate exceeded');
          return { Events: [{ EventId: String(record['eventID']), EventName: 'StartSession', CloudTrailEvent: JSON.stringify(record) }], NextToken: 'more' };
        },
      } as unknown as CloudTrailClient;
      const config = { enabled: true, settle: 15 * 60_000, reconcile: { every: H, window: 24 * H } };
      const out = await lookupEvents.read(
        { scope: { accountId: '111122223333', region: 'us-east-1' }, clients: { cloudtrail }, store, instances: [], window: { from: now - 48 * H, to: now }, now, settle: config.settle, logger: pino({ level: 'silent' }) },
        config,
      );
      expect(out.activities).toEqual([]);
      expect(out.proven).toEqual([]);
      expect(out.gaps).toEqual([expect.objectContaining({ source: 'cloudtrail', accountId: '111122223333', region: 'us-east-1', before: now, message: expect.stringMatching(/LookupEvents failed: .*Rate exceeded/) })]);
      expect(out.meta).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('reconciles every `every`, the first time, and after the clock moved backwards', () => {
    expect(reconcileDue(null, now, H)).toBe(true);
    expect(reconcileDue(now - H / 2, now, H)).toBe(false);
    expect(reconcileDue(now - H, now, H)).toBe(true);
    expect(reconcileDue(now + H, now, H)).toBe(true);
  });
});

describe('SSM sessions', () => {
  it('filters DescribeSessions with whole-second times, as the SSM API reference writes them', () => {
    expect(sessionFilterTime(Date.parse('2026-11-21T12:34:56.789Z'))).toBe('2026-11-21T12:34:56Z');
  });

  it('reads history from the end of its coverage, when that reaches back to the window', () => {
    expect(sessionsFrom({ from: 10, to: 100 }, [{ from: 0, to: 80 }])).toBe(80);
    expect(sessionsFrom({ from: 10, to: 100 }, [{ from: 20, to: 80 }])).toBe(10);
  });
});

describe('trail file keys', () => {
  it('read organisation trails (with the o-… segment) and older trails (without), under any prefix', () => {
    expect(parseTrailKey('AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/eu-west-1/2026/11/21/111122223333_CloudTrail_eu-west-1_20261121T1205Z_x.json.gz')).toEqual({
      base: 'AWSLogs/o-a1b2c3d4e5/',
      organizationId: 'o-a1b2c3d4e5',
      accountId: '111122223333',
      region: 'eu-west-1',
      kind: 'log',
    });
    expect(parseTrailKey('trails/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/21/f.json.gz')).toMatchObject({ base: 'trails/AWSLogs/', organizationId: null, kind: 'log' });
  });

  it('tell digests and Insights files from log files, and refuse keys CloudTrail did not write', () => {
    expect(parseTrailKey('AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/21/d.json.gz')?.kind).toBe('digest');
    expect(parseTrailKey('AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/21/i.json.gz')?.kind).toBe('insight');
    expect(parseTrailKey('AWSLogs/111122223333/elasticloadbalancing/us-east-1/2026/11/21/x.log.gz')).toBeNull();
  });

  it('find the digests of a scope by day', () => {
    expect(digestDayPrefix('AWSLogs/o-a1b2c3d4e5/', '111122223333', 'us-east-1', new Date('2026-11-02T23:00:00Z'))).toBe(
      'AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail-Digest/us-east-1/2026/11/02/',
    );
    expect(daysOf({ from: Date.parse('2026-11-01T23:00:00Z'), to: Date.parse('2026-11-03T00:00:00Z') }).map((d) => d.toISOString().slice(0, 10))).toEqual([
      '2026-11-01',
      '2026-11-02',
      '2026-11-03',
    ]);
  });
});

describe('queue messages', () => {
  const KEY = 'AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/21/111122223333_CloudTrail_us-east-1_20261121T1205Z_Xq3kPz8aLm2Nb7Vc.json.gz';

  it('read an EventBridge "AWS API Call via CloudTrail" envelope: the record is its detail', () => {
    const body = readFixtureJson<Record<string, unknown>>('eventbridge/ssm-start-session.json');
    expect(parseQueueMessage(JSON.stringify(body))).toEqual([{ kind: 'record', record: body['detail'], accountId: '111122223333', region: 'us-east-1' }]);
  });

  it('read a trail file announced by S3, raw or wrapped in SNS, and by CloudTrail\'s own SNS notification', () => {
    const object = { kind: 'object', bucket: 'org-trail-logs-111122223333', key: KEY };
    expect(parseQueueMessage(JSON.stringify(readFixtureJson('notifications/s3-object-created.json')))).toEqual([{ ...object, region: 'us-east-1' }]);
    expect(parseQueueMessage(JSON.stringify(readFixtureJson('notifications/sns-wrapped-s3-object-created.json')))).toEqual([{ ...object, region: 'us-east-1' }]);
    expect(parseQueueMessage(JSON.stringify(readFixtureJson('notifications/cloudtrail-sns-log-delivery.json')))).toEqual([{ ...object, region: null }]);
  });

  it("decode S3's key encoding, and ignore S3's test event", () => {
    expect(s3EventKey('AWSLogs/a+b%3Dc.json.gz')).toBe('AWSLogs/a b=c.json.gz');
    expect(parseQueueMessage(JSON.stringify({ Service: 'Amazon S3', Event: 's3:TestEvent' }))).toEqual([{ kind: 'ignored', reason: 'S3 test event' }]);
  });

  it('refuse a message of no known shape, so it is left to the redrive policy', () => {
    expect(() => parseQueueMessage('not json')).toThrow();
    expect(() => parseQueueMessage(JSON.stringify({ hello: 'world' }))).toThrow(/not an EventBridge CloudTrail event/);
  });
});

describe('the source registry', () => {
  it('gives every source an id, a config key, IAM actions and one way in: read or consume', () => {
    const ids = SOURCES.map((s) => s.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const s of SOURCES) {
      expect(s.configKey in SourcesConfig.parse({})).toBe(true);
      expect(s.iam.member.length + ('pristine' in s.iam ? s.iam.pristine.length : 0)).toBeGreaterThan(0);
      expect(s.proves.length).toBeGreaterThan(20);
    }
  });

  it('defaults: LookupEvents settles 15 minutes and reconciles the last day every hour; no queue, no digests', () => {
    expect(SourcesConfig.parse({})).toEqual({
      lookupEvents: { enabled: true, settle: 15 * 60_000, reconcile: { every: H, window: 24 * H } },
      s3: { requireDigests: false, prefix: '' },
      ssmSessions: {},
      ssmInventory: {},
      queues: [],
    });
  });
});
