import { jest } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { inspect } from 'node:util';
import { MemcachedCredentials, SessionCache, SessionCacheAuthError } from '../../../src';
import type { SessionCacheOptions } from '../../../src';
import { cookieFrom } from '../../support/http';
import { CapturingLogger } from '../../support/logger';
import { freePort, MemcachedProcess } from '../../support/memcached.mjs';
import { coreModule } from '../core/core.module';

// A password with every character that must be percent-encoded in a URL's userinfo.
const USER = 'alice';
const PASSWORD = 'p@ss:w/rd%';
const WRONG = 'Wr0ng-p@ss:w/rd%';
const SECRETS = [PASSWORD, WRONG, encodeURIComponent(PASSWORD), encodeURIComponent(WRONG)];

/** `memcached://user:password@<address>` with both parts percent-encoded. */
function urlWith(address: string, user: string, password: string): string {
  return `memcached://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${address}`;
}

function expectNoPassword(texts: string[]): void {
  for (const text of texts) for (const secret of SECRETS) expect(text).not.toContain(secret);
}

describe('SASL against a real memcached -S (sasldb made with saslpasswd2)', () => {
  let memcached: MemcachedProcess;
  const apps: INestApplication[] = [];

  /** A scenario app that is not initialised yet; it is closed after the test, whatever happens. */
  async function buildApp(url: string, options: Partial<SessionCacheOptions> = {}) {
    const moduleRef = await Test.createTestingModule({
      imports: [coreModule(url, options)],
    }).compile();
    const logger = new CapturingLogger();
    const app = moduleRef.createNestApplication({ logger });
    apps.push(app);
    return { app, logger };
  }

  async function startApp(url: string, options: Partial<SessionCacheOptions> = {}) {
    const ctx = await buildApp(url, options);
    await ctx.app.init();
    return ctx;
  }

  async function login(app: INestApplication, user: string): Promise<string> {
    const res = await request(app.getHttpServer()).post('/login').send({ user }).expect(200);
    return cookieFrom(res);
  }

  /** The start-up error of an app that must not start, with everything it logged. */
  async function startUpError(url: string, options: Partial<SessionCacheOptions> = {}) {
    const { app, logger } = await buildApp(url, options);
    const error: unknown = await app.init().then(
      () => new Error('app.init() resolved, but start-up should have failed'),
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(SessionCacheAuthError);
    const authError = error as SessionCacheAuthError;
    expect(authError.name).toBe('SessionCacheAuthError');
    expect(authError.server).toBe(memcached.address);
    expect(authError.message).toContain(memcached.address);
    expectNoPassword([authError.message, inspect(authError), ...logger.lines]);
    return { error: authError, logger };
  }

  beforeAll(async () => {
    // Without saslpasswd2 this throws SASL_INSTALL_HINT (how to install sasl2-bin): every test fails.
    memcached = await MemcachedProcess.start({ sasl: { username: USER, password: PASSWORD } });
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });
  afterAll(async () => {
    await memcached?.kill();
  });

  it('credentials from the URL (percent-decoded) log in; the session is in memcached', async () => {
    const url = urlWith(memcached.address, USER, PASSWORD);
    expect(url).toBe(memcached.urlWithCredentials);
    const { app, logger } = await startApp(url);
    const cookie = await login(app, 'ada');
    const me = await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
    expect(me.body).toMatchObject({ user: 'ada' });

    // A second app (credentials from the options this time) reads the same session from memcached.
    const other = await startApp(memcached.url, { username: USER, password: PASSWORD });
    const again = await request(other.app.getHttpServer()).get('/me').set('Cookie', cookie);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ user: 'ada' });
    expectNoPassword([...logger.lines, ...other.logger.lines]);
    expect([...logger.lines, ...other.logger.lines].join('\n')).not.toMatch(/SASL|not reachable/);
  });

  it('credentials from the options `username`/`password` (URL without credentials) log in', async () => {
    const { app } = await startApp(memcached.url, { username: USER, password: PASSWORD });
    const cookie = await login(app, 'grace');
    const me = await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
    expect(me.body).toMatchObject({ user: 'grace' });
  });

  it.each([
    ['in the URL', () => urlWith(memcached.address, USER, WRONG), {}],
    ['in the options', () => memcached.url, { username: USER, password: WRONG }],
  ])(
    'a wrong password %s fails start-up, naming server and user, never the password',
    async (_, url, options) => {
      const { error } = await startUpError(url(), options);
      expect(error.username).toBe(USER);
      expect(error.message).toBe(
        `Session memcached ${memcached.address} rejected the SASL login of user "alice". Check the ` +
          'password (percent-encoded in the URL, or the `password` option), that the user is in ' +
          "the server's sasldb for memcached's realm (saslpasswd2 -a memcached -u <memcached's " +
          'host name>), and that memcached runs with -S and allows the PLAIN mechanism (mech_list ' +
          'in its SASL configuration).',
      );
    },
  );

  it('an unknown user fails start-up the same way', async () => {
    const { error } = await startUpError(urlWith(memcached.address, 'mallory', PASSWORD));
    expect(error.username).toBe('mallory');
    expect(error.message).toContain('user "mallory"');
  });

  it('no credentials for a server that requires them fails start-up; MEMCACHIER_* env vars are not used', async () => {
    const saved = { ...process.env };
    // memjs itself would fall back to these; the session client must not.
    process.env.MEMCACHIER_USERNAME = process.env.MEMCACHE_USERNAME = USER;
    process.env.MEMCACHIER_PASSWORD = process.env.MEMCACHE_PASSWORD = PASSWORD;
    try {
      const { error } = await startUpError(memcached.url);
      expect(error.username).toBeUndefined();
      expect(error.message).toBe(
        `Session memcached ${memcached.address} requires SASL authentication (it runs with -S), ` +
          'but no credentials are configured. Put them in the URL (memcached://user:password@host, ' +
          'password percent-encoded) or set the `username` and `password` options.',
      );
    } finally {
      for (const name of ['USERNAME', 'PASSWORD']) {
        for (const prefix of ['MEMCACHIER_', 'MEMCACHE_']) {
          const key = prefix + name;
          if (saved[key] === undefined) delete process.env[key];
          else process.env[key] = saved[key];
        }
      }
    }
  });

  it('an unreachable server with credentials only warns: the app starts', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const { logger } = await startApp(urlWith(address, USER, PASSWORD), { timeout: 200 });
    expect(logger.lines.some((l) => l.includes(`${address} is not reachable at start-up`))).toBe(
      true,
    );
    expectNoPassword(logger.lines);
  });

  it('credentials against a memcached without -S: the app starts and warns that they are not checked', async () => {
    const open = await MemcachedProcess.start();
    try {
      const { app, logger } = await startApp(urlWith(open.address, USER, PASSWORD));
      const warning = logger.lines.find((l) => l.includes('does not check SASL logins'));
      expect(warning).toContain(`${open.address} does not check SASL logins (it runs without -S)`);
      expect(warning).toContain('user "alice"');
      const cookie = await login(app, 'ada');
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
      expectNoPassword(logger.lines);
    } finally {
      await Promise.all(apps.splice(0).map((app) => app.close()));
      await open.kill();
    }
  });

  it('at run time a refused login fails calls at once after the first, with one warning', async () => {
    const warnings: string[] = [];
    const wrong = new SessionCache([{ host: memcached.host, port: memcached.port }], {
      credentials: new MemcachedCredentials(USER, WRONG),
      retryDelay: 60_000,
      logger: { warn: (message) => warnings.push(message) },
    });
    try {
      const authErrors = async () => Number((await memcached.stats()).auth_errors);
      const before = await authErrors();
      await expect(wrong.get('k')).rejects.toBeInstanceOf(SessionCacheAuthError);
      for (let i = 0; i < 10; i++) {
        await expect(wrong.set('k', 'v', 60)).rejects.toBeInstanceOf(SessionCacheAuthError);
      }
      // Only the first call reached the server; the node is not marked down (it answered).
      expect(await authErrors()).toBe(before + 1);
      expect(wrong.nodes[0].up).toBe(true);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(`${memcached.address} rejected the SASL login of user "alice"`);
      expect(warnings[0]).toContain('Calls to it fail at once for 60000 ms');
      expectNoPassword(warnings);
      // Once the pause is over, one call asks the server again (still refused: no new warning).
      // (The node keeps time with the monotonic clock.)
      const now = performance.now();
      const clock = jest.spyOn(performance, 'now').mockReturnValue(now + 60_001);
      try {
        await expect(wrong.get('k')).rejects.toBeInstanceOf(SessionCacheAuthError);
        await expect(wrong.get('k')).rejects.toBeInstanceOf(SessionCacheAuthError);
      } finally {
        clock.mockRestore();
      }
      expect(await authErrors()).toBe(before + 2);
      expect(warnings).toHaveLength(1);
      // Health probes still ask the server, and report it as down with the reason.
      const health = await wrong.health();
      expect(health.healthy).toBe(false);
      expect(health.nodes[0]).toMatchObject({ status: 'down' });
      expect(health.nodes[0].error).toContain('rejected the SASL login');
    } finally {
      await wrong.close();
    }
  });
});
