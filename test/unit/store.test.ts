import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Activity } from '../../src/core/facts.js';
import type { Notice } from '../../src/notify/types.js';
import { LeaseLostError, SCHEMA_VERSION, StateStore, StoreError, type FindingInput, type VerdictInput } from '../../src/state/store.js';
import { fixturePath } from '../support/fixtures.js';

let dir: string;
let file: string;
const opened: StateStore[] = [];

function open(at = file): StateStore {
  const s = StateStore.open(at);
  opened.push(s);
  return s;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pristine-store-'));
  file = path.join(dir, 'state', 'pristine.db');
});

afterEach(async () => {
  for (const s of opened.splice(0)) s.close();
  await rm(dir, { recursive: true, force: true });
});

const T0 = Date.parse('2026-11-18T10:00:00Z');
const ACCOUNT = '111122223333';
const US = { accountId: ACCOUNT, region: 'us-east-1' };
const EU = { accountId: ACCOUNT, region: 'eu-west-1' };
const MIN = 60_000;

function finding(key: string, over: Partial<FindingInput> = {}): FindingInput {
  return { key, detector: 'interactive-session', severity: 'high', summary: `finding ${key}`, at: T0 - 60 * MIN, actor: 'arn:aws:sts::111122223333:assumed-role/Admin/alice', ...over };
}

function verdict(instanceId: string, v: string, findings: FindingInput[] = []): VerdictInput {
  return { instanceId, accountId: ACCOUNT, region: 'us-east-1', policy: 'web', name: `name-${instanceId}`, verdict: v, findings };
}

function progress(message: string): Notice {
  return { type: 'progress', instanceId: 'i-0abc', step: 'launch', outcome: 'started', message };
}

function activity(id: string, at: number, region = 'us-east-1'): Activity {
  return {
    id,
    kind: 'interactive-session',
    source: 'cloudtrail',
    eventSource: 'ssm.amazonaws.com',
    eventName: 'StartSession',
    at,
    region,
    accountId: ACCOUNT,
    actor: { arn: 'arn:aws:sts::111122223333:assumed-role/Admin/alice', identities: ['arn:aws:iam::111122223333:role/Admin'] },
    instanceIds: ['i-0abc'],
    sessionId: `alice-${id}`,
    detail: { document: 'SSM-SessionManagerRunShell' },
  };
}

const replacementOf = (oldInstanceId: string) => ({
  oldInstanceId,
  accountId: ACCOUNT,
  region: 'us-east-1',
  policy: 'web',
  imageId: 'ami-0c0ffee1234567890',
  step: 'launch',
  data: { targetGroups: [{ arn: 'arn:tg/web' }] },
  alertOutboxId: null,
});

describe('StateStore: the file', () => {
  it('creates the directory and the database, in WAL mode', () => {
    // Act
    open();

    // Assess
    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      raw.close();
    }
  });

  it('keeps everything across a close and a reopen', () => {
    // Prepare
    const first = open();
    first.setMeta('k', 'v');
    first.recordVerdicts(T0, [verdict('i-1', 'tainted', [finding('a')])]);
    const outboxId = first.enqueue('#ops', progress('hello'), null, T0);
    const r = first.createReplacement(replacementOf('i-1'), T0);
    first.addCoverage(US, 'lookup-events', { from: T0 - 60 * MIN, to: T0 });
    first.close();

    // Act
    const second = open();

    // Assess
    expect(second.meta('k')).toBe('v');
    expect(second.instance('i-1')).toMatchObject({ verdict: 'tainted', firstSeen: T0, taintedSince: T0 });
    expect(second.pending().map((m) => [m.id, m.notice])).toEqual([[outboxId, progress('hello')]]);
    expect(second.replacement(r!.id)).toMatchObject({ oldInstanceId: 'i-1', status: 'in-progress', step: 'launch' });
    expect(second.coverage(US, 'lookup-events')).toEqual([{ from: T0 - 60 * MIN, to: T0 }]);
  });

  it('reads and writes meta; null deletes', () => {
    // Prepare
    const s = open();

    // Act
    s.setMeta('breaker:web', '1');
    s.setMeta('breaker:web', '2');
    const updated = s.meta('breaker:web');
    s.setMeta('breaker:web', null);

    // Assess
    expect(updated).toBe('2');
    expect(s.meta('breaker:web')).toBeNull();
    expect(s.meta('never-set')).toBeNull();
  });

  it('fails its health check when the file was removed under it', () => {
    // Prepare
    const s = open();
    s.check();

    // Act
    rmSync(path.dirname(file), { recursive: true, force: true });

    // Assess
    expect(() => s.check()).toThrow(/was removed or replaced since it was opened/);
    s.close();
  });

  it('passes its health check while usable, and fails it once closed', () => {
    // Prepare
    const s = open();

    // Act
    const check = () => s.check();
    check();
    const checkedAt = s.meta('health_checked_at');
    s.close();

    // Assess
    expect(Number(checkedAt)).toBeGreaterThan(0);
    expect(check).toThrow(StoreError);
    expect(check).toThrow(/state store unusable/);
  });

  it('refuses a file that is not a SQLite database, naming the file', async () => {
    // Prepare
    const bogus = path.join(dir, 'notes.db');
    await writeFile(bogus, 'this is not a database, just some text that is long enough to have a header\n'.repeat(20));

    // Act
    const act = () => open(bogus);

    // Assess
    expect(act).toThrow(StoreError);
    expect(act).toThrow(bogus);
  });

  it('refuses a store written by a newer pristine', () => {
    // Prepare
    const s = open();
    s.setMeta('schema_version', String(SCHEMA_VERSION + 1));
    s.close();

    // Act
    const act = () => open();

    // Assess
    expect(act).toThrow(StoreError);
    expect(act).toThrow(new RegExp(`newer pristine \\(schema ${SCHEMA_VERSION + 1}\\).*use that version, or a new --state file`));
  });

  it('opens a store of its own schema version again', () => {
    // Prepare
    open().close();

    // Act
    const s = open();

    // Assess
    expect(s.meta('schema_version')).toBe(String(SCHEMA_VERSION));
  });
});

