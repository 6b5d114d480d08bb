// One conformance suite for every port of the state store (src/state/ports.ts), run on each backend:
// SQLite (a temp file) and PostgreSQL (a fresh database on the throwaway cluster the global setup
// started). Where PostgreSQL's server binaries are missing, its half is skipped with a message that
// says how to get them (see test/support/postgres.ts), never passed silently.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { Notice } from '../../src/notify/types.js';
import { openStateStore } from '../../src/state/open.js';
import { LeaseLostError, type FindingInput, type StateStore, type VerdictInput } from '../../src/state/ports.js';
import { redactUrl } from '../../src/state/postgres/store.js';
import { freshDatabase, testPostgres } from '../support/postgres.js';
import { sessionActivity } from '../support/state.js';

interface Backend {
  name: 'sqlite' | 'postgres';
  /** why this backend cannot run here (then its tests are skipped, with this message) */
  missing?: string;
  /** a new, empty store, and where it is (to open it again) */
  create(): Promise<string>;
}

const dirs: string[] = [];
const pg = testPostgres();
const BACKENDS: Backend[] = [
  {
    name: 'sqlite',
    async create() {
      const dir = await mkdtemp(path.join(tmpdir(), 'pristine-conformance-'));
      dirs.push(dir);
      return path.join(dir, 'state.db');
    },
  },
  {
    name: 'postgres',
    ...('missing' in pg ? { missing: pg.missing } : {}),
    async create() {
      if ('missing' in pg) throw new Error(pg.missing);
      return freshDatabase(pg.url);
    },
  },
];

