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

async function boot(module: DynamicModule): Promise<INestApplication> {
  const ref = await Test.createTestingModule({ imports: [module] }).compile();
  const app = ref.createNestApplication({ logger: false });
  await app.init();
  return app;
}

/** Boots `module`, checks the store prefix and that a session written by one request is read by the next. */
async function expectRoundTrip(module: DynamicModule, prefix: string): Promise<void> {
  const app = await boot(module);
  try {
    expect(app.get(SessionStore).prefix).toBe(prefix);
    const res = await request(app.getHttpServer()).post('/write').expect(201);
    await request(app.getHttpServer())
      .get('/read')
      .set('Cookie', cookieFrom(res))
      .expect(200, { hasSession: true, n: 1 });
  } finally {
    await app.close();
  }
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
        /onUnavailable must be 'fail' or 'proceed'/,
      ],
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
      await expectRoundTrip(
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
    });

    it('takes options from an existing provider (useExisting)', async () => {
      @Module({ providers: [OptionsFactory], exports: [OptionsFactory] })
      class OptionsModule {}
      await expectRoundTrip(
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
      await expectRoundTrip(
        appModule(SessionCacheModule.forRootAsync({ useClass: OptionsFactory })),
        'cls:',
      );
    });
  });

  describe('middleware placement', () => {
    it('skips excluded routes and covers only forRoutes', async () => {
      const app = await boot(
        appModule(
          SessionCacheModule.forRoot(memcached.url, {
            session: { secret: 's' },
            exclude: ['health'],
          }),
        ),
      );
      try {
        await request(app.getHttpServer()).get('/health').expect(200, { hasSession: false });
        await request(app.getHttpServer()).get('/read').expect(200, { hasSession: true, n: null });
      } finally {
        await app.close();
      }
      const only = await boot(
        appModule(
          SessionCacheModule.forRoot(memcached.url, {
            session: { secret: 's' },
            forRoutes: ['read'],
          }),
        ),
      );
      try {
        await request(only.getHttpServer()).get('/health').expect(200, { hasSession: false });
        await request(only.getHttpServer()).get('/read').expect(200, { hasSession: true, n: null });
      } finally {
        await only.close();
      }
    });

    it('installMiddleware: false leaves the wiring to the app, with the injected store', async () => {
      const compile = () =>
        Test.createTestingModule({
          imports: [
            appModule(
              SessionCacheModule.forRoot(memcached.url, {
                session: { secret: 's' },
                installMiddleware: false,
              }),
            ),
          ],
        }).compile();
      const plainRef = await compile();
      const plain = plainRef.createNestApplication({ logger: false });
      try {
        await plain.init();
        await request(plain.getHttpServer())
          .get('/read')
          .expect(200, { hasSession: false, n: null });
      } finally {
        await plain.close();
      }
      const ref = await compile();
      const wired = ref.createNestApplication({ logger: false });
      wired.use(
        session({
          store: ref.get(SessionStore),
          secret: 's',
          resave: false,
          saveUninitialized: false,
        }),
      );
      try {
        await wired.init();
        const res = await request(wired.getHttpServer()).post('/write').expect(201);
        await request(wired.getHttpServer())
          .get('/read')
          .set('Cookie', cookieFrom(res))
          .expect(200, { hasSession: true, n: 1 });
      } finally {
        await wired.close();
      }
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
      const ref = await Test.createTestingModule({
        imports: [
          SessionCacheModule.forRoot(memcached.url, { session: { secret: 's' } }),
          SessionCacheModule.forRoot(other.url, {
            name: 'admin',
            session: { secret: 's' },
            installMiddleware: false,
          }),
        ],
        providers: [TwoCaches],
      }).compile();
      const app = ref.createNestApplication({ logger: false });
      try {
        await app.init();
        const two = app.get(TwoCaches);
        expect(two.main.servers).toEqual([memcached.address]);
        expect(two.admin.servers).toEqual([other.address]);
        expect(two.adminStore.client).toBe(two.admin);
        expect(app.get(getSessionCacheToken('admin'))).toBe(two.admin);
      } finally {
        await app.close();
        await other.kill();
      }
    });
  });

  describe('createSessionStore (plain Express)', () => {
    it('builds a store that owns and closes its client', async () => {
      const store = createSessionStore(memcached.url, { prefix: 'plain:', ttl: 60 });
      expect(store.prefix).toBe('plain:');
      await store.client.set('plain:probe', 'x', 60);
      expect(String(await memcached.getRaw('plain:probe'))).toBe('x');
      await store.close();
      expect(store.client.closed).toBe(true);
    });
  });
});
