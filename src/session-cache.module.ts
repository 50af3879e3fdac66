import { DynamicModule, Inject, MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { APP_FILTER, HttpAdapterHost } from '@nestjs/core';
import type {
  SessionCacheModuleAsyncOptions,
  SessionCacheOptions,
} from './interfaces/session-cache-options.interface';
import { DEFAULT_SESSION_CACHE_NAME, getSessionCacheOptionsToken } from './session-cache.constants';
import { SessionCacheCoreModule } from './session-cache-core.module';
import { SESSION_HTTP_CONTEXT } from './session-cache.http';
import { getSessionStoreToken, ResolvedSessionCacheOptions } from './session-cache.providers';
import { createSessionHandler, SessionMiddleware } from './session.middleware';
import { installSaveBeforeResponse } from './save-before-response';
import { installFastifySessions } from './fastify/fastify-sessions';
import type { SessionHttpContext } from './session.middleware';
import { SessionCacheExceptionFilter } from './session-cache.filter';
import type { SessionData } from 'express-session';
import type { SessionStore } from './store/session.store';

/**
 * Sessions on their own memcached, apart from the application's general cache.
 *
 * ```ts
 * SessionCacheModule.forRoot('memcached://10.0.0.5:11212', { session: { secret } })
 * ```
 * registers the session memcached client (inject it with `@InjectSessionCache()`), a session
 * store on it (`SessionStore`), and the session layer for all routes: express-session on Nest's
 * Express platform, @fastify/session (with @fastify/cookie) on its Fastify platform.
 */
@Module({})
export class SessionCacheModule implements NestModule {
  constructor(
    @Inject(SESSION_HTTP_CONTEXT) private readonly context: SessionHttpContext,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  /** Connects to the session memcached at `url` (see README for the URL format and options). */
  static forRoot(url: string, options: SessionCacheOptions): DynamicModule {
    const { name = DEFAULT_SESSION_CACHE_NAME, isGlobal = true, ...rest } = options ?? {};
    return SessionCacheModule.build(
      name,
      isGlobal,
      SessionCacheCoreModule.forRoot({ ...(rest as SessionCacheOptions), url }, name),
    );
  }

  /** Like `forRoot`, with `{ url, ...options }` from a factory, class or existing provider. */
  static forRootAsync(options: SessionCacheModuleAsyncOptions): DynamicModule {
    const name = options.name ?? DEFAULT_SESSION_CACHE_NAME;
    return SessionCacheModule.build(
      name,
      options.isGlobal ?? true,
      SessionCacheCoreModule.forRootAsync(options, name),
    );
  }

  private static build(name: string, isGlobal: boolean, core: DynamicModule): DynamicModule {
    return {
      module: SessionCacheModule,
      global: isGlobal,
      imports: [core],
      providers: [
        {
          provide: SESSION_HTTP_CONTEXT,
          useFactory: (store: SessionStore, options: ResolvedSessionCacheOptions) => ({
            store,
            options,
          }),
          inject: [getSessionStoreToken(name), getSessionCacheOptionsToken(name)],
        },
        { provide: APP_FILTER, useClass: SessionCacheExceptionFilter },
      ],
      exports: [core],
    };
  }

  async configure(consumer: MiddlewareConsumer): Promise<void> {
    const { options, store } = this.context;
    if (!options.installMiddleware) return;
    const adapter = this.adapterHost.httpAdapter;
    if (adapter.getType() === 'fastify') {
      // @fastify/session on the same store, registered on the Fastify instance before Nest adds
      // the routes (Nest awaits configure() before it registers them).
      await installFastifySessions(adapter, this.context);
      return;
    }
    if (options.saveBeforeResponse) {
      installSaveBeforeResponse(adapter, {
        store,
        client: store.client,
        changed: (session) => {
          const s = session as unknown as SessionData & { touch?: () => void };
          if (!store.sessionChanged(s)) return false;
          // express-session touches the cookie (expires = now + maxAge) before its own save: do
          // the same, so the saved session carries the cookie the response sets and its TTL
          // counts from now; then serialize once more, for the save to write.
          s.touch?.();
          store.sessionChanged(s);
          return true;
        },
      });
    }
    if (
      !options.forRoutes?.length &&
      !options.exclude?.length &&
      options.onUnavailable !== 'fail'
    ) {
      // Every route, no request answered by the middleware itself: mounted on the platform
      // directly, as `app.use(session(…))` would be, without Nest's per-request plumbing.
      adapter.use(createSessionHandler(this.context));
      return;
    }
    const forRoutes = options.forRoutes?.length ? options.forRoutes : ['*'];
    const proxy = consumer.apply(SessionMiddleware);
    if (options.exclude?.length) proxy.exclude(...options.exclude);
    proxy.forRoutes(...forRoutes);
  }
}