const opened: StateStore[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
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

const activity = sessionActivity;

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

describe('the PostgreSQL location in logs and /healthz', () => {
  it('keeps the user, host and database, and hides the password', () => {
    expect(redactUrl('postgres://pristine:s3cret@db.internal:5432/pristine?sslmode=require')).toBe('postgres://pristine:***@db.internal:5432/pristine?sslmode=require');
    expect(redactUrl('postgres://pristine@db.internal/pristine')).toBe('postgres://pristine@db.internal/pristine');
  });
});

describe.each(BACKENDS)('state store conformance: $name', (b) => {
  if (b.missing) {
    it.skip(`skipped: ${b.missing}`, () => undefined);
    return;
  }
  let where = '';
  /** a new store; `reopen` opens the same one again, as a second connection (another replica) */
  const open = async (): Promise<StateStore> => {
    where = await b.create();
    const s = await openStateStore(where);
    opened.push(s);
    return s;
  };
  const reopen = async (): Promise<StateStore> => {
    const s = await openStateStore(where);
    opened.push(s);
    return s;
  };

  describe('verdicts and findings', () => {
    it('keeps a verdict judged since from later facts: a cycle that read older ones does not overwrite it', async () => {
      const s = await open();
      // An event pushed at T0 + 5 min taints i-1 while a cycle that started at T0 reads facts without it.
      await s.recordVerdicts(T0 - 10 * MIN, [verdict('i-1', 'pristine'), verdict('i-2', 'pristine')]);
      const pushed = await s.recordVerdicts(T0 + 5 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);
      const cycle = await s.recordVerdicts(T0, [verdict('i-1', 'pristine'), verdict('i-2', 'tainted', [finding('b')])]);
      expect(pushed.newlyTainted).toEqual(['i-1']);
      expect(cycle.newlyTainted).toEqual(['i-2']);
      expect(await s.instance('i-1')).toMatchObject({ verdict: 'tainted', lastSeen: T0 + 5 * MIN, taintedSince: T0 + 5 * MIN });
      expect(await s.instance('i-2')).toMatchObject({ verdict: 'tainted', lastSeen: T0 });
      // The next cycle, from facts read after the push, records as usual.
      await s.recordVerdicts(T0 + 10 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);
      expect(await s.instance('i-1')).toMatchObject({ verdict: 'tainted', lastSeen: T0 + 10 * MIN });
    });

    it('reports a tainted instance as newly tainted until its alert is recorded', async () => {
      // Prepare
      const s = await open();
      await s.recordVerdicts(T0, [verdict('i-1', 'tainted', [finding('a')])]);

      // Act
      const again = await s.recordVerdicts(T0 + 10 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);
      await s.setAlert('i-1', await s.enqueue('#ops', progress('alert')));
      const afterAlert = await s.recordVerdicts(T0 + 20 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);

      // Assess
      expect(again).toEqual({ newlyTainted: ['i-1'], newFindings: new Map() });
      expect(afterAlert).toEqual({ newlyTainted: [], newFindings: new Map() });
    });

    it('after the alert, reports only the finding keys not seen before', async () => {
      // Prepare
      const s = await open();
      const first = await s.recordVerdicts(T0, [verdict('i-1', 'tainted', [finding('a')]), verdict('i-2', 'pristine')]);
      await s.setAlert('i-1', await s.enqueue('#ops', progress('alert')));

      // Act
      const second = await s.recordVerdicts(T0 + 10 * MIN, [verdict('i-1', 'tainted', [finding('a'), finding('b'), finding('c')])]);
      const third = await s.recordVerdicts(T0 + 20 * MIN, [verdict('i-1', 'tainted', [finding('a'), finding('b'), finding('c')])]);

      // Assess
      expect(first.newlyTainted).toEqual(['i-1']);
      expect(second).toEqual({ newlyTainted: [], newFindings: new Map([['i-1', ['b', 'c']]]) });
      expect(third.newFindings.size).toBe(0);
    });

    it('reports what is newly tainted in the order given (alerts go out in it)', async () => {
      const s = await open();
      const r = await s.recordVerdicts(T0, [verdict('i-z', 'tainted', [finding('a')]), verdict('i-a', 'tainted', [finding('a')]), verdict('i-m', 'tainted', [finding('a')])]);
      expect(r.newlyTainted).toEqual(['i-z', 'i-a', 'i-m']);
      for (const id of ['i-z', 'i-a', 'i-m']) await s.setAlert(id, await s.enqueue('#ops', progress(id)));
      const again = await s.recordVerdicts(T0 + MIN, [verdict('i-z', 'tainted', [finding('b')]), verdict('i-a', 'tainted', [finding('b')])]);
      expect([...again.newFindings.keys()]).toEqual(['i-z', 'i-a']);
    });

    it('never reports pristine or unknown instances', async () => {
      // Prepare
      const s = await open();

      // Act
      const r = await s.recordVerdicts(T0, [verdict('i-p', 'pristine'), verdict('i-u', 'unknown', [finding('no-manifest', { detector: 'unrecorded-image' })])]);

      // Assess
      expect(r).toEqual({ newlyTainted: [], newFindings: new Map() });
    });

    it('keeps first seen and tainted since, and moves last seen', async () => {
      // Prepare
      const s = await open();
      await s.recordVerdicts(T0, [verdict('i-1', 'pristine')]);
      await s.recordVerdicts(T0 + 10 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);

      // Act
      await s.recordVerdicts(T0 + 20 * MIN, [verdict('i-1', 'tainted', [finding('a')])]);

      // Assess
      expect(await s.instance('i-1')).toEqual({
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
      expect(await s.instance('i-none')).toBeNull();
    });

    it('keeps a finding seen again (first seen kept, last seen moved, its new summary taken) and leaves one no longer found as it was', async () => {
      // Prepare
      const s = await open();
      await s.recordVerdicts(T0, [verdict('i-1', 'tainted', [finding('a'), finding('b'), finding('gone')])]);
      await s.recordVerdicts(T0 + 10 * MIN, [verdict('i-1', 'tainted', [finding('a'), finding('b', { summary: 'finding b, 49h old' })])]);

      // Act
      const r = await s.recordVerdicts(T0 + 20 * MIN, [verdict('i-1', 'tainted', [finding('a'), finding('b', { summary: 'finding b, 50h old' }), finding('c')])]);

      // Assess
      expect(r).toEqual({ newlyTainted: ['i-1'], newFindings: new Map() }); // no alert recorded yet: still newly tainted
      const [i1] = await s.openFindings();
      const byKey = new Map(i1!.findings.map((f) => [f.key, f]));
      expect(byKey.get('a')).toMatchObject({ summary: 'finding a', firstSeen: T0, lastSeen: T0 + 20 * MIN });
      expect(byKey.get('b')).toMatchObject({ summary: 'finding b, 50h old', firstSeen: T0, lastSeen: T0 + 20 * MIN });
      expect(byKey.get('c')).toMatchObject({ summary: 'finding c', firstSeen: T0 + 20 * MIN, lastSeen: T0 + 20 * MIN });
      expect(byKey.get('gone')).toMatchObject({ firstSeen: T0, lastSeen: T0 });
      await s.setAlert('i-1', 1);
      const after = await s.recordVerdicts(T0 + 30 * MIN, [verdict('i-1', 'tainted', [finding('a'), finding('d'), finding('gone')])]);
      expect(after).toEqual({ newlyTainted: [], newFindings: new Map([['i-1', ['d']]]) });
      // A key given twice (two detectors' findings under one key) is new once.
      const twice = await s.recordVerdicts(T0 + 40 * MIN, [verdict('i-1', 'tainted', [finding('e'), finding('e', { summary: 'again' })])]);
      expect(twice).toEqual({ newlyTainted: [], newFindings: new Map([['i-1', ['e']]]) });
      const e = (await s.openFindings())[0]!.findings.find((f) => f.key === 'e');
      expect(e).toMatchObject({ detector: 'interactive-session', summary: 'again', firstSeen: T0 + 40 * MIN });
    });

    it('records a fleet larger than it writes at once as it records one instance: every row moves, what is new comes back in the order given', async () => {
      // Prepare: 1,201 instances, ids given in no sorted order; every third tainted with two findings.
      const s = await open();
      const ids = Array.from({ length: 1201 }, (_, n) => `i-${((n * 7919) % 1201).toString().padStart(4, '0')}`);
      const cycle = (extra: (n: number) => FindingInput[]) =>
        ids.map((id, n) => (n % 3 === 0 ? verdict(id, 'tainted', [finding(`a-${id}`), finding(`b-${id}`), ...extra(n)]) : verdict(id, 'pristine')));
      const first = await s.recordVerdicts(T0, cycle(() => []));
      for (const id of ids.filter((_, n) => n % 6 === 0)) await s.setAlert(id, 1);
      // An event pushed later re-judged one instance of the second half: that verdict stands.
      const late = ids[901]!;
      await s.recordVerdicts(T0 + 15 * MIN, [verdict(late, 'tainted', [finding('pushed')])]);

      // Act: the next cycle finds one more thing on every ninth instance.
      const second = await s.recordVerdicts(T0 + 10 * MIN, cycle((n) => (n % 9 === 0 ? [finding(`c-${ids[n]!}`)] : [])), [{ accountId: ACCOUNT, region: 'us-east-1' }]);

      // Assess
      const tainted = ids.filter((_, n) => n % 3 === 0);
      expect(first.newlyTainted).toEqual(tainted);
      expect(second.newlyTainted).toEqual(ids.filter((_, n) => n % 3 === 0 && n % 6 !== 0));
      expect([...second.newFindings]).toEqual(ids.flatMap((id, n) => (n % 18 === 0 ? [[id, [`c-${id}`]]] : [])));
      for (const n of [0, 3, 499, 500, 501, 999, 1000, 1200]) {
        expect(await s.instance(ids[n]!)).toMatchObject({ verdict: n % 3 === 0 ? 'tainted' : 'pristine', firstSeen: T0, lastSeen: T0 + 10 * MIN });
      }
      expect(await s.instance(late)).toMatchObject({ verdict: 'tainted', lastSeen: T0 + 15 * MIN });
      const open1 = new Map((await s.openFindings()).map((o) => [o.instanceId, o.findings]));
      for (const n of [0, 3, 498, 501, 999, 1200]) {
        const id = ids[n]!;
        expect(new Map(open1.get(id)!.map((f) => [f.key, [f.firstSeen, f.lastSeen]]))).toEqual(
          new Map([
            [`a-${id}`, [T0, T0 + 10 * MIN]],
            [`b-${id}`, [T0, T0 + 10 * MIN]],
            ...(n % 9 === 0 ? [[`c-${id}`, [T0 + 10 * MIN, T0 + 10 * MIN]] as const] : []),
          ]),
        );
      }
    });

    it('takes text from evidence that is not well-formed (a NUL, a lone surrogate) without failing, and a finding keyed by it is new once', async () => {
      // Prepare: what an instance's root can put in SSM Inventory, and what a forged record can carry.
      const s = await open();
      const odd = (f: FindingInput) => ({ ...f, key: 'package-drift:evil\u0000pkg', summary: 'evil\u0000pkg \ud800 installed since the image', actor: 'arn:aws:iam::111122223333:user/\u0000' });
      const loose = (t: string | null | undefined) => t?.replace(/[\0\ud800\uFFFD]+/g, '?'); // as each backend keeps them

      // Act
      const first = await s.recordVerdicts(T0, [{ ...verdict('i-1', 'tainted', [odd(finding('x'))]), name: 'web\u0000' }]);
      await s.setAlert('i-1', 1);
      const again = await s.recordVerdicts(T0 + MIN, [{ ...verdict('i-1', 'tainted', [odd(finding('x'))]), name: 'web\u0000' }]);
      const added = await s.ingest([sessionActivity('evt\u0000', T0)], T0);
      const addedAgain = await s.ingest([sessionActivity('evt\u0000', T0)], T0);
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      await s.journal(r.id, 'launch', 'fail', { error: 'launch: AWS said \u0000' }, T0 + 1);
      const m = await s.enqueue('#web', progress('p'));
      await s.markFailed(m, 'Slack said \u0000');

      // Assess
      expect(first.newlyTainted).toEqual(['i-1']);
      expect(again).toEqual({ newlyTainted: [], newFindings: new Map() });
      const [open1] = await s.openFindings();
      expect(open1?.findings.map((f) => [loose(f.key), loose(f.summary), loose(f.actor)])).toEqual([['package-drift:evil?pkg', 'evil?pkg ? installed since the image', 'arn:aws:iam::111122223333:user/?']]);
      expect(loose((await s.instance('i-1'))?.name)).toBe('web?');
      expect(added).toHaveLength(1);
      expect(addedAgain).toEqual([]);
      expect(loose((await s.replacement(r.id))?.error)).toBe('launch: AWS said ?');
    });

    it('lists open findings: tainted in the last cycle and not replaced, with their findings', async () => {
      // Prepare
      const s = await open();
      await s.recordVerdicts(T0, [verdict('i-gone', 'tainted', [finding('x')])]); // not seen in the last cycle
      await s.recordVerdicts(T0 + 10 * MIN, [
        verdict('i-1', 'tainted', [finding('late', { at: T0 - 5 * MIN }), finding('early', { at: T0 - 50 * MIN })]),
        verdict('i-replaced', 'tainted', [finding('y')]),
        verdict('i-busy', 'tainted', [finding('z')]),
        verdict('i-clean', 'pristine'),
      ]);
      const done = (await s.createReplacement(replacementOf('i-replaced'), T0))!;
      await s.journal(done.id, 'terminate-old', 'end', { status: 'done' }, T0);
      await s.createReplacement(replacementOf('i-busy'), T0);

      // Act
      const open_ = await s.openFindings();

      // Assess
      expect(open_.map((i) => i.instanceId).sort()).toEqual(['i-1', 'i-busy']);
      const i1 = open_.find((i) => i.instanceId === 'i-1')!;
      expect(i1.findings.map((f) => f.key)).toEqual(['early', 'late']);
      expect(i1.findings[0]).toEqual({ ...finding('early', { at: T0 - 50 * MIN }), firstSeen: T0 + 10 * MIN, lastSeen: T0 + 10 * MIN });
    });

    it('lists the open findings of every scope as of its own last audit, whichever replica audited it', async () => {
      // Prepare: replica a audits us-east-1, replica b eu-west-1 later
      const a = await open();
      const b = await reopen();
      const eu = (id: string, v: string, f: FindingInput[] = []) => ({ ...verdict(id, v, f), region: 'eu-west-1' });
      await a.recordVerdicts(T0, [verdict('i-us-gone', 'tainted', [finding('x')])], [US]);
      await a.recordVerdicts(T0 + 5 * MIN, [verdict('i-us', 'tainted', [finding('a')])], [US]);
      await b.recordVerdicts(T0 + 7 * MIN, [eu('i-eu', 'tainted', [finding('b')])], [EU]);
      // An event pushed between cycles does not make its scope's other instances stale.
      await b.recordVerdicts(T0 + 8 * MIN, [verdict('i-us-pushed', 'tainted', [finding('c')])]);

      // Act
      const listed = (await a.openFindings()).map((i) => i.instanceId).sort();

      // Assess
      expect(listed).toEqual(['i-eu', 'i-us', 'i-us-pushed']);
    });

    it('orders open findings by when the instance was first tainted', async () => {
      // Prepare
      const s = await open();
      await s.recordVerdicts(T0, [verdict('i-first', 'tainted', [finding('a')])]);
      await s.recordVerdicts(T0 + 10 * MIN, [verdict('i-second', 'tainted', [finding('b')]), verdict('i-first', 'tainted', [finding('a')])]);

      // Act
      const ids = (await s.openFindings()).map((i) => i.instanceId);

      // Assess
      expect(ids).toEqual(['i-first', 'i-second']);
    });
  });

  describe('replacements and their journal', () => {
    it('refuses a second replacement of an instance while the first is in progress', async () => {
      // Prepare
      const s = await open();
      const first = await s.createReplacement(replacementOf('i-1'), T0);

      // Act
      const second = await s.createReplacement(replacementOf('i-1'), T0 + MIN);
      const other = await s.createReplacement(replacementOf('i-2'), T0 + MIN);

      // Assess
      expect(first).toMatchObject({ oldInstanceId: 'i-1', status: 'in-progress', step: 'launch', newInstanceId: null, startedAt: T0, finishedAt: null });
      expect(second).toBeNull();
      expect(other).not.toBeNull();
    });

    it.each(['done', 'failed'] as const)('refuses another replacement after one that is %s', async (status) => {
      // Prepare
      const s = await open();
      const first = (await s.createReplacement(replacementOf('i-1'), T0))!;
      await s.journal(first.id, 'end', 'end', { status }, T0 + MIN);

      // Act
      const again = await s.createReplacement(replacementOf('i-1'), T0 + 2 * MIN);

      // Assess
      expect(again).toBeNull();
    });

    it('allows another replacement after a rolled-back one, and replacementOf returns the latest', async () => {
      // Prepare
      const s = await open();
      const first = (await s.createReplacement(replacementOf('i-1'), T0))!;
      await s.journal(first.id, 'rollback', 'end', { status: 'rolled-back' }, T0 + MIN);

      // Act
      const again = await s.createReplacement(replacementOf('i-1'), T0 + 2 * MIN);

      // Assess
      expect(again).not.toBeNull();
      expect(again!.id).not.toBe(first.id);
      expect((await s.replacementOf('i-1'))?.id).toBe(again!.id);
      expect(await s.createReplacement(replacementOf('i-1'), T0 + 3 * MIN)).toBeNull();
    });

    it('journals begin and end rows in order and moves the replacement with them', async () => {
      // Prepare
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;

      // Act
      await s.journal(r.id, 'launch', 'begin', {}, T0 + 1);
      const launched = await s.journal(r.id, 'launch', 'end', { newInstanceId: 'i-new', data: { ...r.data, launched: true }, detail: { instanceId: 'i-new' } }, T0 + 2);
      await s.journal(r.id, 'wait-healthy', 'begin', {}, T0 + 3);
      const done = await s.journal(r.id, 'wait-healthy', 'end', { status: 'done' }, T0 + 4);

      // Assess
      expect((await s.journalOf(r.id)).map((j) => [j.step, j.phase, j.at, j.detail])).toEqual([
        ['launch', 'begin', T0 + 1, null],
        ['launch', 'end', T0 + 2, { instanceId: 'i-new' }],
        ['wait-healthy', 'begin', T0 + 3, null],
        ['wait-healthy', 'end', T0 + 4, null],
      ]);
      expect(launched).toMatchObject({ step: 'launch', status: 'in-progress', newInstanceId: 'i-new', data: { launched: true }, updatedAt: T0 + 2, finishedAt: null });
      expect(done).toMatchObject({ step: 'wait-healthy', status: 'done', newInstanceId: 'i-new', data: { launched: true }, updatedAt: T0 + 4, finishedAt: T0 + 4 });
      expect(await s.replacement(r.id)).toEqual(done);
    });

    it('records a failure’s error, and can clear the new instance id', async () => {
      // Prepare
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      await s.journal(r.id, 'launch', 'end', { newInstanceId: 'i-new' }, T0 + 1);

      // Act
      const failed = await s.journal(r.id, 'rollback', 'fail', { status: 'failed', error: 'InsufficientInstanceCapacity', newInstanceId: null }, T0 + 2);

      // Assess
      expect(failed).toMatchObject({ status: 'failed', error: 'InsufficientInstanceCapacity', newInstanceId: null, finishedAt: T0 + 2 });
    });

    it('writes a journal row and its update together or not at all', async () => {
      // Prepare: data that cannot be serialised fails the update after the row was inserted
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      await s.journal(r.id, 'launch', 'begin', {}, T0 + 1);

      // Act
      const act = s.journal(r.id, 'launch', 'end', { newInstanceId: 'i-new', data: { big: 1n } }, T0 + 2);

      // Assess
      await expect(act).rejects.toThrow();
      expect((await s.journalOf(r.id)).map((j) => j.phase)).toEqual(['begin']);
      expect(await s.replacement(r.id)).toMatchObject({ step: 'launch', newInstanceId: null, updatedAt: T0 + 1 });
    });

    it('journals nothing for a replacement that does not exist', async () => {
      // Prepare
      const s = await open();

      // Act
      const act = s.journal(999, 'launch', 'begin', {}, T0);

      // Assess
      await expect(act).rejects.toThrow();
      expect(await s.journalOf(999)).toEqual([]);
    });

    it('lists the replacements in flight, oldest first', async () => {
      // Prepare
      const s = await open();
      const a = (await s.createReplacement(replacementOf('i-a'), T0))!;
      const b = (await s.createReplacement(replacementOf('i-b'), T0))!;
      const c = (await s.createReplacement(replacementOf('i-c'), T0))!;
      await s.journal(b.id, 'done', 'end', { status: 'done' }, T0 + 1);

      // Act
      const ids = (await s.inFlight()).map((r) => r.id);

      // Assess
      expect(ids).toEqual([a.id, c.id]);
      expect((await s.recentReplacements(2)).map((r) => r.id)).toEqual([c.id, b.id]);
    });
  });

  describe('coverage', () => {
    it('keeps spans per scope and kind, joins those that touch, keeps a hole apart', async () => {
      // Prepare
      const s = await open();

      // Act
      await s.addCoverage(US, 'lookup-events', { from: 10, to: 20 });
      await s.addCoverage(US, 'lookup-events', { from: 21, to: 30 });
      await s.addCoverage(US, 'lookup-events', { from: 40, to: 50 });
      await s.addCoverage(EU, 'lookup-events', { from: 5, to: 6 });
      await s.addCoverage(US, 's3-digest', { from: 0, to: 100 });

      // Assess
      expect(await s.coverage(US, 'lookup-events')).toEqual([{ from: 10, to: 30 }, { from: 40, to: 50 }]);
      expect(await s.coverage(EU, 'lookup-events')).toEqual([{ from: 5, to: 6 }]);
      expect(await s.coverage(US, 's3-digest')).toEqual([{ from: 0, to: 100 }]);
      expect(await s.coverage({ accountId: '444455556666', region: 'us-east-1' }, 'lookup-events')).toEqual([]);
      expect(await s.coverage(US, 'ssm-sessions')).toEqual([]);
    });

    it('drops coverage of a future nobody read when the clock moved backwards', async () => {
      // Prepare
      const s = await open();
      await s.addCoverage(US, 'lookup-events', { from: 10, to: 20 });
      await s.addCoverage(US, 'lookup-events', { from: 40, to: 50 });
      await s.addCoverage(US, 'ssm-sessions', { from: 10, to: 50 });

      // Act
      await s.clampCoverage(US, 15);

      // Assess
      expect(await s.coverage(US, 'lookup-events')).toEqual([{ from: 10, to: 15 }]);
      expect(await s.coverage(US, 'ssm-sessions')).toEqual([{ from: 10, to: 15 }]);
    });
  });

  describe('the evidence log', () => {
    it('gives activities back whole, by scope, from a time, in time order', async () => {
      // Prepare
      const s = await open();
      const late = activity('ev-late', T0 + 2 * MIN);
      const early = activity('ev-early', T0 + MIN);
      const before = activity('ev-before', T0 - MIN);
      const elsewhere = activity('ev-eu', T0 + MIN, 'eu-west-1');
      const otherAccount = { ...activity('ev-other', T0 + MIN), accountId: '444455556666' };

      // Act
      const added = await s.ingest([late, early, before, elsewhere, otherAccount], T0);

      // Assess
      expect(added.map((a) => a.id)).toEqual(['ev-late', 'ev-early', 'ev-before', 'ev-eu', 'ev-other']);
      expect(await s.activities(US, T0)).toEqual([early, late]);
      expect(await s.activities(EU, 0)).toEqual([elsewhere]);
      expect(await s.activities({ accountId: '444455556666', region: 'us-east-1' }, 0)).toEqual([otherAccount]);
    });

    it('keeps an event given twice in one call (LookupEvents and a trail file overlap) once, with both paths', async () => {
      const s = await open();
      const a = activity('ev-a', T0 + MIN);
      const added = await s.ingest([{ ...a, via: ['lookup-events'] }, { ...a, via: ['s3'] }], T0);
      expect(added).toHaveLength(1);
      expect((await s.activities(US, T0)).map((x) => [x.id, x.via])).toEqual([['ev-a', ['lookup-events', 's3']]]);
    });

    it('keeps the log it read in memory: the same objects cycle after cycle, in step with what is written, pruned or merged', async () => {
      // Prepare
      const s = await open();
      const a = activity('ev-a', T0 + MIN);
      const b = activity('ev-b', T0 + 3 * MIN);
      await s.ingest([a, b], T0);
      const first = await s.activities(US, T0);

      // Act
      const c = activity('ev-c', T0 + 2 * MIN);
      await s.ingest([c], T0);
      await s.ingest([{ ...a, via: ['eventbridge'] }], T0); // merged: the log's copy gains a path
      const second = await s.activities(US, T0);
      await s.pruneActivities(T0 + 2 * MIN);
      const third = await s.activities(US, T0);

      // Assess
      expect(second[1]).toBe(c);
      expect(second[2]).toBe(first[1]);
      expect(second[0]).not.toBe(first[0]);
      expect(second[0]?.via).toEqual(['eventbridge']);
      expect(second.map((x) => x.id)).toEqual(['ev-a', 'ev-c', 'ev-b']);
      expect(third.map((x) => x.id)).toEqual(['ev-c', 'ev-b']);
      // What the store holds is what memory holds.
      expect(await (await reopen()).activities(US, T0)).toEqual(third);
    });

    it('reads the log again when another connection wrote to it', async () => {
      const s = await open();
      await s.ingest([activity('ev-a', T0 + MIN)], T0);
      expect(await s.activities(US, T0)).toHaveLength(1);
      await (await reopen()).ingest([activity('ev-b', T0 + 2 * MIN)], T0);
      expect((await s.activities(US, T0)).map((x) => x.id)).toEqual(['ev-a', 'ev-b']);
    });

    it('sees a merge another connection wrote', async () => {
      const s = await open();
      const a = { ...activity('ev-a', T0 + MIN), instanceIds: [] };
      await s.ingest([a], T0);
      expect((await s.activities(US, T0))[0]?.instanceIds).toEqual([]);
      await (await reopen()).ingest([{ ...a, instanceIds: ['i-0abc'] }], T0);
      expect((await s.activities(US, T0))[0]?.instanceIds).toEqual(['i-0abc']);
    });

    it('forgets what a failed transaction wrote', async () => {
      const s = await open();
      await s.activities(US, T0);
      await expect(
        s.transaction(async () => {
          await s.ingest([activity('ev-rolled-back', T0 + MIN)], T0);
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(await s.activities(US, T0)).toEqual([]);
    });

    it('merges an event seen again, never overwriting it: the paths add up, a later resolution of its instances is kept', async () => {
      // Prepare
      const s = await open();
      const pushed = { ...activity('ev-1', T0), via: ['eventbridge' as const], instanceIds: [], detail: { document: 'first' } };
      await s.ingest([pushed], T0);

      // Act
      const again = await s.ingest([{ ...pushed, via: ['lookup-events' as const], instanceIds: ['i-0abc'], detail: { document: 'second' } }], T0 + MIN);
      const third = await s.ingest([{ ...pushed, via: ['s3' as const], instanceIds: ['i-0fff'] }], T0 + 2 * MIN);

      // Assess
      expect(again).toEqual([]);
      expect(third).toEqual([]);
      expect(await s.activities(US, 0)).toEqual([{ ...pushed, via: ['eventbridge', 'lookup-events', 's3'], instanceIds: ['i-0abc'], detail: { document: 'first' } }]);
      expect((await s.activitiesById(['ev-1', 'ev-none'])).map((a) => a.id)).toEqual(['ev-1']);
    });

    it('prunes activities before a time and says how many', async () => {
      // Prepare
      const s = await open();
      await s.ingest([activity('ev-1', T0 - 2 * MIN), activity('ev-2', T0 - MIN, 'eu-west-1'), activity('ev-3', T0), activity('ev-4', T0 + MIN)]);

      // Act
      const removed = await s.pruneActivities(T0);

      // Assess
      expect(removed).toBe(2);
      expect((await s.activities(US, 0)).map((a) => a.id)).toEqual(['ev-3', 'ev-4']);
      expect(await s.activities(EU, 0)).toEqual([]);
    });

    it('remembers the trail files it read and the digests it checked', async () => {
      // Prepare
      const s = await open();

      // Act
      await s.recordTrailFile({ bucket: 'trail', key: 'AWSLogs/1/f.json.gz', ...US, sha256: 'ab', records: 3, readAt: T0 });
      await s.recordDigest({ bucket: 'trail', key: 'AWSLogs/1/d.json.gz', ...US, from: T0, to: T0 + 60 * MIN, status: 'mismatch', checkedAt: T0 });
      await s.recordDigest({ bucket: 'trail', key: 'AWSLogs/1/d.json.gz', ...US, from: T0, to: T0 + 60 * MIN, status: 'verified', checkedAt: T0 + MIN });

      // Assess
      expect(await s.trailFile('trail', 'AWSLogs/1/f.json.gz')).toMatchObject({ sha256: 'ab', records: 3, accountId: ACCOUNT });
      expect(await s.trailFile('trail', 'nope')).toBeNull();
      expect(await s.digest('trail', 'AWSLogs/1/d.json.gz')).toMatchObject({ status: 'verified', checkedAt: T0 + MIN, from: T0 });
    });
  });

  describe('outbox', () => {
    it('keeps messages pending in the order they were queued', async () => {
      // Prepare
      const s = await open();

      // Act
      const a = await s.enqueue('#ops', progress('a'), null, T0);
      const b = await s.enqueue('#ops', progress('b'), a, T0 + 1);
      const c = await s.enqueue('#sec', progress('c'), null, T0 + 2);

      // Assess
      expect(a < b && b < c).toBe(true);
      expect(await s.pending()).toEqual([
        { id: a, channel: '#ops', parentId: null, notice: progress('a'), createdAt: T0, attempts: 0, lastError: null },
        { id: b, channel: '#ops', parentId: a, notice: progress('b'), createdAt: T0 + 1, attempts: 0, lastError: null },
        { id: c, channel: '#sec', parentId: null, notice: progress('c'), createdAt: T0 + 2, attempts: 0, lastError: null },
      ]);
      expect(await s.outboxStats()).toEqual({ pending: 3, sent: 0, dropped: 0 });
    });

    it('a sent message leaves the queue and keeps its ts', async () => {
      // Prepare
      const s = await open();
      const a = await s.enqueue('#ops', progress('a'));
      const b = await s.enqueue('#ops', progress('b'));

      // Act
      const before = await s.sentTs(a);
      await s.markSent(a, '1700000000.000100');

      // Assess
      expect(before).toBeNull();
      expect(await s.sentTs(a)).toBe('1700000000.000100');
      expect((await s.pending()).map((m) => m.id)).toEqual([b]);
      expect(await s.outboxStats()).toEqual({ pending: 1, sent: 1, dropped: 0 });
    });

    it('a sent message without a ts has none', async () => {
      // Prepare
      const s = await open();
      const a = await s.enqueue('#ops', progress('a'));

      // Act
      await s.markSent(a, null);

      // Assess
      expect(await s.sentTs(a)).toBeNull();
      expect(await s.pending()).toEqual([]);
    });

    it('a failed message stays queued with its attempts and last error', async () => {
      // Prepare
      const s = await open();
      const a = await s.enqueue('#ops', progress('a'));

      // Act
      await s.markFailed(a, 'rate limited');
      await s.markFailed(a, 'HTTP 503');

      // Assess
      expect(await s.pending()).toMatchObject([{ id: a, attempts: 2, lastError: 'HTTP 503' }]);
      expect(await s.sentTs(a)).toBeNull();
      expect(await s.outboxStats()).toEqual({ pending: 1, sent: 0, dropped: 0 });
    });

    it('a dropped message leaves the queue and is counted as dropped', async () => {
      // Prepare
      const s = await open();
      const a = await s.enqueue('#nowhere', progress('a'));
      const b = await s.enqueue('#ops', progress('b'));

      // Act
      await s.markDropped(a, 'channel_not_found');

      // Assess
      expect((await s.pending()).map((m) => m.id)).toEqual([b]);
      expect(await s.sentTs(a)).toBeNull();
      expect(await s.outboxStats()).toEqual({ pending: 1, sent: 0, dropped: 1 });
    });

    it('an empty outbox has zero of everything', async () => {
      // Act
      const stats = await (await open()).outboxStats();

      // Assess
      expect(stats).toEqual({ pending: 0, sent: 0, dropped: 0 });
    });
  });

  describe('cycles', () => {
    it('starts and finishes cycles; the last finished one is the latest with an end', async () => {
      // Prepare
      const s = await open();
      const none = await s.lastFinishedCycle();
      const first = await s.startCycle(T0);
      await s.finishCycle(first, 'tainted', 1, { tainted: 2 }, T0 + MIN);
      const second = await s.startCycle(T0 + 10 * MIN);

      // Act
      const whileRunning = await s.lastFinishedCycle();
      await s.finishCycle(second, 'ok', 0, { tainted: 0 }, T0 + 11 * MIN);
      const after = await s.lastFinishedCycle();

      // Assess
      expect(none).toBeNull();
      expect(second).toBeGreaterThan(first);
      expect(whileRunning).toEqual({ finishedAt: T0 + MIN, outcome: 'tainted' });
      expect(after).toEqual({ finishedAt: T0 + 11 * MIN, outcome: 'ok' });
      expect(await s.recentCycles()).toEqual([
        { id: second, startedAt: T0 + 10 * MIN, finishedAt: T0 + 11 * MIN, outcome: 'ok', exitCode: 0, summary: { tainted: 0 } },
        { id: first, startedAt: T0, finishedAt: T0 + MIN, outcome: 'tainted', exitCode: 1, summary: { tainted: 2 } },
      ]);
    });

    it('an unfinished cycle has no end, outcome or summary', async () => {
      // Prepare
      const s = await open();

      // Act
      const id = await s.startCycle(T0);

      // Assess
      expect(await s.recentCycles()).toEqual([{ id, startedAt: T0, finishedAt: null, outcome: null, exitCode: null, summary: null }]);
      expect(await s.lastFinishedCycle()).toBeNull();
    });
  });

  describe('persistence and health', () => {
    it('keeps everything across a close and a reopen', async () => {
      // Prepare
      const first = await open();
      await first.setMeta('k', 'v');
      await first.recordVerdicts(T0, [verdict('i-1', 'tainted', [finding('a')])]);
      const outboxId = await first.enqueue('#ops', progress('hello'), null, T0);
      const r = await first.createReplacement(replacementOf('i-1'), T0);
      await first.addCoverage(US, 'lookup-events', { from: T0 - 60 * MIN, to: T0 });
      await first.close();

      // Act
      const second = await reopen();

      // Assess
      expect(await second.meta('k')).toBe('v');
      expect(await second.instance('i-1')).toMatchObject({ verdict: 'tainted', firstSeen: T0, taintedSince: T0 });
      expect((await second.pending()).map((m) => [m.id, m.notice])).toEqual([[outboxId, progress('hello')]]);
      expect(await second.replacement(r!.id)).toMatchObject({ oldInstanceId: 'i-1', status: 'in-progress', step: 'launch' });
      expect(await second.coverage(US, 'lookup-events')).toEqual([{ from: T0 - 60 * MIN, to: T0 }]);
    });

    it('reads and writes meta; null deletes', async () => {
      const s = await open();
      await s.setMeta('breaker:web', '1');
      await s.setMeta('breaker:web', '2');
      const updated = await s.meta('breaker:web');
      await s.setMeta('breaker:web', null);
      expect(updated).toBe('2');
      expect(await s.meta('breaker:web')).toBeNull();
      expect(await s.meta('never-set')).toBeNull();
    });

    it('lists the meta entries under a prefix, and only those', async () => {
      const s = await open();
      await s.setMeta('decision-due:i-2', 'b');
      await s.setMeta('decision-due:i-1', 'a');
      await s.setMeta('decision-due', 'the prefix alone is not under it');
      await s.setMeta('decision-duty', 'x');
      await s.setMeta('decision-due:i-3', 'c');
      await s.setMeta('decision-due:i-3', null);
      // A LIKE would take _ and % as wildcards: the prefix is compared as it is.
      await s.setMeta('a_b:1', 'literal');
      await s.setMeta('axb:1', 'not a_b');
      expect([...(await s.metaWithPrefix('decision-due:'))]).toEqual([
        ['decision-due:i-1', 'a'],
        ['decision-due:i-2', 'b'],
      ]);
      expect([...(await s.metaWithPrefix('a_b:'))]).toEqual([['a_b:1', 'literal']]);
      expect((await s.metaWithPrefix('nothing:')).size).toBe(0);
    });

    it('passes its health check while usable, and fails it once closed', async () => {
      const s = await open();
      await s.check();
      const checkedAt = await s.meta('health_checked_at');
      await s.close();
      expect(Number(checkedAt)).toBeGreaterThan(0);
      await expect(s.check()).rejects.toThrow(/state store unusable/);
    });

    it('says which backend it is', async () => {
      const s = await open();
      expect(s.kind).toBe(b.name);
      expect(s.location).toBe(where);
    });
  });

  describe('rows an older pristine wrote', () => {
    it('has none to adopt in a new store', async () => {
      const s = await open();
      await s.recordVerdicts(T0, [verdict('i-1', 'tainted')], [US]);
      expect(await s.hasLegacyRows()).toBe(false);
      expect(await s.adoptLegacyRows(ACCOUNT)).toBe(0);
      expect((await s.instance('i-1'))?.accountId).toBe(ACCOUNT);
    });
  });

  describe('transactions', () => {
    it('rolls back every write of a transaction that throws', async () => {
      const s = await open();
      const act = s.transaction(async () => {
        await s.enqueue('#ops', progress('a'));
        await s.setMeta('k', 'v');
        throw new Error('boom');
      });
      await expect(act).rejects.toThrow('boom');
      expect(await s.pending()).toEqual([]);
      expect(await s.meta('k')).toBeNull();
    });

    it('a transaction inside another joins it: both commit, or neither', async () => {
      const s = await open();
      await expect(
        s.transaction(async () => {
          await s.setMeta('outer', '1');
          await s.transaction(async () => s.setMeta('inner', '1'));
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(await s.meta('outer')).toBeNull();
      expect(await s.meta('inner')).toBeNull();
    });

    it('keeps a write made outside an open transaction out of it: a rollback does not take it along', async () => {
      // Prepare: a transaction that waits, then fails
      const s = await open();
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const failing = s.transaction(async () => {
        await s.setMeta('inside', '1');
        await held;
        throw new Error('boom');
      });

      // Act: a write from elsewhere while it is open
      const outside = s.setMeta('outside', '1');
      await sleep(50);
      release();

      // Assess
      await expect(failing).rejects.toThrow('boom');
      await outside;
      expect(await s.meta('inside')).toBeNull();
      expect(await s.meta('outside')).toBe('1');
    });
  });

  describe('replacement leases', () => {
    it('gives a replacement to one driver at a time; the other sees who holds it', async () => {
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      const before = Date.now();
      const a = await s.claimReplacement(r.id, 'host:1:a', 60_000);
      const b2 = await s.claimReplacement(r.id, 'host:2:b', 60_000);
      expect(a).toEqual({ owner: 'host:1:a', token: 1 });
      expect(b2).toBeNull();
      const row = await s.replacement(r.id);
      expect(row).toMatchObject({ leaseOwner: 'host:1:a', leaseToken: 1 });
      // Expiry is the store's clock; on this one machine it agrees with ours to within a few seconds.
      expect(row!.leaseExpiresAt! - before).toBeGreaterThan(55_000);
      expect(row!.leaseExpiresAt! - before).toBeLessThan(65_000);
    });

    it('renews a lease for its holder without a new token, and hands an expired one over with a new token', async () => {
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      await s.claimReplacement(r.id, 'host:1:a', 150);
      const renewed = await s.claimReplacement(r.id, 'host:1:a', 150);
      const refused = await s.claimReplacement(r.id, 'host:2:b', 60_000);
      await sleep(250);
      const taken = await s.claimReplacement(r.id, 'host:2:b', 60_000);
      expect(renewed).toEqual({ owner: 'host:1:a', token: 1 });
      expect(refused).toBeNull();
      expect(taken).toEqual({ owner: 'host:2:b', token: 2 });
    });

    it('refuses a journal write or a schedule under a lease that passed to another driver', async () => {
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      const a = (await s.claimReplacement(r.id, 'host:1:a', 100))!;
      await sleep(200);
      const b2 = (await s.claimReplacement(r.id, 'host:2:b', 60_000))!;
      await expect(s.journal(r.id, 'launch', 'begin', {}, T0 + 6000, a)).rejects.toThrow(LeaseLostError);
      await expect(s.schedule(r.id, T0 + 7000, 'x', a)).rejects.toThrow(LeaseLostError);
      expect(await s.journal(r.id, 'launch', 'begin', {}, T0 + 6000, b2)).toMatchObject({ step: 'launch' });
      expect((await s.journalOf(r.id)).map((j) => j.at)).toEqual([T0 + 6000]);
    });

    it('takes over from a driver known dead at once, and lets go of its own leases on release', async () => {
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      await s.claimReplacement(r.id, 'host:1:dead', 60_000);
      const taken = await s.claimReplacement(r.id, 'host:2:b', 60_000, 'host:1:dead');
      const released = await s.releaseLeases('host:2:b');
      expect(taken).toEqual({ owner: 'host:2:b', token: 2 });
      expect(released).toBe(1);
      expect(await s.claimReplacement(r.id, 'host:3:c', 60_000)).toEqual({ owner: 'host:3:c', token: 3 });
    });

    it('lets go of one lease when its replacement is over: no driver, no next turn; the last journal entry is the latest', async () => {
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      const fence = (await s.claimReplacement(r.id, 'host:1:a', 60_000))!;
      await s.journal(r.id, 'launch', 'begin', {}, T0 + 1, fence);
      await s.journal(r.id, 'launch', 'end', {}, T0 + 2, fence);
      await s.releaseLease(r.id, 'host:2:not-the-holder');
      expect(await s.replacement(r.id)).toMatchObject({ leaseOwner: 'host:1:a' });
      await s.releaseLease(r.id, 'host:1:a');
      expect(await s.replacement(r.id)).toMatchObject({ leaseOwner: null, leaseExpiresAt: null, nextPollAt: null, waitingFor: null });
      expect(await s.lastJournal(r.id)).toMatchObject({ step: 'launch', phase: 'end', at: T0 + 2 });
      expect(await s.lastJournal(999)).toBeNull();
    });

    it('extends every lease of an owner on renewal', async () => {
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      await s.claimReplacement(r.id, 'host:1:a', 200);
      await sleep(100);
      await s.renewLeases('host:1:a', 60_000);
      await sleep(200);
      expect(await s.claimReplacement(r.id, 'host:2:b', 60_000)).toBeNull();
    });

    it('gives every replacement a UUID, and schedules its next turn', async () => {
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      const fence = (await s.claimReplacement(r.id, 'host:1:a', 60_000))!;
      await s.schedule(r.id, T0 + 5000, 'i-new to run with status checks ok', fence, { polls: { 'wait-running': 1 } });
      expect(r.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(r.nextPollAt).toBe(T0);
      expect(await s.replacement(r.id)).toMatchObject({ nextPollAt: T0 + 5000, waitingFor: 'i-new to run with status checks ok', data: { polls: { 'wait-running': 1 } } });
    });

    it('takes a next turn in fractional milliseconds (a backoff of 1.5^n s) and keeps it to the next whole one', async () => {
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      const fence = (await s.claimReplacement(r.id, 'host:1:a', 60_000))!;
      await s.schedule(r.id, T0 + 5062.5, 'the old instance to drain', fence);
      expect((await s.replacement(r.id))?.nextPollAt).toBe(T0 + 5063);
    });
  });

  describe('named leases (scope audits, the outbox)', () => {
    it('gives a lease to one owner; it renews without a new token; release lets another take it with a new one', async () => {
      const s = await open();
      const a = await s.leases.claim('audit:111122223333/us-east-1', 'host:1:a', 60_000);
      const b2 = await s.leases.claim('audit:111122223333/us-east-1', 'host:2:b', 60_000);
      const again = await s.leases.claim('audit:111122223333/us-east-1', 'host:1:a', 60_000);
      const other = await s.leases.claim('audit:111122223333/eu-west-1', 'host:2:b', 60_000);
      expect(a).toEqual({ owner: 'host:1:a', token: 1 });
      expect(b2).toBeNull();
      expect(again).toEqual({ owner: 'host:1:a', token: 1 });
      expect(other).toEqual({ owner: 'host:2:b', token: 1 });
      expect((await s.leases.held('host:1:a')).map((l) => l.name)).toEqual(['audit:111122223333/us-east-1']);

      await s.leases.release('audit:111122223333/us-east-1', 'host:1:a');
      expect(await s.leases.held('host:1:a')).toEqual([]);
      expect(await s.leases.claim('audit:111122223333/us-east-1', 'host:2:b', 60_000)).toEqual({ owner: 'host:2:b', token: 2 });
    });

    it('lets an expired lease go to another owner, and the old fence no longer checks', async () => {
      const s = await open();
      const a = (await s.leases.claim('outbox', 'host:1:a', 100))!;
      await s.leases.check('outbox', a);
      await sleep(200);
      await expect(s.leases.check('outbox', a)).rejects.toThrow(LeaseLostError);
      const b2 = (await s.leases.claim('outbox', 'host:2:b', 60_000))!;
      expect(b2.token).toBe(2);
      await expect(s.leases.check('outbox', a)).rejects.toThrow(LeaseLostError);
      await s.leases.check('outbox', b2);
      // The first owner coming back does not get it while the second holds it.
      expect(await s.leases.claim('outbox', 'host:1:a', 60_000)).toBeNull();
    });

    it('lists the leases of a kind as they stand: their owner, and whether they are live', async () => {
      const s = await open();
      await s.leases.claim('audit:a', 'host:1:a', 60_000);
      await s.leases.claim('audit:b', 'host:2:b', 100);
      await s.leases.claim('audit:c', 'host:1:a', 60_000);
      await s.leases.release('audit:c', 'host:1:a');
      await s.leases.claim('replica:host:1:a', 'host:1:a', 60_000);
      await sleep(200);
      expect(await s.leases.list('audit:')).toEqual([
        { name: 'audit:a', owner: 'host:1:a', token: 1, live: true },
        { name: 'audit:b', owner: 'host:2:b', token: 1, live: false },
        { name: 'audit:c', owner: null, token: 1, live: false },
      ]);
      expect((await s.leases.list('replica:')).map((l) => l.name)).toEqual(['replica:host:1:a']);
    });

    it('renews only what the owner still holds, and a clean stop lets go of everything at once', async () => {
      const s = await open();
      await s.leases.claim('audit:a', 'host:1:a', 60_000);
      await s.leases.claim('audit:b', 'host:1:a', 100);
      await sleep(200);
      expect(await s.leases.renew('host:1:a', 60_000)).toEqual(['audit:a']);
      expect(await s.leases.releaseAll('host:1:a')).toBe(2);
      expect(await s.leases.claim('audit:a', 'host:2:b', 60_000)).toEqual({ owner: 'host:2:b', token: 2 });
    });

    it('two replicas claiming the same lease at once: exactly one wins', async () => {
      await open();
      const replicas = await Promise.all(Array.from({ length: 5 }, () => reopen()));
      for (let round = 0; round < 10; round++) {
        const name = `audit:race-${round}`;
        const wins = (await Promise.all(replicas.map((r, n) => r.leases.claim(name, `host:${n}:x`, 60_000)))).filter((f) => f !== null);
        expect(wins).toHaveLength(1);
      }
    });
  });

  describe('nothing twice across replicas', () => {
    it('records a taint alert once: the second replica to try is told another alerted it', async () => {
      const s = await open();
      const other = await reopen();
      await s.recordVerdicts(T0, [verdict('i-1', 'tainted', [finding('a')])]);
      const [x, y] = await Promise.all([s.enqueue('#ops', progress('from a')), other.enqueue('#ops', progress('from b'))]);
      const results = await Promise.all([s.setAlert('i-1', x), other.setAlert('i-1', y)]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await s.instance('i-1'))?.alertOutboxId).toBe(results[0] ? x : y);
    });

    it('creates one replacement of an instance when two replicas race to', async () => {
      await open();
      const replicas = await Promise.all(Array.from({ length: 4 }, () => reopen()));
      const rows = await Promise.all(replicas.map((r) => r.createReplacement(replacementOf('i-race'), T0)));
      expect(rows.filter((r) => r !== null)).toHaveLength(1);
      expect(await replicas[0]!.inFlight()).toHaveLength(1);
    });

    it('gives a replacement to one of two replicas claiming it at once', async () => {
      const s = await open();
      const r = (await s.createReplacement(replacementOf('i-1'), T0))!;
      const replicas = await Promise.all(Array.from({ length: 4 }, () => reopen()));
      const fences = await Promise.all(replicas.map((x, n) => x.claimReplacement(r.id, `host:${n}:x`, 60_000)));
      expect(fences.filter((f) => f !== null)).toHaveLength(1);
    });

    it('merges coverage two replicas add at once', async () => {
      const s = await open();
      const other = await reopen();
      await Promise.all([
        ...[0, 2, 4, 6].map((n) => s.addCoverage(US, 'lookup-events', { from: n * 10, to: n * 10 + 5 })),
        ...[1, 3, 5, 7].map((n) => other.addCoverage(US, 'lookup-events', { from: n * 10, to: n * 10 + 5 })),
      ]);
      expect(await s.coverage(US, 'lookup-events')).toHaveLength(8);
    });

    it('adds an event once when two replicas ingest it at once', async () => {
      const s = await open();
      const other = await reopen();
      const [x, y] = await Promise.all([s.ingest([activity('ev-1', T0)], T0), other.ingest([activity('ev-1', T0)], T0)]);
      expect(x.length + y.length).toBe(1);
      expect(await s.activities(US, 0)).toHaveLength(1);
    });
  });
});

describe.skipIf('missing' in pg)(`PostgreSQL only${'missing' in pg ? ` (skipped: ${pg.missing})` : ''}`, () => {
  const serverUrl = 'missing' in pg ? '' : pg.url;

  it('migrates once when replicas start together: the schema is current and every replica works', async () => {
    const url = await freshDatabase(serverUrl);
    const stores = await Promise.all(Array.from({ length: 4 }, () => openStateStore(url)));
    opened.push(...stores);
    expect(await Promise.all(stores.map((s) => s.meta('schema_version')))).toEqual(['1', '1', '1', '1']);
    await stores[0]!.setMeta('k', 'v');
    expect(await stores[3]!.meta('k')).toBe('v');
  });

  it('refuses a database a newer pristine wrote, and changes nothing', async () => {
    const url = await freshDatabase(serverUrl);
    const s = await openStateStore(url);
    await s.setMeta('schema_version', '99');
    await s.close();
    await expect(openStateStore(url)).rejects.toThrow(/newer pristine \(schema 99\); this one knows 1/);
    const again = new (await import('pg')).default.Client({ connectionString: url });
    await again.connect();
    try {
      expect((await again.query(`SELECT value FROM meta WHERE key = 'schema_version'`)).rows).toEqual([{ value: '99' }]);
    } finally {
      await again.end();
    }
  });

  it('says which database it cannot reach, without its password', async () => {
    const u = new URL(serverUrl);
    u.port = '1'; // nothing listens there
    u.password = 's3cret';
    const act = openStateStore(u.toString());
    await expect(act).rejects.toThrow(/state store postgres:\/\/pristine:\*\*\*@127\.0\.0\.1:1\/postgres cannot be used/);
    await expect(openStateStore(u.toString())).rejects.not.toThrow(/s3cret/);
  });
});
