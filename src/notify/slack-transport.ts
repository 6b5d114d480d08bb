/**
 * Sends notices: to Slack (`SlackTransport`, chat.postMessage) or to a terminal (`ConsoleTransport`).
 *
 * A send is one attempt. The WebClient is built with no retries and with rate-limited calls
 * rejected at once, so a 429 or an outage surfaces immediately as a `NotifyError`; the outbox
 * retries on a later cycle, in order. `NotifyError.retryable` says whether retrying can help.
 *
 * The token never reaches an error message or a log line: errors are rebuilt from the error's
 * code alone, their `cause` is a redacted copy of the library's error chain, and the WebClient's
 * own log lines pass through a redacting adapter.
 */
import slack, {
  WebAPIHTTPError,
  WebAPIPlatformError,
  WebAPIRateLimitedError,
  WebAPIRequestError,
  WebClient,
  type Logger as SlackLogger,
  type LogLevel as SlackLogLevel,
} from '@slack/web-api';
import type { Logger } from 'pino';
import { renderPlain, renderSlack } from './slack-messages.js';
import type { Notice, Transport } from './types.js';

/**
 * Slack platform errors that are transient. Every other platform error (`invalid_auth`,
 * `channel_not_found`, `not_in_channel`, `invalid_blocks`...) needs someone to change something:
 * retrying the same message cannot help.
 */
const TRANSIENT_CODES = new Set([
  'ratelimited',
  'rate_limited',
  'internal_error',
  'fatal_error',
  'service_unavailable',
  'request_timeout',
  'team_added_to_org',
]);