describe('StateStore: verdicts and findings', () => {
  it('reports a tainted instance as newly tainted until its alert is recorded', () => {
    // Prepare
    const s = open();
    s.recordVerdicts(T0, [verdict('i-1', 'tainted', [finding('a')])]);

    // Act
    const again = s.recordVerdicts(T0 + 10 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);
    s.setAlert('i-1', s.enqueue('#ops', progress('alert')));
    const afterAlert = s.recordVerdicts(T0 + 20 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);

    // Assess
    expect(again).toEqual({ newlyTainted: ['i-1'], newFindings: new Map() });
    expect(afterAlert).toEqual({ newlyTainted: [], newFindings: new Map() });
  });

  it('after the alert, reports only the finding keys not seen before', () => {
    // Prepare
    const s = open();
    const first = s.recordVerdicts(T0, [verdict('i-1', 'tainted', [finding('a')]), verdict('i-2', 'pristine')]);
    s.setAlert('i-1', s.enqueue('#ops', progress('alert')));

    // Act
    const second = s.recordVerdicts(T0 + 10 * MIN, [verdict('i-1', 'tainted', [finding('a'), finding('b'), finding('c')])]);
    const third = s.recordVerdicts(T0 + 20 * MIN, [verdict('i-1', 'tainted', [finding('a'), finding('b'), finding('c')])]);

    // Assess
    expect(first.newlyTainted).toEqual(['i-1']);
    expect(second).toEqual({ newlyTainted: [], newFindings: new Map([['i-1', ['b', 'c']]]) });
    expect(third.newFindings.size).toBe(0);
  });

  it('never reports pristine or unknown instances', () => {
    // Prepare
    const s = open();

    // Act
    const r = s.recordVerdicts(T0, [verdict('i-p', 'pristine'), verdict('i-u', 'unknown', [finding('no-manifest', { detector: 'unrecorded-image' })])]);

    // Assess
    expect(r).toEqual({ newlyTainted: [], newFindings: new Map() });
  });

  it('keeps first seen and tainted since, and moves last seen', () => {
    // Prepare
    const s = open();
    s.recordVerdicts(T0, [verdict('i-1', 'pristine')]);
    s.recordVerdicts(T0 + 10 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);

    // Act
    s.recordVerdicts(T0 + 20 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);

    // Assess
    expect(s.instance('i-1')).toEqual({
      instanceId: 'i-1',
      accountId: ACCOUNT,
      region: 'us-east-1',
      policy: 'web',
      name: 'name-i-1',
      verdict: 'tainted',
      firstSeen: T0,
      lastSeen: T0 + 20 * MIN,
      taintedSince: T0 + 10 * MIN,
      alertOutboxId: null,
    });
    expect(s.instance('i-none')).toBeNull();
  });

  it('lists open findings: tainted in the last cycle and not replaced, with their findings', () => {
    // Prepare
    const s = open();
    s.recordVerdicts(T0, [verdict('i-gone', 'tainted', [finding('x')])]); // not seen in the last cycle
    s.recordVerdicts(T0 + 10 * MIN, [
      verdict('i-1', 'tainted', [finding('late', { at: T0 - 5 * MIN }), finding('early', { at: T0 - 50 * MIN })]),
      verdict('i-replaced', 'tainted', [finding('y')]),
      verdict('i-busy', 'tainted', [finding('z')]),
      verdict('i-clean', 'pristine'),
    ]);
    const done = s.createReplacement(replacementOf('i-replaced'), T0)!;
    s.journal(done.id, 'terminate-old', 'end', { status: 'done' }, T0);
    s.createReplacement(replacementOf('i-busy'), T0);

    // Act
    const open_ = s.openFindings();

    // Assess
    expect(open_.map((i) => i.instanceId).sort()).toEqual(['i-1', 'i-busy']);
    const i1 = open_.find((i) => i.instanceId === 'i-1')!;
    expect(i1.findings.map((f) => f.key)).toEqual(['early', 'late']);
    expect(i1.findings[0]).toEqual({ ...finding('early', { at: T0 - 50 * MIN }), firstSeen: T0 + 10 * MIN, lastSeen: T0 + 10 * MIN });
  });

  it('orders open findings by when the instance was first tainted', () => {
    // Prepare
    const s = open();
    s.recordVerdicts(T0, [verdict('i-first', 'tainted', [finding('a')])]);
    s.recordVerdicts(T0 + 10 * MIN, [verdict('i-second', 'tainted', [finding('b')]), verdict('i-first', 'tainted', [finding('a')])]);

    // Act
    const ids = s.openFindings().map((i) => i.instanceId);

    // Assess
    expect(ids).toEqual(['i-first', 'i-second']);
  });
});

