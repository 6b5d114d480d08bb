import { request } from 'node:http';
import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { parseListen, startHttpServer, type Health, type HttpServer } from '../../src/daemon/http-server.js';

function get(url: string, method = 'GET', agent?: import('node:http').Agent): Promise<{ status: number; type: string; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('startHttpServer', () => {
  let server: HttpServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function start(health: () => Health, registry = new Registry()): Promise<HttpServer> {
    server = await startHttpServer({ host: '127.0.0.1', port: 0, health, registry });
    return server;
  }

  it('binds port 0 to a free port and reports it', async () => {
    const s = await start(() => ({ ok: true }));
    expect(s.port).toBeGreaterThan(0);
    expect(s.url).toBe(`http://127.0.0.1:${s.port}`);
  });

  it('GET /healthz is 200 with the details when healthy', async () => {
    const s = await start(() => ({ ok: true, details: { lastCycle: '2026-11-29T10:00:00.000Z', cycles: 3, status: 'ignored' } }));
    const res = await get(`${s.url}/healthz`);
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/^application\/json/);
    expect(JSON.parse(res.body)).toEqual({ status: 'ok', lastCycle: '2026-11-29T10:00:00.000Z', cycles: 3 });
  });

  it('GET /healthz is 503 with the reason when unhealthy', async () => {
    const s = await start(() => ({ ok: false, reason: 'no cycle finished in 21m' }));
    const res = await get(`${s.url}/healthz?verbose=1`);
    expect(res.status).toBe(503);
    expect(res.type).toMatch(/^application\/json/);
    expect(JSON.parse(res.body)).toEqual({ status: 'unhealthy', reason: 'no cycle finished in 21m' });
  });

  it('GET /healthz is 503 with the message when the health check throws', async () => {
    const s = await start(() => {
      throw new Error('state store closed');
    });
    const res = await get(`${s.url}/healthz`);
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toEqual({ status: 'unhealthy', reason: 'state store closed' });
  });

  it('GET /metrics serves the registry with its content type', async () => {
    const registry = new Registry();
    const c = new Counter({ name: 'pristine_test_total', help: 'test', labelNames: ['outcome'], registers: [registry] });
    c.inc({ outcome: 'ok' }, 4);
    const s = await start(() => ({ ok: true }), registry);
    const res = await get(`${s.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.type).toBe(registry.contentType);
    expect(res.body).toContain('# TYPE pristine_test_total counter');
    expect(res.body).toContain('pristine_test_total{outcome="ok"} 4');
  });

  it('answers 404 for other paths and 405 for other methods', async () => {
    const s = await start(() => ({ ok: true }));
    expect((await get(`${s.url}/`)).status).toBe(404);
    expect((await get(`${s.url}/healthz/extra`)).status).toBe(404);
    const post = await get(`${s.url}/metrics`, 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET');
    expect((await get(`${s.url}/healthz`, 'DELETE')).status).toBe(405);
  });

  it('close() also closes idle keep-alive connections, and may be called twice', async () => {
    const s = await start(() => ({ ok: true }));
    const { Agent } = await import('node:http');
    const agent = new Agent({ keepAlive: true });
    try {
      expect((await get(`${s.url}/healthz`, 'GET', agent)).status).toBe(200);
      const t0 = Date.now();
      await s.close();
      await s.close();
      expect(Date.now() - t0).toBeLessThan(1000);
      await expect(get(`${s.url}/healthz`)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      agent.destroy();
    }
  });

  it('rejects when the port is taken', async () => {
    const s = await start(() => ({ ok: true }));
    await expect(startHttpServer({ host: '127.0.0.1', port: s.port, health: () => ({ ok: true }), registry: new Registry() })).rejects.toThrow(
      /EADDRINUSE/,
    );
  });
});

describe('parseListen', () => {
  it.each([
    ['9464', { host: '0.0.0.0', port: 9464 }],
    ['0', { host: '0.0.0.0', port: 0 }],
    ['65535', { host: '0.0.0.0', port: 65535 }],
    [':9464', { host: '0.0.0.0', port: 9464 }],
    ['127.0.0.1:9464', { host: '127.0.0.1', port: 9464 }],
    ['localhost:8080', { host: 'localhost', port: 8080 }],
    ['metrics.internal.example:80', { host: 'metrics.internal.example', port: 80 }],
    ['[::1]:9464', { host: '::1', port: 9464 }],
    ['[::]:9464', { host: '::', port: 9464 }],
    [' 9464 ', { host: '0.0.0.0', port: 9464 }],
  ])('reads %j', (text, expected) => {
    expect(parseListen(text)).toEqual(expected);
  });

  it.each(['', 'abc', '65536', '99999', '-1', '1.5', '127.0.0.1:', '127.0.0.1', '::1:9464', '[::1]', '[::1]9464', '[nope]:9464', 'bad_host:9464', '127.0.0.1:0x10', 'host:1:2'])(
    'rejects %j naming --listen',
    (text) => {
      expect(() => parseListen(text)).toThrow(InputError);
      expect(() => parseListen(text)).toThrow(/^--listen: /);
    },
  );
});
