// One `pristine daemon` process for the integration tests and the latency benchmark: its stderr
// read as JSON log lines as they come, waits on them, and signals.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './fixtures.js';

export interface LogLine {
  level: unknown;
  msg: unknown;
  time?: string;
  [key: string]: unknown;
}

/** One `pristine daemon` process: its stderr parsed as JSON lines as they come. */
export class Daemon {
  readonly lines: LogLine[] = [];
  /** Non-empty stderr lines that are not JSON objects with `level` and `msg`. */
  readonly garbage: string[] = [];
  stderr = '';
  stdout = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  exit: { code: number | null; signal: NodeJS.Signals | null; at: number } | null = null;
  private readonly child: ChildProcessWithoutNullStreams;
  private pending = '';
  private waiters: Array<() => void> = [];

  constructor(args: string[], env: Record<string, string>, cwd: string) {
    this.child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), 'daemon', ...args], { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin.end();
    this.child.stdout.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr.on('data', (d: Buffer) => this.onStderr(d.toString()));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal, at: Date.now() };
        this.flush();
        resolve(this.exit);
        this.wake();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private onStderr(text: string): void {
    this.stderr += text;
    this.pending += text;
    let nl: number;
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      this.take(this.pending.slice(0, nl));
      this.pending = this.pending.slice(nl + 1);
    }
    this.wake();
  }

  private flush(): void {
    if (this.pending !== '') this.take(this.pending);
    this.pending = '';
  }

  private take(line: string): void {
    if (line.trim() === '') return;
    try {
      const parsed = JSON.parse(line) as unknown;
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) && 'level' in parsed && typeof (parsed as LogLine).msg === 'string') {
        this.lines.push(parsed as LogLine);
        return;
      }
    } catch {
      // not JSON: kept below
    }
    this.garbage.push(line);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  withMsg(msg: string): LogLine[] {
    return this.lines.filter((l) => l.msg === msg);
  }

  /** Resolves with the `n`th (1-based) log line whose msg is `msg`; fails on timeout or exit. */
  async waitFor(msg: string, timeoutMs: number, n = 1): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.withMsg(msg)[n - 1];
      if (found) return found;
      if (this.exit) throw new Error(`daemon exited (${JSON.stringify(this.exit)}) before logging "${msg}" #${n}:\n${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${msg}" #${n} within ${timeoutMs} ms:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The URL the daemon logged in 'pristine daemon started'. */
  async url(timeoutMs = 15_000): Promise<string> {
    const started = await this.waitFor('pristine daemon started', timeoutMs);
    if (typeof started.listen !== 'string' || !/^http:\/\/127\.0\.0\.1:\d+$/.test(started.listen)) throw new Error(`odd listen address: ${JSON.stringify(started.listen)}`);
    return started.listen;
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.exit) this.child.kill(sig);
  }

  /** SIGTERM, then the exit (SIGKILL after `timeoutMs`, and the test fails). */
  async stop(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const sentAt = Date.now();
    this.signal('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
    const result = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (!result) {
      await this.kill();
      throw new Error(`daemon did not exit within ${timeoutMs} ms of SIGTERM:\n${this.stderr}`);
    }
    return { code: result.code, signal: result.signal, ms: result.at - sentAt };
  }

  /** Last resort for afterAll: SIGKILL if still running, and wait for it to go. */
  async kill(): Promise<void> {
    if (this.exit) return;
    this.child.kill('SIGKILL');
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 5_000))]);
  }
}

