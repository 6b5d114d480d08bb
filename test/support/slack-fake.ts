// A local HTTP server that speaks just enough of Slack's Web API (chat.postMessage, auth.test) for
// tests and the demo. Point @slack/web-api at it with `slackApiUrl: fake.url` (or SLACK_API_URL).
// Every posted message is recorded; outages, rate limits and a bad token can be simulated.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface FakeMessage {
  channel: string;
  text: string | null;
  /** parsed from the JSON the client sent; null when none was sent */
  blocks: unknown[] | null;
  thread_ts: string | null;
  ts: string;
  /** the bearer token (or `token` form field) the request carried; null when none */
  token: string | null;
  /** every other argument as sent (form fields as strings) */
  args: Record<string, unknown>;
}

export type DownMode = 'http500' | 'ratelimit' | 'refuse' | null;

export interface SlackFakeOptions {
  /** when set, any other token is answered `ok: false, error: 'invalid_auth'` */
  expectedToken?: string;
  /** when set, posting to any other channel is answered `ok: false, error: 'channel_not_found'` */
  channels?: string[];
}

export class SlackFake {
  /** every message accepted, in order */
  readonly messages: FakeMessage[] = [];
  /** every HTTP request that reached a handler (accepted or not), to count attempts */
  readonly requests: Array<{ method: string; at: number; status: number }> = [];
  /** when set, any other token is answered `invalid_auth` (can be changed at any time) */
  expectedToken: string | null;
  /** when set, posting elsewhere is answered `channel_not_found` (can be changed at any time) */
  channels: Set<string> | null;

  private server: Server | null = null;
  private port = 0;
  private mode: DownMode = null;
  private seq = 0;
  private readonly sockets = new Set<Socket>();

  constructor(opts: SlackFakeOptions = {}) {
    this.expectedToken = opts.expectedToken ?? null;
    this.channels = opts.channels ? new Set(opts.channels) : null;
  }

  /** The Web API base URL, `http://127.0.0.1:PORT/api/`: what SLACK_API_URL should be set to. */
  get url(): string {
    if (!this.server) throw new Error('SlackFake is not started');
    return `http://127.0.0.1:${this.port}/api/`;
  }

  /**
   * Simulates an outage: `http500` answers 500, `ratelimit` answers 429 with `Retry-After: 1`,
   * `refuse` drops every connection without an answer. `null` restores normal service.
   */
  down(mode: DownMode): void {
    this.mode = mode;
    if (mode === 'refuse') for (const s of this.sockets) s.destroy();
  }

  /** The first message that matches, waiting for it up to `timeoutMs`. */
  async waitFor(match: (m: FakeMessage) => boolean, timeoutMs: number): Promise<FakeMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching Slack message within ${timeoutMs} ms (${this.messages.length} messages)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Replies posted in the thread of the message with `ts` parentTs. */
  replies(parentTs: string): FakeMessage[] {
    return this.messages.filter((m) => m.thread_ts === parentTs);
  }

  /** Messages posted at the top level of a channel (no thread). */
  topLevel(channel?: string): FakeMessage[] {
    return this.messages.filter((m) => m.thread_ts === null && (channel === undefined || m.channel === channel));
  }

  reset(): void {
    this.messages.length = 0;
    this.requests.length = 0;
    this.mode = null;
  }

  async start(): Promise<string> {
    if (this.server) return this.url;
    const server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    });
    server.on('connection', (socket) => {
      if (this.mode === 'refuse') {
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.url;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // -------------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.url ?? '').replace(/^\/api\//, '').split('?')[0] ?? '';
    const record = (status: number) => this.requests.push({ method, at: Date.now(), status });

    if (this.mode === 'refuse') {
      record(0);
      req.socket.destroy();
      return;
    }
    const body = await readBody(req);
    if (this.mode === 'http500') {
      record(500);
      res.writeHead(500, { 'content-type': 'text/html' }).end('<html><body>Internal Server Error</body></html>');
      return;
    }
    if (this.mode === 'ratelimit') {
      record(429);
      res.writeHead(429, { 'retry-after': '1', 'content-type': 'application/json' }).end(JSON.stringify({ ok: false, error: 'ratelimited' }));
      return;
    }
    if (req.method !== 'POST' || !req.url?.startsWith('/api/')) {
      record(404);
      res.writeHead(404).end();
      return;
    }

    const args = parseArgs(req.headers['content-type'] ?? '', body);
    const auth = req.headers.authorization;
    const bearer = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice('Bearer '.length) : null;
    const token = bearer ?? (typeof args.token === 'string' ? args.token : null);
    const answer = (payload: Record<string, unknown>) => {
      record(200);
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(payload));
    };

    if (token === null || token === '') return answer({ ok: false, error: 'not_authed' });
    if (this.expectedToken !== null && token !== this.expectedToken) return answer({ ok: false, error: 'invalid_auth' });

    switch (method) {
      case 'auth.test':
        return answer({ ok: true, url: 'https://fake.slack.test/', team: 'Fake', user: 'pristine', team_id: 'T0FAKE', user_id: 'U0FAKE', bot_id: 'B0FAKE' });
      case 'chat.postMessage':
        return answer(this.postMessage(args, token));
      default:
        return answer({ ok: false, error: 'unknown_method' });
    }
  }

  private postMessage(args: Record<string, unknown>, token: string): Record<string, unknown> {
    const channel = typeof args.channel === 'string' ? args.channel : '';
    if (channel === '') return { ok: false, error: 'channel_not_found' };
    if (this.channels !== null && !this.channels.has(channel)) return { ok: false, error: 'channel_not_found' };
    let blocks: unknown[] | null = null;
    if (args.blocks !== undefined) {
      const parsed = typeof args.blocks === 'string' ? safeParse(args.blocks) : args.blocks;
      if (!Array.isArray(parsed)) return { ok: false, error: 'invalid_blocks_format' };
      blocks = parsed;
    }
    const text = typeof args.text === 'string' ? args.text : null;
    if ((text === null || text === '') && (blocks === null || blocks.length === 0)) return { ok: false, error: 'no_text' };
    const threadTs = typeof args.thread_ts === 'string' && args.thread_ts !== '' ? args.thread_ts : null;
    const ts = `${Math.floor(Date.now() / 1000)}.${String(++this.seq).padStart(6, '0')}`;
    const rest = Object.fromEntries(
      Object.entries(args).filter(([k]) => !['channel', 'text', 'blocks', 'thread_ts', 'token'].includes(k)),
    );
    this.messages.push({ channel, text, blocks, thread_ts: threadTs, ts, token, args: rest });
    return {
      ok: true,
      channel,
      ts,
      message: {
        type: 'message',
        subtype: 'bot_message',
        bot_id: 'B0FAKE',
        user: 'U0FAKE',
        text: text ?? '',
        ...(blocks ? { blocks } : {}),
        ...(threadTs ? { thread_ts: threadTs } : {}),
        ts,
      },
    };
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function safeParse(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** WebClient sends form-encoded arguments (objects as JSON strings); other clients send JSON. */
function parseArgs(contentType: string, body: string): Record<string, unknown> {
  if (contentType.includes('application/json')) {
    const parsed = safeParse(body);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  }
  return Object.fromEntries(new URLSearchParams(body));
}