describe('StateStore: replacements and their journal', () => {
  it('refuses a second replacement of an instance while the first is in progress', () => {
    // Prepare
    const s = open();
    const first = s.createReplacement(replacementOf('i-1'), T0);

    // Act
    const second = s.createReplacement(replacementOf('i-1'), T0 + MIN);
    const other = s.createReplacement(replacementOf('i-2'), T0 + MIN);

    // Assess
    expect(first).toMatchObject({ oldInstanceId: 'i-1', status: 'in-progress', step: 'launch', newInstanceId: null, startedAt: T0, finishedAt: null });
    expect(second).toBeNull();
    expect(other).not.toBeNull();
  });

  it.each(['done', 'failed'] as const)('refuses another replacement after one that is %s', (status) => {
    // Prepare
    const s = open();
    const first = s.createReplacement(replacementOf('i-1'), T0)!;
    s.journal(first.id, 'end', 'end', { status }, T0 + MIN);

    // Act
    const again = s.createReplacement(replacementOf('i-1'), T0 + 2 * MIN);

    // Assess
    expect(again).toBeNull();
  });

  it('allows another replacement after a rolled-back one, and replacementOf returns the latest', () => {
    // Prepare
    const s = open();
    const first = s.createReplacement(replacementOf('i-1'), T0)!;
    s.journal(first.id, 'rollback', 'end', { status: 'rolled-back' }, T0 + MIN);

    // Act
    const again = s.createReplacement(replacementOf('i-1'), T0 + 2 * MIN);

    // Assess
    expect(again).not.toBeNull();
    expect(again!.id).not.toBe(first.id);
    expect(s.replacementOf('i-1')?.id).toBe(again!.id);
    expect(s.createReplacement(replacementOf('i-1'), T0 + 3 * MIN)).toBeNull();
  });

  it('journals begin and end rows in order and moves the replacement with them', () => {
    // Prepare
    const s = open();
    const r = s.createReplacement(replacementOf('i-1'), T0)!;

    // Act
    s.journal(r.id, 'launch', 'begin', {}, T0 + 1);
    const launched = s.journal(r.id, 'launch', 'end', { newInstanceId: 'i-new', data: { ...r.data, launched: true }, detail: { instanceId: 'i-new' } }, T0 + 2);
    s.journal(r.id, 'wait-healthy', 'begin', {}, T0 + 3);
    const done = s.journal(r.id, 'wait-healthy', 'end', { status: 'done' }, T0 + 4);

    // Assess
    expect(s.journalOf(r.id).map((j) => [j.step, j.phase, j.at, j.detail])).toEqual([
      ['launch', 'begin', T0 + 1, null],
      ['launch', 'end', T0 + 2, { instanceId: 'i-new' }],
      ['wait-healthy', 'begin', T0 + 3, null],
      ['wait-healthy', 'end', T0 + 4, null],
    ]);
    expect(launched).toMatchObject({ step: 'launch', status: 'in-progress', newInstanceId: 'i-new', data: { launched: true }, updatedAt: T0 + 2, finishedAt: null });
    expect(done).toMatchObject({ step: 'wait-healthy', status: 'done', newInstanceId: 'i-new', data: { launched: true }, updatedAt: T0 + 4, finishedAt: T0 + 4 });
    expect(s.replacement(r.id)).toEqual(done);
  });

  it('records a failure’s error, and can clear the new instance id', () => {
    // Prepare
    const s = open();
    const r = s.createReplacement(replacementOf('i-1'), T0)!;
    s.journal(r.id, 'launch', 'end', { newInstanceId: 'i-new' }, T0 + 1);

    // Act
    const failed = s.journal(r.id, 'rollback', 'fail', { status: 'failed', error: 'InsufficientInstanceCapacity', newInstanceId: null }, T0 + 2);

    // Assess
    expect(failed).toMatchObject({ status: 'failed', error: 'InsufficientInstanceCapacity', newInstanceId: null, finishedAt: T0 + 2 });
  });

  it('writes a journal row and its update together or not at all', () => {
    // Prepare: data that cannot be serialised fails the update after the row was inserted
    const s = open();
    const r = s.createReplacement(replacementOf('i-1'), T0)!;
    s.journal(r.id, 'launch', 'begin', {}, T0 + 1);

    // Act
    const act = () => s.journal(r.id, 'launch', 'end', { newInstanceId: 'i-new', data: { big: 1n } }, T0 + 2);

    // Assess
    expect(act).toThrow();
    expect(s.journalOf(r.id).map((j) => j.phase)).toEqual(['begin']);
    expect(s.replacement(r.id)).toMatchObject({ step: 'launch', newInstanceId: null, updatedAt: T0 + 1 });
  });

  it('journals nothing for a replacement that does not exist', () => {
    // Prepare
    const s = open();

    // Act
    const act = () => s.journal(999, 'launch', 'begin', {}, T0);

    // Assess
    expect(act).toThrow();
    expect(s.journalOf(999)).toEqual([]);
  });

  it('lists the replacements in flight, oldest first', () => {
    // Prepare
    const s = open();
    const a = s.createReplacement(replacementOf('i-a'), T0)!;
    const b = s.createReplacement(replacementOf('i-b'), T0)!;
    const c = s.createReplacement(replacementOf('i-c'), T0)!;
    s.journal(b.id, 'done', 'end', { status: 'done' }, T0 + 1);

    // Act
    const ids = s.inFlight().map((r) => r.id);

    // Assess
    expect(ids).toEqual([a.id, c.id]);
    expect(s.recentReplacements(2).map((r) => r.id)).toEqual([c.id, b.id]);
  });
});

