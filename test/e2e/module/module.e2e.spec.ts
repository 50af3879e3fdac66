import { Controller, Get, Injectable, Module, Post, Req } from '@nestjs/common';
import type { DynamicModule, INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Request } from 'express';
import session from 'express-session';
import request from 'supertest';
import {
  createSessionStore,
  getSessionCacheToken,
  InjectSessionCache,
  InjectSessionStore,
  SessionCache,
  SessionCacheConfigError,
  SessionCacheModule,
  SessionCacheUrlError,
  SessionStore,
} from '../../../src';
import type { SessionCacheModuleOptions, SessionCacheOptionsFactory } from '../../../src';
import { cookieFrom } from '../../support/http';
import { MemcachedProcess } from '../../support/memcached.mjs';
import { SECRET } from '../../support/platform';
import { FastifyAdapter } from '@nestjs/platform-fastify';

@Controller()
class PingController {
  @Post('write')
  write(@Req() req: Request) {
    (req.session as unknown as { n: number }).n = 1;
    return { ok: true };
  }
  @Get('read')
  read(@Req() req: Request) {
    return { hasSession: !!req.session, n: (req.session as unknown as { n?: number })?.n ?? null };
  }
  @Get('health')
  health(@Req() req: Request) {
    return { hasSession: !!req.session };
  }
}

function appModule(...imports: DynamicModule['imports'] & unknown[]): DynamicModule {
  return { module: class ScenarioModule {}, imports, controllers: [PingController] };
}

/**
 * Boots `module` (after `beforeInit`, e.g. to add middleware), runs `test` and closes the app
 * afterwards, whatever happens.
 */
async function withApp(
  module: DynamicModule,
  test: (app: INestApplication) => Promise<void>,
  beforeInit?: (app: INestApplication) => void,
): Promise<void> {
  const ref = await Test.createTestingModule({ imports: [module] }).compile();
  const app = ref.createNestApplication({ logger: false });
  try {
    beforeInit?.(app);
    await app.init();
    await test(app);
  } finally {
    await app.close();
  }
}

/** Checks that a session written by one request is read by the next. */
async function expectRoundTrip(app: INestApplication): Promise<void> {
  const res = await request(app.getHttpServer()).post('/write').expect(201);
  await request(app.getHttpServer())
    .get('/read')
    .set('Cookie', cookieFrom(res))
    .expect(200, { hasSession: true, n: 1 });
}

/** Boots `module`, checks the store prefix and the session round trip. */
function expectPrefixAndRoundTrip(module: DynamicModule, prefix: string): Promise<void> {
  return withApp(module, async (app) => {
    expect(app.get(SessionStore).prefix).toBe(prefix);
    await expectRoundTrip(app);
  });
}

