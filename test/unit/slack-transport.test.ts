import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { renderSlack } from '../../src/notify/slack-messages.js';
import { ConsoleTransport, NotifyError, SlackTransport } from '../../src/notify/slack-transport.js';
import type { Notice } from '../../src/notify/types.js';
import { reportInstance } from '../support/facts.js';
import { SlackFake } from '../support/slack-fake.js';

const TOKEN = 'xoxb-111-222-S3CRETt0kenValue';

const taint: Notice = {
  type: 'taint',
  instance: reportInstance(),
  findings: [
    {
      detector: 'interactive-session',
      key: 'interactive-session:alice-0a1b2c3d4e5f60718',
      severity: 'high',
      effect: 'taint',
      summary: 'SSM session opened',
      at: '2026-11-21T09:30:00.000Z',
      actor: 'arn:aws:sts::111122223333:assumed-role/Admin/alice',
      evidence: {},
    },
  ],
  action: { kind: 'replace' },
};

const progress: Notice = {
  type: 'progress',
  instanceId: 'i-0abc1234def567890',
  step: 'launch replacement',
  outcome: 'started',
  message: 'from ami-0c0ffee1234567890',
};

/** a pino logger at the most verbose level, writing every line into `lines` */
function arrayLogger() {
  const lines: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (s: string) => void lines.push(s) });
  return { logger, lines };
}

/** every message, name and stack along an error's cause chain, and its own enumerable properties */
function everythingIn(err: unknown): string {
  const out: string[] = [];
  let e: unknown = err;
  for (let depth = 0; depth < 10 && e !== undefined && e !== null; depth++) {
    if (e instanceof Error) {
      out.push(e.name, e.message, e.stack ?? '');
      try {
        out.push(JSON.stringify(e));
      } catch {
        out.push('[unserialisable]');
      }
      e = e.cause;
    } else {
      out.push(String(e));
      break;
    }
  }
  return out.join('\n');
}

async function rejection(p: Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const t0 = Date.now();
  try {
    await p;
  } catch (err) {
    return { err, ms: Date.now() - t0 };
  }
  throw new Error('expected the promise to reject');
}