describe('StateStore: coverage', () => {
  it('keeps spans per scope and kind, joins those that touch, keeps a hole apart', () => {
    // Prepare
    const s = open();

    // Act
    s.addCoverage(US, 'lookup-events', { from: 10, to: 20 });
    s.addCoverage(US, 'lookup-events', { from: 21, to: 30 });
    s.addCoverage(US, 'lookup-events', { from: 40, to: 50 });
    s.addCoverage(EU, 'lookup-events', { from: 5, to: 6 });
    s.addCoverage(US, 's3-digest', { from: 0, to: 100 });

    // Assess
    expect(s.coverage(US, 'lookup-events')).toEqual([{ from: 10, to: 30 }, { from: 40, to: 50 }]);
    expect(s.coverage(EU, 'lookup-events')).toEqual([{ from: 5, to: 6 }]);
    expect(s.coverage(US, 's3-digest')).toEqual([{ from: 0, to: 100 }]);
    expect(s.coverage({ accountId: '444455556666', region: 'us-east-1' }, 'lookup-events')).toEqual([]);
    expect(s.coverage(US, 'ssm-sessions')).toEqual([]);
  });

  it('drops coverage of a future nobody read when the clock moved backwards', () => {
    // Prepare
    const s = open();
    s.addCoverage(US, 'lookup-events', { from: 10, to: 20 });
    s.addCoverage(US, 'lookup-events', { from: 40, to: 50 });
    s.addCoverage(US, 'ssm-sessions', { from: 10, to: 50 });

    // Act
    s.clampCoverage(US, 15);

    // Assess
    expect(s.coverage(US, 'lookup-events')).toEqual([{ from: 10, to: 15 }]);
    expect(s.coverage(US, 'ssm-sessions')).toEqual([{ from: 10, to: 15 }]);
  });
});