describe('SessionCacheModule registration', () => {
  let memcached: MemcachedProcess;
  beforeAll(async () => {
    memcached = await MemcachedProcess.start();
  });
  afterAll(() => memcached.kill());

  describe('bad configuration fails at start-up with a clear error', () => {
    const secret = { session: { secret: 'top-secret-value' } };

    it.each([
      ['redis://h:6379', /scheme is "redis"/],
      ['memcached://h:port', /port "port" of server "h:port"/],
      ['memcached://h?replica=2', /unknown option "replica"/],
      ['memcached://,h', /server 1 of the host list is empty/],
      ['memcached://admin:pa55w0rd@h:99999', /port "99999"/],
    ])('forRoot(%j) throws SessionCacheUrlError', (url, message) => {
      let error: Error | undefined;
      try {
        SessionCacheModule.forRoot(url, secret);
      } catch (err) {
        error = err as Error;
      }
      expect(error).toBeInstanceOf(SessionCacheUrlError);
      expect(error!.message).toMatch(message);
      expect(error!.message).not.toContain('pa55w0rd');
    });

    it('forRootAsync with a bad URL fails compile() with SessionCacheUrlError', async () => {
      const module = appModule(
        SessionCacheModule.forRootAsync({
          useFactory: () => ({ url: 'memcached://u:hunter2@h:x', session: { secret: 's' } }),
        }),
      );
      const err = await Test.createTestingModule({ imports: [module] })
        .compile()
        .catch((e) => e);
      expect(err).toBeInstanceOf(SessionCacheUrlError);
      expect(err.message).not.toContain('hunter2');
    });

    it.each([
      [{ session: {} }, /session\.secret is required/],
      [{ session: { secret: '' } }, /session\.secret is required/],
      [{ session: { secret: [] } }, /session\.secret is required/],
      [{}, /options\.session is required/],
      [{ session: { secret: 's', store: {} } }, /session\.store must not be set/],
      [
        { session: { secret: 's' }, onUnavailable: 'ignore' },
        /onUnavailable must be 'lazy', 'fail' or 'proceed'/,
      ],
      [{ session: { secret: 's' }, encryptionKeys: [] }, /encryptionKeys must be a non-empty/],
      [{ session: { secret: 's' }, encryptionKeys: ['c2hvcnQ='] }, /encryptionKeys\[0\]/],
      [{ session: { secret: 's' }, username: 'app' }, /SASL needs both/],
      [{ session: { secret: 's' }, userId: 'id' }, /userId must be a function/],
    ])('rejects options %j', (options, message) => {
      expect(() => SessionCacheModule.forRoot(memcached.url, options as never)).toThrow(
        SessionCacheConfigError,
      );
      expect(() => SessionCacheModule.forRoot(memcached.url, options as never)).toThrow(message);
    });

    it('forRootAsync without a factory, class or existing provider says what to pass', () => {
      expect(() => SessionCacheModule.forRootAsync({})).toThrow(
        /needs one of useFactory, useClass or useExisting/,
      );
    });

    it('a second registration of the same connection is an error, not an override', async () => {
      const module = appModule(
        SessionCacheModule.forRoot(memcached.url, { session: { secret: 'a' } }),
        SessionCacheModule.forRoot(memcached.url, { session: { secret: 'b' } }),
      );
      const ref = await Test.createTestingModule({ imports: [module] }).compile();
      const app = ref.createNestApplication({ logger: false });
      await expect(app.init()).rejects.toThrow(/registered 2 times for the connection "default"/);
      await app.close();
    });
  });

  describe('forRootAsync', () => {
    @Injectable()
    class Config {
      readonly url = memcached.url;
    }
    @Module({ providers: [Config], exports: [Config] })
    class ConfigModule {}

    @Injectable()
    class OptionsFactory implements SessionCacheOptionsFactory {
      createSessionCacheOptions(): SessionCacheModuleOptions {
        return { url: memcached.url, session: { secret: 'from-class' }, prefix: 'cls:' };
      }
    }

    it('takes { url, ...options } from a factory with injected dependencies', async () => {
      await expectPrefixAndRoundTrip(
        appModule(
          SessionCacheModule.forRootAsync({
            imports: [ConfigModule],
            inject: [Config],
            useFactory: async (config: Config) => ({
              url: config.url,
              session: { secret: 'from-factory' },
              prefix: 'async:',
            }),
          }),
        ),
        'async:',
      );
      expect(Number((await memcached.stats()).curr_items)).toBeGreaterThan(0);
    });

    it('takes options from an existing provider (useExisting)', async () => {
      @Module({ providers: [OptionsFactory], exports: [OptionsFactory] })
      class OptionsModule {}
      await expectPrefixAndRoundTrip(
        appModule(
          SessionCacheModule.forRootAsync({
            imports: [OptionsModule],
            useExisting: OptionsFactory,
          }),
        ),
        'cls:',
      );
    });

    it('takes options from a useClass factory', async () => {
      await expectPrefixAndRoundTrip(
        appModule(SessionCacheModule.forRootAsync({ useClass: OptionsFactory })),
        'cls:',
      );
    });
  });

  describe('middleware placement', () => {
    it.each([
      ['exclude', { exclude: ['health'] }],
      ['forRoutes', { forRoutes: ['read'] }],
    ])('covers /read but not /health with %s', async (_option, placement) => {
      const module = appModule(
        SessionCacheModule.forRoot(memcached.url, { session: { secret: 's' }, ...placement }),
      );
      await withApp(module, async (app) => {
        await request(app.getHttpServer()).get('/health').expect(200, { hasSession: false });
        await request(app.getHttpServer()).get('/read').expect(200, { hasSession: true, n: null });
      });
    });

    it('installMiddleware: false leaves the wiring to the app, with the injected store', async () => {
      const module = () =>
        appModule(
          SessionCacheModule.forRoot(memcached.url, {
            session: { secret: 's' },
            installMiddleware: false,
          }),
        );
      await withApp(module(), async (plain) => {
        await request(plain.getHttpServer())
          .get('/read')
          .expect(200, { hasSession: false, n: null });
      });
      await withApp(module(), expectRoundTrip, (wired) =>
        wired.use(
          session({
            store: wired.get(SessionStore),
            secret: 's',
            resave: false,
            saveUninitialized: false,
          }),
        ),
      );
    });
  });

  describe('named connections', () => {
    @Injectable()
    class TwoCaches {
      constructor(
        @InjectSessionCache() readonly main: SessionCache,
        @InjectSessionCache('admin') readonly admin: SessionCache,
        @InjectSessionStore('admin') readonly adminStore: SessionStore,
      ) {}
    }

    it('registers a second connection under its own tokens', async () => {
      const other = await MemcachedProcess.start();
      const module: DynamicModule = {
        module: class TwoConnectionsModule {},
        imports: [
          SessionCacheModule.forRoot(memcached.url, { session: { secret: 's' } }),
          SessionCacheModule.forRoot(other.url, {
            name: 'admin',
            session: { secret: 's' },
            installMiddleware: false,
          }),
        ],
        providers: [TwoCaches],
      };
      try {
        await withApp(module, async (app) => {
          const two = app.get(TwoCaches);
          expect(two.main.servers).toEqual([memcached.address]);
          expect(two.admin.servers).toEqual([other.address]);
          expect(two.adminStore.client).toBe(two.admin);
          expect(app.get(getSessionCacheToken('admin'))).toBe(two.admin);
        });
      } finally {
        await other.kill();
      }
    });
  });

  describe('on Fastify', () => {
    /** Boots `module` on Nest's Fastify platform, runs `test`, closes the app whatever happens. */
    async function withFastify(
      module: DynamicModule,
      test: (app: INestApplication) => Promise<void>,
    ): Promise<void> {
      const ref = await Test.createTestingModule({ imports: [module] }).compile();
      const app = ref.createNestApplication(new FastifyAdapter(), { logger: false });
      try {
        await app.init();
        await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
        await test(app);
      } finally {
        await app.close();
      }
    }

    it('forRoot and forRootAsync wire @fastify/session to the store', async () => {
      await withFastify(
        appModule(SessionCacheModule.forRoot(memcached.url, { session: { secret: SECRET } })),
        expectRoundTrip,
      );
      await withFastify(
        appModule(
          SessionCacheModule.forRootAsync({
            useFactory: () => ({ url: memcached.url, session: { secret: SECRET }, prefix: 'fy:' }),
          }),
        ),
        async (app) => {
          expect(app.get(SessionStore).prefix).toBe('fy:');
          await expectRoundTrip(app);
        },
      );
    });

    it.each([
      ['a short secret', { secret: 'too-short' }, /needs at least 32 characters.*has 9/],
      [
        'a short secret in the array',
        { secret: [SECRET, 'old-short-one'] },
        /at least 32 characters.*1 of its 2 secrets/,
      ],
      ['a cookie function', { secret: SECRET, cookie: () => ({}) }, /cannot be a function/],
      ['resave: true', { secret: SECRET, resave: true }, /resave: true is not supported/],
    ])('refuses what @fastify/session cannot honour: %s', async (_what, session, message) => {
      const module = appModule(SessionCacheModule.forRoot(memcached.url, { session } as never));
      const err = await withFastify(module, async () => undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SessionCacheConfigError);
      expect((err as Error).message).toMatch(message);
    });

    it('refuses forRoutes and exclude, which @fastify/session cannot honour', async () => {
      for (const placement of [{ forRoutes: ['read'] }, { exclude: ['health'] }]) {
        const module = appModule(
          SessionCacheModule.forRoot(memcached.url, { session: { secret: SECRET }, ...placement }),
        );
        const err = await withFastify(module, async () => undefined).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(SessionCacheConfigError);
        expect((err as Error).message).toMatch(
          /forRoutes and exclude are not supported on Fastify/,
        );
      }
    });

    it('one connection installs the sessions; a second one that tries is a clear error', async () => {
      const module = appModule(
        SessionCacheModule.forRoot(memcached.url, { session: { secret: SECRET } }),
        SessionCacheModule.forRoot(memcached.url, { name: 'other', session: { secret: SECRET } }),
      );
      const err = await withFastify(module, async () => undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SessionCacheConfigError);
      expect((err as Error).message).toMatch(
        /Give the other connections `installMiddleware: false`/,
      );
    });

    it("routes outside the cookie's path have no session (@fastify/session's rule), and no error", async () => {
      const module = appModule(
        SessionCacheModule.forRoot(memcached.url, {
          session: { secret: SECRET, cookie: { path: '/read' } },
        }),
      );
      await withFastify(module, async (app) => {
        // POST /write sets a field on the plain object @fastify/session leaves outside the path.
        const res = await request(app.getHttpServer()).post('/write').expect(201);
        expect(res.headers['set-cookie']).toBeUndefined();
      });
    });

    it('installMiddleware: false registers nothing on the Fastify instance', async () => {
      const module = appModule(
        SessionCacheModule.forRoot(memcached.url, {
          session: { secret: SECRET },
          installMiddleware: false,
        }),
      );
      await withFastify(module, async (app) => {
        const fastify = app.getHttpAdapter().getInstance() as { hasPlugin(name: string): boolean };
        expect(fastify.hasPlugin('@fastify/session')).toBe(false);
        await request(app.getHttpServer()).get('/read').expect(200, { hasSession: false, n: null });
      });
    });
  });

  describe('createSessionStore (plain Express)', () => {
    it('builds a store that owns and closes its client', async () => {
      const store = createSessionStore(memcached.url, {
        prefix: 'plain:',
        ttl: 60,
        keySecret: 'k',
      });
      expect(store.prefix).toBe('plain:');
      await store.client.set('plain:probe', 'x', 60);
      expect(String(await memcached.getRaw('plain:probe'))).toBe('x');
      await store.close();
      expect(store.client.closed).toBe(true);
    });
  });
});
