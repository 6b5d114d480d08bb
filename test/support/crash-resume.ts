// A replacement killed with SIGKILL at a journal step, then restarted, completes exactly once: one
// fresh instance, the old one terminated, nothing left running that no replacement owns. The steps are
// split over two test files (crash-resume-*.test.ts) so that they run side by side.
import { spawn } from 'node:child_process';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './fixtures.js';
import { Scenario, after, type Launched } from './scenario.js';

const POLICY = `
policies:
  - name: web
    scope: { tags: { role: web } }
    detect: { interactive-session: {} }
    respond:
      mode: enforce
      replace: { maxPerCycle: 1, maxUnavailable: 100%, minAge: 0s, healthTimeout: 2m }
      breaker: { taintedShare: 100% }
`;

/** The journal step to die in, and the call to hold so the process is still inside it when killed. */
export const STEPS: Array<[step: string, operation: string, hold: { before?: number; after?: number }]> = [
  ['prepare', 'DescribeInstanceAttribute', { before: 2500 }],
  ['launch', 'RunInstances', { after: 2500 }], // launched, but the caller never hears of it
  ['wait-running', 'DescribeInstanceStatus', { before: 2500 }],
  ['register', 'RegisterTargets', { after: 2500 }],
  ['wait-healthy', 'DescribeTargetHealth', { before: 2500 }],
  ['deregister-old', 'DeregisterTargets', { after: 2500 }],
  ['wait-drained', 'DescribeTargetHealth', { before: 2500 }],
  ['terminate-old', 'TerminateInstances', { after: 2500 }],
];

/** The steps' tests, in a describe of their own (one scenario: a fleet with an instance per step). */
export function killedAtEachStep(steps: typeof STEPS): void {
  describe('a replacement killed at each journal step and restarted', () => {
    let s: Scenario;
    let fleet: Launched[];
    let tg: string;

    beforeAll(async () => {
      s = await Scenario.start();
      await s.writePolicies(POLICY);
      const image = await s.image('web');
      fleet = await s.launch(image, { role: 'web' }, { count: steps.length + 1 });
      tg = await s.targetGroup('web', fleet.map((f) => f.instanceId));
      await after(Math.max(...fleet.map((f) => f.launchTime)) + 1500);
    });
    afterAll(() => s?.stop());

    /** Starts `pristine run` and SIGKILLs it once the journal shows `step` begun. */
    async function killAt(step: string, oldId: string): Promise<void> {
      const args = ['run', '--policies', s.policiesDir, '--manifests', s.manifestsDir, '--state', s.statePath];
      const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), ...args], { env: s.env(), stdio: 'ignore' });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const deadline = Date.now() + 60_000;
      let killed = false;
      while (Date.now() < deadline && !killed) {
        await new Promise((r) => setTimeout(r, 50));
        let db: Database.Database | undefined;
        try {
          db = new Database(s.statePath, { readonly: true, fileMustExist: true });
          const last = db
            .prepare(`SELECT j.step, j.phase FROM journal j JOIN replacements r ON r.id = j.replacement_id WHERE r.old_instance_id = ? ORDER BY j.id DESC LIMIT 1`)
            .get(oldId) as { step: string; phase: string } | undefined;
          if (last?.step === step && last.phase === 'begin') {
            child.kill('SIGKILL');
            killed = true;
          }
        } catch {
          // not created yet
        } finally {
          db?.close();
        }
      }
      const code = await exited;
      expect(killed, `journal never showed ${step} begun (exit ${code})`).toBe(true);
    }

    it.each(steps.map(([step, op, hold], n) => [step, op, hold, n] as const))('killed in %s: restart completes it exactly once', async (step, operation, hold, n) => {
      const old = fleet[n]!;
      s.trail('ssm-start-session', old.instanceId, old.launchTime + 1000);
      s.fake.delay(operation, hold);
      try {
        await killAt(step, old.instanceId);
      } finally {
        s.fake.clearDelays();
      }

      const { report } = await s.cycle([], {});
      const r = report.replacements.find((x) => x.oldInstanceId === old.instanceId);
      expect(r).toMatchObject({ status: 'done' });

      const fresh = await s.instances([{ Name: 'tag:pristine:replaces', Values: [old.instanceId] }]);
      expect(fresh.map((i) => i.State?.Name)).toEqual(['running']);
      expect(fresh[0]?.InstanceId).toBe(r?.newInstanceId);
      expect(await s.state(old.instanceId)).toBe('terminated');

      const targets = await s.targets(tg);
      expect(targets[r!.newInstanceId!]).toBe('healthy');
      expect(targets[old.instanceId]).toBeUndefined();

      // Nothing running that no replacement owns, and no instance replaced twice.
      const db = new Database(s.statePath, { readonly: true });
      const rows = db.prepare('SELECT old_instance_id, new_instance_id, status FROM replacements').all() as Array<{ old_instance_id: string; new_instance_id: string; status: string }>;
      const journal = db.prepare(`SELECT step, phase FROM journal WHERE replacement_id = (SELECT id FROM replacements WHERE old_instance_id = ?) ORDER BY id`).all(old.instanceId) as Array<{ step: string; phase: string }>;
      db.close();
      const owned = new Set(rows.map((x) => x.new_instance_id));
      const launchedByPristine = await s.instances([{ Name: 'tag-key', Values: ['pristine:replacement'] }, { Name: 'instance-state-name', Values: ['pending', 'running'] }]);
      expect(launchedByPristine.filter((i) => !owned.has(i.InstanceId ?? '')).map((i) => i.InstanceId)).toEqual([]);
      expect(rows.filter((x) => x.old_instance_id === old.instanceId)).toHaveLength(1);
      expect(rows.every((x) => x.status === 'done')).toBe(true);
      // The step it died in was begun twice and ended once.
      expect(journal.filter((j) => j.step === step).map((j) => j.phase)).toEqual(['begin', 'begin', 'end']);
      expect(journal[journal.length - 1]).toEqual({ step: 'done', phase: 'end' });
    });
  });
}