describe('StateStore: the evidence log', () => {
  it('gives activities back whole, by scope, from a time, in time order', () => {
    // Prepare
    const s = open();
    const late = activity('ev-late', T0 + 2 * MIN);
    const early = activity('ev-early', T0 + MIN);
    const before = activity('ev-before', T0 - MIN);
    const elsewhere = activity('ev-eu', T0 + MIN, 'eu-west-1');
    const otherAccount = { ...activity('ev-other', T0 + MIN), accountId: '444455556666' };

    // Act
    const added = s.ingest([late, early, before, elsewhere, otherAccount], T0);

    // Assess
    expect(added.map((a) => a.id)).toEqual(['ev-late', 'ev-early', 'ev-before', 'ev-eu', 'ev-other']);
    expect(s.activities(US, T0)).toEqual([early, late]);
    expect(s.activities(EU, 0)).toEqual([elsewhere]);
    expect(s.activities({ accountId: '444455556666', region: 'us-east-1' }, 0)).toEqual([otherAccount]);
  });

  it('keeps the log it read in memory: the same objects cycle after cycle, in step with what is written, pruned or merged', () => {
    // Prepare
    const s = open();
    const a = activity('ev-a', T0 + MIN);
    const b = activity('ev-b', T0 + 3 * MIN);
    s.ingest([a, b], T0);
    const first = s.activities(US, T0);

    // Act
    const c = activity('ev-c', T0 + 2 * MIN);
    s.ingest([c], T0);
    s.ingest([{ ...a, via: ['eventbridge'] }], T0); // merged: the log's copy gains a path
    const second = s.activities(US, T0);
    s.pruneActivities(T0 + 2 * MIN);
    const third = s.activities(US, T0);

    // Assess
    expect(second[1]).toBe(c);
    expect(second[2]).toBe(first[1]);
    expect(second[0]).not.toBe(first[0]);
    expect(second[0]?.via).toEqual(['eventbridge']);
    expect(second.map((x) => x.id)).toEqual(['ev-a', 'ev-c', 'ev-b']);
    expect(third.map((x) => x.id)).toEqual(['ev-c', 'ev-b']);
    // What the file holds is what memory holds.
    expect(open(file).activities(US, T0)).toEqual(third);
  });

  it('reads the file again when another connection wrote to it', () => {
    const s = open();
    s.ingest([activity('ev-a', T0 + MIN)], T0);
    expect(s.activities(US, T0)).toHaveLength(1);
    open(file).ingest([activity('ev-b', T0 + 2 * MIN)], T0);
    expect(s.activities(US, T0).map((x) => x.id)).toEqual(['ev-a', 'ev-b']);
  });

  it('forgets what a failed transaction wrote', () => {
    const s = open();
    s.activities(US, T0);
    expect(() =>
      s.transaction(() => {
        s.ingest([activity('ev-rolled-back', T0 + MIN)], T0);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(s.activities(US, T0)).toEqual([]);
  });

  it('keeps the log in memory through a failed transaction that did not write to it', () => {
    const s = open();
    s.ingest([activity('ev-a', T0 + MIN)], T0);
    const before = s.activities(US, T0);
    expect(() =>
      s.transaction(() => {
        throw new Error('a lease passed to another driver');
      }),
    ).toThrow();
    expect(s.activities(US, T0)[0]).toBe(before[0]);
  });

  it('merges an event seen again, never overwriting it: the paths add up, a later resolution of its instances is kept', () => {
    // Prepare
    const s = open();
    const pushed = { ...activity('ev-1', T0), via: ['eventbridge' as const], instanceIds: [], detail: { document: 'first' } };
    s.ingest([pushed], T0);

    // Act
    const again = s.ingest([{ ...pushed, via: ['lookup-events' as const], instanceIds: ['i-0abc'], detail: { document: 'second' } }], T0 + MIN);
    const third = s.ingest([{ ...pushed, via: ['s3' as const], instanceIds: ['i-0fff'] }], T0 + 2 * MIN);

    // Assess
    expect(again).toEqual([]);
    expect(third).toEqual([]);
    expect(s.activities(US, 0)).toEqual([{ ...pushed, via: ['eventbridge', 'lookup-events', 's3'], instanceIds: ['i-0abc'], detail: { document: 'first' } }]);
    expect(s.activitiesById(['ev-1', 'ev-none']).map((a) => a.id)).toEqual(['ev-1']);
  });

  it('prunes activities before a time and says how many', () => {
    // Prepare
    const s = open();
    s.ingest([activity('ev-1', T0 - 2 * MIN), activity('ev-2', T0 - MIN, 'eu-west-1'), activity('ev-3', T0), activity('ev-4', T0 + MIN)]);

    // Act
    const removed = s.pruneActivities(T0);

    // Assess
    expect(removed).toBe(2);
    expect(s.activities(US, 0).map((a) => a.id)).toEqual(['ev-3', 'ev-4']);
    expect(s.activities(EU, 0)).toEqual([]);
  });

  it('remembers the trail files it read and the digests it checked', () => {
    // Prepare
    const s = open();

    // Act
    s.recordTrailFile({ bucket: 'trail', key: 'AWSLogs/1/f.json.gz', ...US, sha256: 'ab', records: 3, readAt: T0 });
    s.recordDigest({ bucket: 'trail', key: 'AWSLogs/1/d.json.gz', ...US, from: T0, to: T0 + 60 * MIN, status: 'mismatch', checkedAt: T0 });
    s.recordDigest({ bucket: 'trail', key: 'AWSLogs/1/d.json.gz', ...US, from: T0, to: T0 + 60 * MIN, status: 'verified', checkedAt: T0 + MIN });

    // Assess
    expect(s.trailFile('trail', 'AWSLogs/1/f.json.gz')).toMatchObject({ sha256: 'ab', records: 3, accountId: ACCOUNT });
    expect(s.trailFile('trail', 'nope')).toBeNull();
    expect(s.digest('trail', 'AWSLogs/1/d.json.gz')).toMatchObject({ status: 'verified', checkedAt: T0 + MIN, from: T0 });
  });
});

describe('StateStore: a file written by pristine 0.1 (schema 1)', () => {
  const V1 = fixturePath('state/pristine-v1.db');

  it('is migrated in place on first open, and keeps every alert, finding, outbox row, replacement and cycle', async () => {
    // Prepare
    const copy = path.join(dir, 'old.db');
    await mkdir(dir, { recursive: true });
    await copyFile(V1, copy);

    // Act
    const s = open(copy);

    // Assess
    const raw = new Database(copy, { readonly: true });
    try {
      expect(raw.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get()).toEqual({ value: String(SCHEMA_VERSION) });
    } finally {
      raw.close();
    }
    expect(s.instance('i-0a1b2c3d4e5f60718')).toMatchObject({ verdict: 'tainted', accountId: null, alertOutboxId: 1 });
    expect(s.sentTs(1)).toBe('1700000000.000100');
    expect(s.inFlight()).toEqual([expect.objectContaining({ oldInstanceId: 'i-0a1b2c3d4e5f60718', accountId: null, step: 'prepare' })]);
    // Owned by a UUID from now on; the fresh instance it may have launched carries its row id, which it still finds.
    expect(s.inFlight()[0]).toMatchObject({ uuid: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/), data: expect.objectContaining({ legacyTag: '1' }), leaseOwner: null });
    expect(s.journalOf(s.inFlight()[0]!.id)).toEqual([expect.objectContaining({ step: 'prepare', phase: 'begin' })]);
    expect(s.recentCycles()).toEqual([expect.objectContaining({ outcome: 'tainted', exitCode: 1 })]);
    // One SSM session is one finding now: the key is the session id, not the event id.
    expect(s.openFindings()[0]?.findings.map((f) => f.key)).toEqual(['interactive-session:alice-0a1b2c3d4e5f60718']);
  });

  it("adopts the rows that have no account into pristine's own, coverage and the evidence log included", async () => {
    // Prepare
    const copy = path.join(dir, 'old.db');
    await mkdir(dir, { recursive: true });
    await copyFile(V1, copy);
    const s = open(copy);
    const scope = { accountId: '123456789012', region: 'us-east-1' };
    expect(s.hasLegacyRows()).toBe(true);

    // Act
    s.adoptLegacyRows(scope.accountId);

    // Assess
    expect(s.hasLegacyRows()).toBe(false);
    expect(s.activities(scope, 0).map((a) => [a.id, a.accountId])).toEqual([
      ['11111111-1111-4111-8111-111111111111', scope.accountId],
      ['22222222-2222-4222-8222-222222222222', scope.accountId],
    ]);
    expect(s.coverage(scope, 'lookup-events')).toEqual([{ from: Date.parse('2026-11-20T12:00:00Z'), to: Date.parse('2026-11-21T12:00:00Z') }]);
    expect(s.coverage(scope, 'ssm-sessions')).toEqual(s.coverage(scope, 'lookup-events'));
    expect(s.inFlight()[0]?.accountId).toBe(scope.accountId);
    expect(s.instance('i-0b2c3d4e5f6071829')?.accountId).toBe(scope.accountId);
  });
});

describe('StateStore: outbox', () => {
  it('keeps messages pending in the order they were queued', () => {
    // Prepare
    const s = open();

    // Act
    const a = s.enqueue('#ops', progress('a'), null, T0);
    const b = s.enqueue('#ops', progress('b'), a, T0 + 1);
    const c = s.enqueue('#sec', progress('c'), null, T0 + 2);

    // Assess
    expect(a < b && b < c).toBe(true);
    expect(s.pending()).toEqual([
      { id: a, channel: '#ops', parentId: null, notice: progress('a'), createdAt: T0, attempts: 0, lastError: null },
      { id: b, channel: '#ops', parentId: a, notice: progress('b'), createdAt: T0 + 1, attempts: 0, lastError: null },
      { id: c, channel: '#sec', parentId: null, notice: progress('c'), createdAt: T0 + 2, attempts: 0, lastError: null },
    ]);
    expect(s.outboxStats()).toEqual({ pending: 3, sent: 0, dropped: 0 });
  });

  it('a sent message leaves the queue and keeps its ts', () => {
    // Prepare
    const s = open();
    const a = s.enqueue('#ops', progress('a'));
    const b = s.enqueue('#ops', progress('b'));

    // Act
    const before = s.sentTs(a);
    s.markSent(a, '1700000000.000100');

    // Assess
    expect(before).toBeNull();
    expect(s.sentTs(a)).toBe('1700000000.000100');
    expect(s.pending().map((m) => m.id)).toEqual([b]);
    expect(s.outboxStats()).toEqual({ pending: 1, sent: 1, dropped: 0 });
  });

  it('a sent message without a ts has none', () => {
    // Prepare
    const s = open();
    const a = s.enqueue('#ops', progress('a'));

    // Act
    s.markSent(a, null);

    // Assess
    expect(s.sentTs(a)).toBeNull();
    expect(s.pending()).toEqual([]);
  });

  it('a failed message stays queued with its attempts and last error', () => {
    // Prepare
    const s = open();
    const a = s.enqueue('#ops', progress('a'));

    // Act
    s.markFailed(a, 'rate limited');
    s.markFailed(a, 'HTTP 503');

    // Assess
    expect(s.pending()).toMatchObject([{ id: a, attempts: 2, lastError: 'HTTP 503' }]);
    expect(s.sentTs(a)).toBeNull();
    expect(s.outboxStats()).toEqual({ pending: 1, sent: 0, dropped: 0 });
  });

  it('a dropped message leaves the queue and is counted as dropped', () => {
    // Prepare
    const s = open();
    const a = s.enqueue('#nowhere', progress('a'));
    const b = s.enqueue('#ops', progress('b'));

    // Act
    s.markDropped(a, 'channel_not_found');

    // Assess
    expect(s.pending().map((m) => m.id)).toEqual([b]);
    expect(s.sentTs(a)).toBeNull();
    expect(s.outboxStats()).toEqual({ pending: 1, sent: 0, dropped: 1 });
  });

  it('an empty outbox has zero of everything', () => {
    // Act
    const stats = open().outboxStats();

    // Assess
    expect(stats).toEqual({ pending: 0, sent: 0, dropped: 0 });
  });
});

describe('StateStore: cycles', () => {
  it('starts and finishes cycles; the last finished one is the latest with an end', () => {
    // Prepare
    const s = open();
    const none = s.lastFinishedCycle();
    const first = s.startCycle(T0);
    s.finishCycle(first, 'tainted', 1, { tainted: 2 }, T0 + MIN);
    const second = s.startCycle(T0 + 10 * MIN);

    // Act
    const whileRunning = s.lastFinishedCycle();
    s.finishCycle(second, 'ok', 0, { tainted: 0 }, T0 + 11 * MIN);
    const after = s.lastFinishedCycle();

    // Assess
    expect(none).toBeNull();
    expect(second).toBeGreaterThan(first);
    expect(whileRunning).toEqual({ finishedAt: T0 + MIN, outcome: 'tainted' });
    expect(after).toEqual({ finishedAt: T0 + 11 * MIN, outcome: 'ok' });
    expect(s.recentCycles()).toEqual([
      { id: second, startedAt: T0 + 10 * MIN, finishedAt: T0 + 11 * MIN, outcome: 'ok', exitCode: 0, summary: { tainted: 0 } },
      { id: first, startedAt: T0, finishedAt: T0 + MIN, outcome: 'tainted', exitCode: 1, summary: { tainted: 2 } },
    ]);
  });

  it('an unfinished cycle has no end, outcome or summary', () => {
    // Prepare
    const s = open();

    // Act
    const id = s.startCycle(T0);

    // Assess
    expect(s.recentCycles()).toEqual([{ id, startedAt: T0, finishedAt: null, outcome: null, exitCode: null, summary: null }]);
    expect(s.lastFinishedCycle()).toBeNull();
  });
});

describe('StateStore: transactions', () => {
  it('rolls back every write of a transaction that throws', () => {
    // Prepare
    const s = open();

    // Act
    const act = () =>
      s.transaction(() => {
        s.enqueue('#ops', progress('a'));
        s.setMeta('k', 'v');
        throw new Error('boom');
      });

    // Assess
    expect(act).toThrow('boom');
    expect(s.pending()).toEqual([]);
    expect(s.meta('k')).toBeNull();
  });
});

describe('StateStore: replacement leases', () => {
  it('gives a replacement to one driver at a time; the other sees who holds it', () => {
    // Prepare
    const s = open();
    const r = s.createReplacement(replacementOf('i-1'), T0)!;

    // Act
    const a = s.claimReplacement(r.id, 'host:1:a', 60_000, T0);
    const b = s.claimReplacement(r.id, 'host:2:b', 60_000, T0 + 1000);

    // Assess
    expect(a).toEqual({ owner: 'host:1:a', token: 1 });
    expect(b).toBeNull();
    expect(s.replacement(r.id)).toMatchObject({ leaseOwner: 'host:1:a', leaseExpiresAt: T0 + 60_000, leaseToken: 1 });
  });

  it('renews a lease for its holder without a new token, and hands an expired one over with a new token', () => {
    // Prepare
    const s = open();
    const r = s.createReplacement(replacementOf('i-1'), T0)!;
    s.claimReplacement(r.id, 'host:1:a', 60_000, T0);

    // Act
    const renewed = s.claimReplacement(r.id, 'host:1:a', 60_000, T0 + 30_000);
    const taken = s.claimReplacement(r.id, 'host:2:b', 60_000, T0 + 90_001);

    // Assess
    expect(renewed).toEqual({ owner: 'host:1:a', token: 1 });
    expect(taken).toEqual({ owner: 'host:2:b', token: 2 });
  });

  it('refuses a journal write or a schedule under a lease that passed to another driver', () => {
    // Prepare
    const s = open();
    const r = s.createReplacement(replacementOf('i-1'), T0)!;
    const a = s.claimReplacement(r.id, 'host:1:a', 1000, T0)!;
    const b = s.claimReplacement(r.id, 'host:2:b', 1000, T0 + 5000)!;

    // Act / Assess
    expect(() => s.journal(r.id, 'launch', 'begin', {}, T0 + 6000, a)).toThrow(LeaseLostError);
    expect(() => s.schedule(r.id, T0 + 7000, 'x', a)).toThrow(LeaseLostError);
    expect(s.journal(r.id, 'launch', 'begin', {}, T0 + 6000, b)).toMatchObject({ step: 'launch' });
  });

  it('takes over from a driver known dead at once, and lets go of its own leases on release', () => {
    // Prepare
    const s = open();
    const r = s.createReplacement(replacementOf('i-1'), T0)!;
    s.claimReplacement(r.id, 'host:1:dead', 60_000, T0);

    // Act
    const taken = s.claimReplacement(r.id, 'host:2:b', 60_000, T0 + 1, 'host:1:dead');
    const released = s.releaseLeases('host:2:b');

    // Assess
    expect(taken).toEqual({ owner: 'host:2:b', token: 2 });
    expect(released).toBe(1);
    expect(s.claimReplacement(r.id, 'host:3:c', 60_000, T0 + 2)).toEqual({ owner: 'host:3:c', token: 3 });
  });

  it('gives every replacement a UUID, and schedules its next turn', () => {
    // Prepare
    const s = open();
    const r = s.createReplacement(replacementOf('i-1'), T0)!;
    const fence = s.claimReplacement(r.id, 'host:1:a', 60_000, T0)!;

    // Act
    s.schedule(r.id, T0 + 5000, 'i-new to run with status checks ok', fence, { polls: { 'wait-running': 1 } });

    // Assess
    expect(r.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(r.nextPollAt).toBe(T0);
    expect(s.replacement(r.id)).toMatchObject({ nextPollAt: T0 + 5000, waitingFor: 'i-new to run with status checks ok', data: { polls: { 'wait-running': 1 } } });
  });
});
