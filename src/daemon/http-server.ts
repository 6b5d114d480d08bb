import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, isIPv6, type AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { describeError, InputError } from '../errors.js';
import type { Logger } from '../logger.js';

export interface Health {
  ok: boolean;
  reason?: string;
  details?: Record<string, unknown>;
}

export interface HttpServerOptions {
  host: string;
  port: number;
  health: () => Health | Promise<Health>;
  registry: Registry;
  logger?: Logger;
}

export interface HttpServer {
  /** e.g. `http://127.0.0.1:9464` or `http://[::1]:9464`: the address actually bound. */
  url: string;
  /** The port actually bound (the kernel's choice when asked for 0). */
  port: number;
  /** Stops listening and closes every connection, idle keep-alive ones included. Idempotent. */
  close(): Promise<void>;
}

export const DEFAULT_LISTEN_HOST = '0.0.0.0';

const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Reads `--listen [HOST:]PORT`: `9464`, `127.0.0.1:9464`, `localhost:9464`, `[::1]:9464`.
 * The host defaults to 0.0.0.0 (every IPv4 interface); an IPv6 address must be in brackets.
 */
export function parseListen(text: string): { host: string; port: number } {
  const fail = (why: string): InputError =>
    new InputError(`--listen: ${why}; expected [HOST:]PORT such as 9464, 127.0.0.1:9464 or [::1]:9464, got ${JSON.stringify(text)}`);
  const input = text.trim();
  let host = DEFAULT_LISTEN_HOST;
  let portText = input;
  if (input.startsWith('[')) {
    const m = /^\[([^\]]*)\]:([^:]*)$/.exec(input);
    if (!m) throw fail('an IPv6 address in brackets must be followed by :PORT');
    const [, inner = '', p = ''] = m;
    if (!isIPv6(inner)) throw fail(`${JSON.stringify(inner)} is not an IPv6 address`);
    host = inner;
    portText = p;
  } else if (input.includes(':')) {
    const at = input.lastIndexOf(':');
    const h = input.slice(0, at);
    portText = input.slice(at + 1);
    if (h.includes(':')) throw fail('put an IPv6 address in brackets, as [::1]:9464');
    if (h !== '') {
      if (isIP(h) === 0 && !HOSTNAME.test(h)) throw fail(`${JSON.stringify(h)} is not a host name or IP address`);
      host = h;
    }
  }
  if (!/^\d{1,5}$/.test(portText)) throw fail(portText === '' ? 'missing port' : `${JSON.stringify(portText)} is not a port number`);
  const port = Number(portText);
  if (port > 65535) throw fail(`port ${port} is out of range 0-65535`);
  return { host, port };
}

function formatUrl(host: string, port: number): string {
  return `http://${isIPv6(host) ? `[${host}]` : host}:${port}`;
}

function send(res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(body)}\n`);
}

async function healthBody(health: () => Health | Promise<Health>): Promise<{ status: number; body: Record<string, unknown> }> {
  let h: Health;
  try {
    h = await health();
  } catch (err) {
    return { status: 503, body: { status: 'unhealthy', reason: describeError(err) } };
  }
  // `status` (and `reason`) are ours: details cannot overwrite them.
  const { status: _s, reason: _r, ...details } = h.details ?? {};
  if (h.ok) return { status: 200, body: { status: 'ok', ...details } };
  return { status: 503, body: { status: 'unhealthy', reason: h.reason ?? 'unhealthy', ...details } };
}

/**
 * A minimal HTTP endpoint for the daemon: `GET /healthz` (200 or 503, JSON) and `GET /metrics`
 * (Prometheus text from `registry`). Every other path is 404, every other method 405.
 */
export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const { health, registry, logger } = opts;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const known = path === '/healthz' || path === '/metrics';
    if (!known) {
      sendJson(res, 404, { error: 'not found', path });
      return;
    }
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET');
      sendJson(res, 405, { error: 'method not allowed', method: req.method ?? '' });
      return;
    }
    if (path === '/healthz') {
      const { status, body } = await healthBody(health);
      if (status !== 200) logger?.debug({ status, reason: body.reason }, 'health check failed');
      sendJson(res, status, body);
      return;
    }
    const text = await registry.metrics();
    send(res, 200, registry.contentType, text);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger?.warn({ err, url: req.url }, 'http request failed');
      if (!res.headersSent) sendJson(res, 500, { error: describeError(err) });
      else res.destroy();
    });
  });
  server.on('clientError', (err, socket) => {
    logger?.debug({ err }, 'http client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new Error(`cannot listen on ${formatUrl(opts.host, opts.port)}: ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger?.error({ err }, 'http server error'));

  const address = server.address() as AddressInfo;
  const url = formatUrl(address.address, address.port);
  logger?.info({ url }, 'http server listening');

  let closing: Promise<void> | null = null;
  return {
    url,
    port: address.port,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
