// pristine loads an AWS SDK package only when a command first needs one of its clients: its
// commands start sooner, and one that calls no AWS API (status, policy validate) loads none.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/fixtures.js';

const run = promisify(execFile);

/** Runs an ES module snippet in a fresh node (against the built dist/), and returns what it printed as JSON. */
async function inFreshNode(code: string): Promise<unknown> {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', code], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', AWS_REGION: 'eu-west-1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  });
  return JSON.parse(stdout) as unknown;
}

const LOADED = `
  import { createRequire } from 'node:module';
  const loaded = () => Object.keys(createRequire(import.meta.url).cache)
    .map((f) => /node_modules\\/@aws-sdk\\/(client-[a-z0-9-]+)\\/dist-cjs\\/index\\.js$/.exec(f)?.[1])
    .filter(Boolean).sort();
`;

describe('the AWS SDK', () => {
  it('is not loaded with pristine: loading every command of it loads no service package', async () => {
    const out = await inFreshNode(`${LOADED}
      await import('./${path.posix.join('dist', 'program.js')}');
      console.log(JSON.stringify(loaded()));`);
    expect(out).toEqual([]);
  });

  it("loads a scope's load balancer and Auto Scaling packages when their clients are first used, and makes each client once", async () => {
    const out = await inFreshNode(`${LOADED}
      const { ClientPool } = await import('./dist/collect/clients.js');
      const pool = new ClientPool(undefined, 'eu-west-1');
      const scope = { accountId: '111122223333', region: 'eu-west-1' };
      const c = pool.get(scope);
      const audit = loaded();
      const same = c.elbv2 === pool.get(scope).elbv2 && c.autoscaling === pool.get(scope).autoscaling;
      const replace = loaded();
      pool.destroy();
      console.log(JSON.stringify({ audit, same, replace }));`);
    expect(out).toEqual({
      audit: ['client-cloudtrail', 'client-ec2', 'client-ssm'],
      same: true,
      replace: ['client-auto-scaling', 'client-cloudtrail', 'client-ec2', 'client-elastic-load-balancing-v2', 'client-ssm'],
    });
  });
});
