import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { once } from 'node:events';
import { inspect } from 'node:util';
import {
  createSessionStore,
  getSessionCacheOptionsToken,
  getSessionCacheToken,
  SessionCache,
  SessionCacheAuthError,
  SessionCacheTlsError,
  SessionCacheUnavailableError,
} from '../../../src';
import type { NodeUpEvent, SessionCacheOptions } from '../../../src';
import { makeTestCertificates } from '../../support/certificates.mjs';
import type { TestCertificates } from '../../support/certificates.mjs';
import { cookieFrom } from '../../support/http';
import { CapturingLogger } from '../../support/logger';
import { MemcachedProcess } from '../../support/memcached.mjs';
import { coreModule } from '../core/core.module';

const USER = 'alice';
const PASSWORD = 'tls-p@ss:w/rd%';
/** How long a start-up that must fail may take, with `timeout: TIMEOUT` (generous for shared CI). */
const TIMEOUT = 500;
const QUICK_MS = TIMEOUT + 1000;

function report(line: string) {
  process.stdout.write(`tls: ${line}\n`);
}

describe('TLS to real memcached -Z processes (certificates made with openssl)', () => {
  let pki: TestCertificates;
  /** memcached -Z with the test CA's server certificate (IP 127.0.0.1, DNS localhost). */
  let tlsServer: MemcachedProcess;
  /** The same, requiring client certificates of the test CA (ssl_verify_mode=2). */
  let mutual: MemcachedProcess;
  /** memcached -S -Z: SASL over TLS. */
  let saslTls: MemcachedProcess;
  /** A plaintext memcached. */
  let plain: MemcachedProcess;
  const apps: INestApplication[] = [];
  const texts: string[] = [];

  /** Every private key's body and the SASL password: none may show up in errors or logs. */
  function expectNoSecrets(more: string[] = []): void {
    const keyLines = [pki.server, pki.client, pki.otherClient, pki.ca, pki.otherCa].flatMap((c) =>
      c.key.split('\n').filter((line) => line.length > 20 && !line.startsWith('-----')),
    );
    expect(keyLines.length).toBeGreaterThan(4);
    const secrets = [...keyLines, PASSWORD, encodeURIComponent(PASSWORD)];
    for (const text of [...texts, ...more]) {
      for (const secret of secrets) expect(text).not.toContain(secret);
    }
  }

  async function buildApp(url: string, options: Partial<SessionCacheOptions> = {}) {
    const moduleRef = await Test.createTestingModule({
      imports: [coreModule(url, { timeout: TIMEOUT, ...options })],
    }).compile();
    const logger = new CapturingLogger();
    const app = moduleRef.createNestApplication({ logger });
    apps.push(app);
    return { app, logger };
  }

  async function startApp(url: string, options: Partial<SessionCacheOptions> = {}) {
    const ctx = await buildApp(url, options);
    await ctx.app.init();
    texts.push(...ctx.logger.lines);
    return ctx;
  }

  /** The start-up error of an app that must fail quickly with a SessionCacheTlsError. */
  async function startUpTlsError(
    server: MemcachedProcess,
    url: string,
    options: Partial<SessionCacheOptions> = {},
  ) {
    const { app, logger } = await buildApp(url, options);
    const started = performance.now();
    const error: unknown = await app.init().then(
      () => new Error('app.init() resolved, but start-up should have failed'),
      (err: unknown) => err,
    );
    const ms = performance.now() - started;
    expect(error).toBeInstanceOf(SessionCacheTlsError);
    const tlsError = error as SessionCacheTlsError;
    expect(tlsError.name).toBe('SessionCacheTlsError');
    expect(tlsError.server).toBe(server.address);
    expect(tlsError.message).toBe(
      `TLS to session memcached ${server.address} failed: ${tlsError.reason}`,
    );
    expect(ms).toBeLessThan(QUICK_MS);
    texts.push(tlsError.message, inspect(tlsError, { depth: 5 }), ...logger.lines);
    expectNoSecrets();
    return { error: tlsError, logger, ms };
  }

  async function login(app: INestApplication, user: string): Promise<string> {
    const res = await request(app.getHttpServer()).post('/login').send({ user }).expect(200);
    return cookieFrom(res);
  }

  async function roundTrip(app: INestApplication): Promise<string> {
    const cookie = await login(app, 'ada');
    for (let i = 1; i <= 3; i++) {
      const res = await request(app.getHttpServer()).post('/visits').set('Cookie', cookie);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ visits: i });
    }
    const me = await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
    expect(me.body).toMatchObject({ user: 'ada', visits: 3 });
    return cookie;
  }

  beforeAll(async () => {
    // Without openssl this throws OPENSSL_INSTALL_HINT (how to install it): every test fails.
    pki = makeTestCertificates();
    [tlsServer, mutual, saslTls, plain] = await Promise.all([
      MemcachedProcess.start({ tls: pki.memcachedTls() }),
      MemcachedProcess.start({ tls: pki.memcachedTls({ mutual: true }) }),
      MemcachedProcess.start({
        tls: pki.memcachedTls(),
        sasl: { username: USER, password: PASSWORD },
      }),
      MemcachedProcess.start(),
    ]);
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
    expectNoSecrets();
  });
  afterAll(async () => {
    await Promise.all([tlsServer, mutual, saslTls, plain].map((m) => m?.kill()));
    pki?.remove();
  });

  it('sessions round trip over memcacheds:// with the test CA, by IP and by host name', async () => {
    expect(tlsServer.url).toBe(`memcacheds://127.0.0.1:${tlsServer.port}`);
    const started = performance.now();
    const { app, logger } = await startApp(tlsServer.url, { tls: { ca: pki.ca.cert } });
    report(`app.init() with a TLS start-up check: ${Math.round(performance.now() - started)} ms`);
    const cookie = await roundTrip(app);
    expect(logger.lines.join('\n')).not.toMatch(/not reachable|TLS|verify/);

    // By name: "localhost" is sent as SNI and checked against the certificate's DNS entry.
    const byName = await startApp(`memcacheds://localhost:${tlsServer.port}`, {
      tls: { ca: pki.ca.cert },
    });
    const again = await request(byName.app.getHttpServer()).get('/me').set('Cookie', cookie);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ user: 'ada', visits: 3 });
    // The session is in memcached (read over TLS by the test helper's own connection).
    expect(Number((await tlsServer.stats()).curr_items)).toBeGreaterThan(0);
  });

  it('the tls option works in createSessionStore and the SessionCache client; options never show the key', async () => {
    const store = createSessionStore(tlsServer.url, {
      keySecret: 'k',
      tls: { ca: pki.ca.cert },
    });
    const byOption = new SessionCache([{ host: '127.0.0.1', port: tlsServer.port }], {
      tls: { ca: pki.ca.cert },
    });
    try {
      await store.client.set('tls:store', 'x', 60);
      expect(String(await byOption.get('tls:store'))).toBe('x');
      expect(String(await tlsServer.getRaw('tls:store'))).toBe('x');
      expect(byOption.tls).toBeDefined();
    } finally {
      await store.close();
      await byOption.close();
    }
    // Module options with a client certificate: the resolved options hold no private key.
    const { app } = await startApp(mutual.url, {
      tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key },
    });
    const resolved = app.get(getSessionCacheOptionsToken());
    texts.push(
      inspect(resolved, { depth: 10, showHidden: true }),
      JSON.stringify(resolved),
      inspect(app.get(getSessionCacheToken()), { depth: 6 }),
    );
    expect(inspect(resolved.tls)).toBe(
      "MemcachedTls { ca: 'custom', clientCertificate: true, rejectUnauthorized: true }",
    );
  });

  it.each([
    ["Node's default CAs (tls: true)", () => ({ tls: true as const })],
    ['another CA', () => ({ tls: { ca: pki.otherCa.cert } })],
  ])('a server certificate not signed by the trusted CA fails start-up: %s', async (_, options) => {
    const { error } = await startUpTlsError(tlsServer, tlsServer.url, options());
    expect(error.reason).toMatch(
      /^its certificate is not trusted \(unable to verify the first certificate, UNABLE_TO_VERIFY_LEAF_SIGNATURE\)\. Give the certificate of the CA that signed it \(PEM\) in the `tls.ca` option\.$/,
    );
  });

  it('a certificate that is not for the name checked fails start-up (servername)', async () => {
    const { error } = await startUpTlsError(tlsServer, tlsServer.url, {
      tls: { ca: pki.ca.cert, servername: 'wrong.example' },
    });
    expect(error.reason).toContain(
      "its certificate is not valid for the name we connect to (Host: wrong.example. is not in the cert's altnames: IP Address:127.0.0.1, DNS:localhost)",
    );
  });

  it('mutual TLS: accepted with a client certificate of the CA memcached trusts', async () => {
    const { app } = await startApp(mutual.url, {
      tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key },
    });
    await roundTrip(app);
  });

  it.each([
    ['without a client certificate', () => ({ ca: pki.ca.cert })],
    [
      'with a client certificate of another CA',
      () => ({ ca: pki.ca.cert, cert: pki.otherClient.cert, key: pki.otherClient.key }),
    ],
  ])('mutual TLS: refused %s, start-up fails clearly', async (_, tls) => {
    const { error } = await startUpTlsError(mutual, mutual.url, { tls: tls() });
    expect(error.reason).toMatch(
      /^it refused our TLS connection \(.*alert.*\): it checks client certificates \(ssl_verify_mode\)\. Give `tls.cert` and `tls.key`/,
    );
  });

  it('SASL over TLS: logs in, sessions round trip; a wrong password fails start-up as an auth error', async () => {
    expect(saslTls.urlWithCredentials).toMatch(/^memcacheds:\/\/alice:/);
    const { app } = await startApp(saslTls.urlWithCredentials, { tls: { ca: pki.ca.cert } });
    await roundTrip(app);
    const { app: wrong, logger } = await buildApp(saslTls.url, {
      tls: { ca: pki.ca.cert },
      username: USER,
      password: `${PASSWORD}-wrong`,
    });
    const error: unknown = await wrong.init().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(SessionCacheAuthError);
    expect((error as SessionCacheAuthError).server).toBe(saslTls.address);
    texts.push(inspect(error), ...logger.lines);
    expect(inspect(error)).not.toContain(`${PASSWORD}-wrong`);
  });

  it('a plaintext URL against a TLS-only port fails start-up clearly and quickly; calls fail within timeout', async () => {
    const { error, ms } = await startUpTlsError(tlsServer, `memcached://${tlsServer.address}`);
    report(`plaintext URL -> TLS port: start-up failed in ${Math.round(ms)} ms`);
    expect(error.reason).toBe(
      'it speaks TLS, but the URL is memcached:// (plaintext). Use memcacheds:// (or the `tls` ' +
        'option), with `tls.ca` for a certificate of your own CA.',
    );
    // At run time (no start-up check): memcached resets the connection at once.
    const client = SessionCache.fromUrl(`memcached://${tlsServer.address}`, { timeout: TIMEOUT });
    try {
      const started = performance.now();
      await expect(client.get('k')).rejects.toBeInstanceOf(SessionCacheUnavailableError);
      expect(performance.now() - started).toBeLessThan(TIMEOUT + 100);
    } finally {
      await client.close();
    }
  });

  it('a TLS URL against a plaintext port fails start-up clearly and quickly; calls fail within timeout', async () => {
    const { error, ms } = await startUpTlsError(plain, `memcacheds://${plain.address}`, {
      tls: { ca: pki.ca.cert },
    });
    report(`TLS URL -> plaintext port: start-up failed in ${Math.round(ms)} ms`);
    expect(error.reason).toMatch(
      /^it does not answer in TLS \(wrong version number\): this looks like a plaintext port\./,
    );
    const client = SessionCache.fromUrl(`memcacheds://${plain.address}`, {
      timeout: TIMEOUT,
      tls: { ca: pki.ca.cert },
    });
    try {
      const started = performance.now();
      await expect(client.get('k')).rejects.toBeInstanceOf(SessionCacheTlsError);
      expect(performance.now() - started).toBeLessThan(TIMEOUT + 100);
    } finally {
      await client.close();
    }
  });

  it('an unreachable TLS server only warns: the app starts', async () => {
    const gone = await MemcachedProcess.start({ tls: pki.memcachedTls() });
    await gone.kill();
    const { logger } = await startApp(gone.url, { tls: { ca: pki.ca.cert } });
    expect(
      logger.lines.some((l) => l.includes(`${gone.address} is not reachable at start-up`)),
    ).toBe(true);
  });

  it('a hung TLS server: calls fail within timeout, saying the handshake did not finish', async () => {
    const node = await MemcachedProcess.start({ tls: pki.memcachedTls() });
    const client = SessionCache.fromUrl(node.url, { timeout: TIMEOUT, tls: { ca: pki.ca.cert } });
    try {
      await node.pause(); // the kernel still accepts the TCP connection; nothing answers
      const started = performance.now();
      const error: unknown = await client.get('k').catch((err: unknown) => err);
      expect(performance.now() - started).toBeLessThan(TIMEOUT + 100);
      expect(error).toBeInstanceOf(SessionCacheUnavailableError);
      expect((error as Error).message).toContain(
        `no answer within ${TIMEOUT} ms (the TLS handshake did not finish)`,
      );
    } finally {
      await client.close();
      await node.kill();
    }
  });

  it('tls.rejectUnauthorized: false connects to an untrusted certificate, with a warning', async () => {
    const { app, logger } = await startApp(tlsServer.url, { tls: { rejectUnauthorized: false } });
    expect(logger.lines.some((l) => l.includes('does not verify its certificates'))).toBe(true);
    await roundTrip(app);
  });

  it('the TLS node killed and restarted recovers like a plain one: 503 while down, served soon after', async () => {
    const node = await MemcachedProcess.start({ tls: pki.memcachedTls() });
    try {
      const { app } = await startApp(node.url, { tls: { ca: pki.ca.cert } });
      const cache = app.get<SessionCache>(getSessionCacheToken());
      const server = app.getHttpServer();
      const created = await request(server).post('/count').expect(200);
      await request(server).post('/count').set('Cookie', cookieFrom(created)).expect(200);

      await node.kill();
      const down = await request(server).post('/count');
      expect(down.status).toBe(503);
      expect(down.headers['retry-after']).toBe('1');

      const up = once(cache, 'nodeUp') as Promise<[NodeUpEvent]>;
      const restarting = performance.now();
      await node.restart(); // empty, as after a real restart
      const ready = performance.now();
      const [event] = await up;
      const back = performance.now();
      expect(event.server).toBe(node.address);
      const res = await request(server).post('/count');
      const served = performance.now();
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ visits: 1 });
      report(
        `killed TLS node: restart took ${Math.round(ready - restarting)} ms; in service again ` +
          `${Math.round(back - ready)} ms after it was listening, first request served ` +
          `${Math.round(served - ready)} ms after`,
      );
      // Probed every retryDelay (100 ms), one TLS handshake each.
      expect(served - ready).toBeLessThan(1000);
    } finally {
      await node.kill();
    }
  });

  it('replicas and health over TLS: one of two nodes killed loses no session; health reports it', async () => {
    const nodes = await Promise.all([
      MemcachedProcess.start({ tls: pki.memcachedTls() }),
      MemcachedProcess.start({ tls: pki.memcachedTls() }),
    ]);
    try {
      const url = `memcacheds://${nodes.map((n) => n.address).join(',')}?replicas=2`;
      const { app } = await startApp(url, { tls: { ca: pki.ca.cert } });
      const cache = app.get<SessionCache>(getSessionCacheToken());
      const cookies = await Promise.all(Array.from({ length: 10 }, () => login(app, 'ada')));
      await nodes[0].kill();
      for (const cookie of cookies) {
        await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
      }
      const health = await cache.health();
      expect(health.healthy).toBe(true);
      expect(health.nodes.map((n) => n.status)).toEqual(['down', 'up']);
      expect(health.nodes[0].error).toContain(nodes[0].address);
    } finally {
      await Promise.all(nodes.map((n) => n.kill()));
    }
  });
});