describe('SlackTransport against SlackFake', () => {
  const fake = new SlackFake({ expectedToken: TOKEN, channels: ['C0ALERTS'] });
  const { logger, lines } = arrayLogger();
  const errors: unknown[] = [];

  beforeAll(async () => {
    await fake.start();
  });
  afterEach(() => {
    fake.reset();
  });
  afterAll(async () => {
    await fake.stop();
    // whatever happened above, the token was never logged
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.join('\n')).not.toContain(TOKEN);
    expect(lines.join('\n')).not.toContain('S3CRET');
  });

  const transport = () => new SlackTransport({ token: TOKEN, apiUrl: fake.url, logger });

  it('posts blocks and text, and threads replies under the returned ts', async () => {
    const t = transport();
    const { ts } = await t.send({ channel: 'C0ALERTS', notice: taint });
    expect(ts).toMatch(/^\d+\.\d{6}$/);
    const reply = await t.send({ channel: 'C0ALERTS', notice: progress, threadTs: ts });
    expect(reply.ts).not.toBe(ts);

    expect(fake.messages).toHaveLength(2);
    const [parent, child] = fake.messages;
    const rendered = renderSlack(taint);
    expect(parent).toMatchObject({ channel: 'C0ALERTS', text: rendered.text, thread_ts: null, ts, token: TOKEN });
    expect(parent!.blocks).toEqual(rendered.blocks);
    expect(parent!.args.unfurl_links).toBe('false');
    expect(child).toMatchObject({ thread_ts: ts, ts: reply.ts });
    expect(fake.replies(ts!)).toEqual([child]);
    expect(fake.topLevel('C0ALERTS')).toEqual([parent]);
  });

  it('accepts an API URL without the trailing slash', async () => {
    const t = new SlackTransport({ token: TOKEN, apiUrl: fake.url.replace(/\/$/, ''), logger });
    expect(t.apiUrl).toBe(fake.url);
    await t.send({ channel: 'C0ALERTS', notice: progress });
    expect(fake.messages).toHaveLength(1);
  });

  it.each([
    ['ratelimit', 'rate_limited'],
    ['http500', 'http_500'],
    ['refuse', 'network'],
  ] as const)('%s: rejects at once with a retryable NotifyError, without retrying', async (mode, code) => {
    fake.down(mode);
    const { err, ms } = await rejection(transport().send({ channel: 'C0ALERTS', notice: taint }));
    errors.push(err);
    expect(ms).toBeLessThan(2000);
    expect(err).toBeInstanceOf(NotifyError);
    const e = err as NotifyError;
    expect(e.name).toBe('NotifyError');
    expect(e.retryable).toBe(true);
    expect(e.code).toBe(code);
    expect(e.message).toMatch(/^Slack chat\.postMessage failed: /);
    if (mode === 'ratelimit') expect(e.retryAfterSeconds).toBe(1);
    expect(e.cause).toBeInstanceOf(Error);
    expect(fake.requests.length).toBeLessThanOrEqual(1); // one attempt: no retry inside the call
    expect(fake.messages).toHaveLength(0);

    fake.down(null);
    await transport().send({ channel: 'C0ALERTS', notice: taint });
    expect(fake.messages).toHaveLength(1);
  });

  it('a refused connection rejects at once with a retryable NotifyError', async () => {
    const closed = new SlackFake();
    await closed.start();
    const url = closed.url;
    await closed.stop();
    const { err, ms } = await rejection(new SlackTransport({ token: TOKEN, apiUrl: url, logger }).send({ channel: 'C0ALERTS', notice: taint }));
    errors.push(err);
    expect(ms).toBeLessThan(2000);
    expect(err).toBeInstanceOf(NotifyError);
    expect(err).toMatchObject({ retryable: true, code: 'network' });
    expect((err as Error).message).toContain('ECONNREFUSED');
  });

  it('a server that never answers times out as a retryable NotifyError', async () => {
    const sockets = new Set<Socket>();
    const silent: NetServer = createNetServer((s) => void sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    try {
      const t = new SlackTransport({ token: TOKEN, apiUrl: `http://127.0.0.1:${port}/api/`, logger, timeoutMs: 300 });
      const { err, ms } = await rejection(t.send({ channel: 'C0ALERTS', notice: taint }));
      errors.push(err);
      expect(ms).toBeLessThan(2000);
      expect(err).toMatchObject({ name: 'NotifyError', retryable: true, code: 'network' });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it('invalid_auth is not retryable', async () => {
    const t = new SlackTransport({ token: `${TOKEN}-wrong`, apiUrl: fake.url, logger });
    const { err } = await rejection(t.send({ channel: 'C0ALERTS', notice: taint }));
    errors.push(err);
    expect(err).toBeInstanceOf(NotifyError);
    expect(err).toMatchObject({ retryable: false, code: 'invalid_auth', message: 'Slack chat.postMessage failed: invalid_auth' });
  });

  it('channel_not_found is not retryable', async () => {
    const { err } = await rejection(transport().send({ channel: 'C0NOWHERE', notice: taint }));
    errors.push(err);
    expect(err).toMatchObject({ retryable: false, code: 'channel_not_found' });
  });

  it('the token appears in no error message, cause chain or log line', () => {
    expect(errors.length).toBeGreaterThanOrEqual(6);
    for (const err of errors) {
      const all = everythingIn(err);
      expect(all).not.toContain(TOKEN);
      expect(all).not.toContain('S3CRET');
    }
    expect(lines.join('\n')).not.toContain('S3CRET');
  });

  it('rejects an empty token or a bad URL at construction, without echoing them', () => {
    expect(() => new SlackTransport({ token: '' })).toThrow(NotifyError);
    expect(() => new SlackTransport({ token: TOKEN, apiUrl: `ftp://${TOKEN}@x/` })).toThrow(/http\(s\)/);
    try {
      new SlackTransport({ token: TOKEN, apiUrl: `not a url ${TOKEN}` });
    } catch (err) {
      expect(everythingIn(err)).not.toContain(TOKEN);
    }
  });
});

describe('ConsoleTransport', () => {
  it('prints plain text and returns synthetic ts values', async () => {
    const out: string[] = [];
    const t = new ConsoleTransport({ write: (s: string) => out.push(s) });
    const a = await t.send({ channel: 'C0ALERTS', notice: taint });
    const b = await t.send({ channel: 'C0ALERTS', notice: progress, threadTs: a.ts });
    expect(a.ts).toBe('console-1');
    expect(b.ts).toBe('console-2');
    const printed = out.join('');
    expect(printed).toContain('TAINTED: web-1');
    expect(printed).toContain('who:  arn:aws:sts::111122223333:assumed-role/Admin/alice');
    expect(printed).toContain('What pristine will do: Replace it');
    expect(printed).toContain('  ↳ i-0abc1234def567890: launch replacement: started - from ami-0c0ffee1234567890');
    expect(printed).not.toMatch(/<!date|\*Who|&lt;/);
  });
});