/** A notice that cannot be turned into a message: it would fail the same way on every attempt. */
export class RenderError extends Error {
  override name = 'RenderError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

function rendered<T>(notice: Notice, render: (n: Notice) => T): T {
  try {
    return render(notice);
  } catch (err) {
    throw new RenderError(`${notice && typeof notice === 'object' ? String((notice as { type?: unknown }).type) : 'notice'} could not be rendered: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

export class NotifyError extends Error {
  override name = 'NotifyError';
  /** true when the same message may succeed later unchanged: rate limits, network, Slack 5xx */
  readonly retryable: boolean;
  /** Slack's error code (`invalid_auth`), `rate_limited`, `http_<status>`, `network` or `unknown` */
  readonly code: string;
  /** seconds Slack asked to wait (Retry-After), when it did */
  readonly retryAfterSeconds: number | null;
  constructor(
    message: string,
    options: { retryable: boolean; code: string; retryAfterSeconds?: number | null; cause?: unknown },
  ) {
    super(message, { cause: options.cause });
    this.retryable = options.retryable;
    this.code = options.code;
    this.retryAfterSeconds = options.retryAfterSeconds ?? null;
  }
}

export interface SlackTransportOptions {
  /** bot token, `xoxb-…` */
  token: string;
  /** Web API base URL, e.g. `http://127.0.0.1:8080/api/` (env `SLACK_API_URL`); default Slack's */
  apiUrl?: string;
  logger?: Logger;
  /** abort a call that takes longer than this; default 10 s */
  timeoutMs?: number;
}

/** Safe to print: a code made only of the characters Slack and Node use in codes. */
function safeCode(value: unknown, pattern: RegExp, fallback: string): string {
  return typeof value === 'string' && pattern.test(value) && value.length <= 64 ? value : fallback;
}

function redactor(token: string): (s: string) => string {
  if (token === '') return (s) => s;
  return (s) => s.split(token).join('[redacted]');
}

/** A copy of an error chain carrying only names, codes and redacted messages. */
function sanitizeChain(err: unknown, redact: (s: string) => string, depth = 0): Error | undefined {
  if (err === undefined || err === null || depth > 5) return undefined;
  if (!(err instanceof Error)) return new Error(redact(String(err)).slice(0, 500));
  const copy = new Error(redact(err.message).slice(0, 1000), { cause: sanitizeChain(err.cause, redact, depth + 1) });
  copy.name = redact(err.name);
  const errCode = (err as { code?: unknown }).code;
  if (typeof errCode === 'string' || typeof errCode === 'number') {
    (copy as Error & { code?: string | number }).code = typeof errCode === 'string' ? redact(errCode) : errCode;
  }
  copy.stack = redact(err.stack ?? '');
  return copy;
}

/** The first error code found along a network error's cause chain (`ECONNREFUSED`, `UND_ERR_SOCKET`, `TimeoutError`). */
function networkCode(err: unknown): string | null {
  let e: unknown = err;
  for (let depth = 0; depth < 6 && e instanceof Error; depth++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && /^[A-Z][A-Z0-9_]+$/.test(c)) return c;
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return e.name;
    e = e.cause;
  }
  return null;
}

/** Maps an error thrown by WebClient to a NotifyError whose message is built from codes only. */
export function toNotifyError(err: unknown, token: string, method = 'chat.postMessage'): NotifyError {
  const redact = redactor(token);
  const cause = sanitizeChain(err, redact);
  const prefix = `Slack ${method} failed`;
  if (err instanceof WebAPIRateLimitedError) {
    const after = Number.isFinite(err.retryAfter) ? err.retryAfter : null;
    return new NotifyError(`${prefix}: rate limited${after === null ? '' : ` (retry after ${after} s)`}`, {
      retryable: true,
      code: 'rate_limited',
      retryAfterSeconds: after,
      cause,
    });
  }
  if (err instanceof WebAPIHTTPError) {
    const status = Number.isInteger(err.statusCode) ? err.statusCode : 0;
    const retryable = status >= 500 || status === 408 || status === 429 || status === 0;
    return new NotifyError(`${prefix}: HTTP ${status}`, { retryable, code: `http_${status}`, cause });
  }
  if (err instanceof WebAPIPlatformError) {
    const code = safeCode(err.data?.error, /^[a-z0-9_.-]+$/, 'unknown_error');
    return new NotifyError(`${prefix}: ${code}`, { retryable: TRANSIENT_CODES.has(code), code, cause });
  }
  if (err instanceof WebAPIRequestError) {
    const nc = networkCode(err.original);
    return new NotifyError(`${prefix}: network error${nc ? ` (${nc})` : ''}`, { retryable: true, code: 'network', cause });
  }
  // WebClient rejects a 429 that lacks a usable Retry-After with a plain Error.
  if (err instanceof Error && /rate limit|retry header/i.test(err.message)) {
    return new NotifyError(`${prefix}: rate limited`, { retryable: true, code: 'rate_limited', cause });
  }
  // Anything else (a bug, bad arguments): retrying the same message will not help.
  const name = err instanceof Error ? safeCode(err.name, /^[A-Za-z][A-Za-z0-9_]*$/, 'Error') : typeof err;
  return new NotifyError(`${prefix}: unexpected ${name}`, { retryable: false, code: 'unknown', cause });
}

/**
 * Routes the WebClient's own log lines to pino, redacted: its debug/info at trace, its warn/error
 * at debug (a failed send is reported once, by the NotifyError the caller gets).
 */
function slackLoggerFor(logger: Logger | undefined, redact: (s: string) => string): SlackLogger {
  const LogLevel = slack.LogLevel;
  let level: SlackLogLevel = LogLevel.DEBUG;
  const fmt = (msg: unknown[]) =>
    redact(msg.map((m) => (typeof m === 'string' ? m : m instanceof Error ? m.message : safeJson(m))).join(' ')).slice(0, 2000);
  const child = logger?.child({ component: 'slack-web-api' });
  return {
    // its debug lines carry whole request bodies: trace only
    debug: (...msg: unknown[]) => child?.trace(fmt(msg)),
    info: (...msg: unknown[]) => child?.trace(fmt(msg)),
    warn: (...msg: unknown[]) => child?.debug(fmt(msg)),
    error: (...msg: unknown[]) => child?.debug(fmt(msg)),
    setLevel: (l: SlackLogLevel) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => {},
  };
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function normalizeApiUrl(apiUrl: string | undefined): string | undefined {
  if (apiUrl === undefined || apiUrl.trim() === '') return undefined;
  let url: URL;
  try {
    url = new URL(apiUrl.trim());
  } catch {
    throw new NotifyError('SLACK_API_URL is not a valid URL', { retryable: false, code: 'bad_config' });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new NotifyError('SLACK_API_URL must be an http(s) URL', { retryable: false, code: 'bad_config' });
  }
  const s = url.toString();
  return s.endsWith('/') ? s : `${s}/`;
}

export class SlackTransport implements Transport {
  private readonly client: WebClient;
  private readonly token: string;
  private readonly logger: Logger | undefined;
  /** the Web API base URL in use, always ending in '/' */
  readonly apiUrl: string;

  constructor(opts: SlackTransportOptions) {
    if (typeof opts.token !== 'string' || opts.token.trim() === '') {
      throw new NotifyError('Slack token is empty', { retryable: false, code: 'bad_config' });
    }
    this.token = opts.token;
    this.logger = opts.logger;
    const slackApiUrl = normalizeApiUrl(opts.apiUrl);
    this.client = new WebClient(opts.token, {
      ...(slackApiUrl === undefined ? {} : { slackApiUrl }),
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: opts.timeoutMs ?? 10_000,
      allowAbsoluteUrls: false,
      logger: slackLoggerFor(opts.logger, redactor(opts.token)),
    });
    this.apiUrl = this.client.slackApiUrl;
  }

  async send(input: { channel: string; notice: Notice; threadTs?: string | null }): Promise<{ ts: string | null }> {
    const { text, blocks } = rendered(input.notice, renderSlack);
    const started = Date.now();
    try {
      const res = await this.client.chat.postMessage({
        channel: input.channel,
        text,
        blocks,
        ...(input.threadTs ? { thread_ts: input.threadTs } : {}),
        unfurl_links: false,
        unfurl_media: false,
      });
      const ts = typeof res.ts === 'string' ? res.ts : null;
      this.logger?.debug(
        { channel: input.channel, notice: input.notice.type, ts, threadTs: input.threadTs ?? null, ms: Date.now() - started },
        'slack message posted',
      );
      return { ts };
    } catch (err) {
      const e = toNotifyError(err, this.token);
      this.logger?.debug(
        { channel: input.channel, notice: input.notice.type, code: e.code, retryable: e.retryable, ms: Date.now() - started },
        e.message,
      );
      throw e;
    }
  }
}

/** Anything with a `write(string)`: process.stdout, a stream, or a test's collector. */
export interface TextSink {
  write(chunk: string): unknown;
}

/** Prints notices as plain text, for when no Slack token is set (and for the demo). */
export class ConsoleTransport implements Transport {
  private seq = 0;
  constructor(private readonly out: TextSink = process.stdout) {}

  async send(input: { channel: string; notice: Notice; threadTs?: string | null }): Promise<{ ts: string | null }> {
    const ts = `console-${++this.seq}`;
    let body = rendered(input.notice, renderPlain);
    if (input.threadTs) body = body.split('\n').map((l, k) => (k === 0 ? `  ↳ ${l}` : `    ${l}`)).join('\n');
    else body = `[${input.channel}] ${body}`;
    this.out.write(`${body}\n\n`);
    return { ts };
  }
}
