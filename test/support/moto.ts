// Finds, starts and stops a local moto_server (https://github.com/getmoto/moto) for the
// integration tests and the demo. moto speaks EC2, STS, ELBv2, AutoScaling and most of SSM;
// test/support/aws-fake.ts sits in front of it for the operations moto lacks.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const isWindows = process.platform === 'win32';
const venvDir = join(repoRoot, '.venv');
const venvBin = join(venvDir, isWindows ? 'Scripts' : 'bin');
const exe = (name: string): string => (isWindows ? `${name}.exe` : name);

const HOW_TO_GET_IT =
  "pristine's integration tests need moto's server: pip install 'moto[server]' " +
  '(or set MOTO_SERVER=/path/to/moto_server)';

export interface MotoServer {
  /** Base URL, e.g. `http://127.0.0.1:43123`. */
  url: string;
  /** Kills the server and resolves once it has exited. Safe to call twice. */
  stop(): Promise<void>;
}

let resolved: Promise<string> | undefined;

/**
 * Path of a moto_server executable: `$MOTO_SERVER`, else `moto_server` on PATH, else
 * `<repo>/.venv/bin/moto_server`; failing all three, creates `<repo>/.venv` and pip-installs
 * `moto[server]` into it. Throws an Error that says how to install moto if nothing works.
 * The answer is cached for the life of the process.
 */
export function resolveMotoServer(): Promise<string> {
  if (!resolved) {
    const attempt = findOrInstallMotoServer();
    resolved = attempt;
    // A failed lookup is not cached, so a later call can see a freshly installed moto.
    attempt.catch(() => {
      if (resolved === attempt) resolved = undefined;
    });
  }
  return resolved;
}

async function findOrInstallMotoServer(): Promise<string> {
  const fromEnv = process.env.MOTO_SERVER;
  if (fromEnv) {
    if (await runsOk(fromEnv)) return fromEnv;
    throw new Error(`MOTO_SERVER=${fromEnv} is not a working moto_server. ${HOW_TO_GET_IT}`);
  }

  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, exe('moto_server'));
    // `--help` rather than a bare existence check: a pyenv shim exists for every Python
    // version but fails for versions that lack the package.
    if (await runsOk(candidate)) return candidate;
  }

  const inVenv = join(venvBin, exe('moto_server'));
  if (await runsOk(inVenv)) return inVenv;

  return installIntoVenv(inVenv);
}

async function installIntoVenv(target: string): Promise<string> {
  const venvExisted = await isAccessible(venvDir);
  const steps: Array<[string, string[]]> = [
    [isWindows ? 'python' : 'python3', ['-m', 'venv', venvDir]],
    [
      join(venvBin, exe('pip')),
      // Few retries and a short timeout: without network access pip would otherwise spend minutes.
      ['install', '--disable-pip-version-check', '--retries', '1', '--timeout', '20', 'moto[server]'],
    ],
  ];
  const log: string[] = [];
  try {
    for (const [cmd, args] of steps) {
      const { code, output } = await run(cmd, args, 10 * 60_000);
      log.push(`$ ${cmd} ${args.join(' ')}\n${output.trim()}`);
      if (code !== 0) throw new Error(`exit code ${String(code)}`);
    }
    if (await runsOk(target)) return target;
    throw new Error(`${target} does not run after installation`);
  } catch (err) {
    // Leave no half-built venv behind, or the next run would find a broken one.
    if (!venvExisted) await rm(venvDir, { recursive: true, force: true }).catch(() => undefined);
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `${HOW_TO_GET_IT}. Installing it into ${venvDir} failed (${reason}):\n${tail(log.join('\n'), 2000)}`,
      { cause: err },
    );
  }
}

async function isAccessible(path: string, mode = fsConstants.F_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

async function runsOk(path: string): Promise<boolean> {
  if (!(await isAccessible(path, isWindows ? fsConstants.F_OK : fsConstants.X_OK))) return false;
  const { code } = await run(path, ['--help'], 30_000);
  return code === 0;
}

/** Runs a command to completion, capturing the tail of its combined output. Never rejects. */
function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    let output = '';
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    const collect = (chunk: Buffer): void => {
      output = tail(output + chunk.toString('utf8'), 8000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', (err) => resolve({ code: null, output: `${output}\n${err.message}` }));
    child.on('close', (code) => resolve({ code, output }));
  });
}

function tail(text: string, max: number): string {
  return text.length > max ? text.slice(-max) : text;
}

// ---------------------------------------------------------------------------------------------
// Starting and stopping

const running = new Set<ChildProcess>();
let exitHooksInstalled = false;

/** Kills every moto this process started when the process goes away, even on a crash or ^C. */
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const killAll = (): void => {
    for (const child of running) child.kill('SIGKILL');
    running.clear();
  };
  process.on('exit', killAll);
  // Signals are only delivered to the main thread; vitest may run tests in worker threads.
  if (!isMainThread) return;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAll();
      // Listening to a signal cancels Node's default "exit"; restore it unless someone else
      // listens too (they then own the decision to exit).
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const START_TIMEOUT_MS = 20_000;

/**
 * Starts moto_server on a free 127.0.0.1 port and waits until it answers HTTP.
 * Each call starts a separate server, so parallel test files don't share state.
 */
export async function startMoto(): Promise<MotoServer> {
  const bin = await resolveMotoServer();
  installExitHooks();
  // The port is free when probed but could be taken before moto binds it; retry on that race.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(bin, await freePort());
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOnce(bin: string, port: number): Promise<MotoServer> {
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);

  // moto logs every request; keep draining the pipes (a full pipe would block it) but keep only
  // the tail, for the error message if it dies.
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = tail(output + chunk.toString('utf8'), 4000);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);

  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      running.delete(child);
      resolve();
    });
  });
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
    running.delete(child);
  });

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && !spawnError) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    running.delete(child);
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (spawnError) throw new Error(`could not run ${bin}: ${spawnError.message}. ${HOW_TO_GET_IT}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`moto_server exited early (${child.exitCode ?? child.signalCode}) on port ${port}:\n${output}`);
    }
    if (await answers(`${url}/moto-api/`)) return { url, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`moto_server did not answer on ${url} within ${START_TIMEOUT_MS / 1000}s:\n${output}`);
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** The environment variable the global setup lists its motos in, one URL per worker, space-separated. */
export const SHARED_MOTO_ENV = 'PRISTINE_TEST_MOTO_URLS';

/**
 * This vitest worker's moto, wiped, when the global setup started one per worker; else (a script, or
 * a runner without the global setup) a moto of its own. Stopping the shared one leaves it running for
 * the worker's next file.
 */
export async function motoForThisWorker(): Promise<MotoServer> {
  const urls = (process.env[SHARED_MOTO_ENV] ?? '').split(' ').filter(Boolean);
  const pool = Number(process.env.VITEST_POOL_ID);
  if (urls.length === 0 || !Number.isInteger(pool) || pool < 1) return startMoto();
  const url = urls[(pool - 1) % urls.length] as string;
  await resetMoto(url);
  return { url, stop: () => Promise.resolve() };
}

/** Wipes all of moto's state (every service, every region). */
export async function resetMoto(url: string): Promise<void> {
  const res = await fetch(`${url}/moto-api/reset`, { method: 'POST' });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`moto reset failed: HTTP ${res.status}`);
}
