import {
  DynamicModule,
  Inject,
  Module,
  OnApplicationBootstrap,
  OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type {
  SessionCacheModuleAsyncOptions,
  SessionCacheModuleOptions,
} from './interfaces/session-cache-options.interface';
import type { SessionCache } from './memcached/session-cache.client';
import {
  getSessionCacheOptionsToken,
  getSessionCacheToken,
  SESSION_CACHE_NAME,
} from './session-cache.constants';
import { SessionCacheConfigError } from './session-cache.errors';
import {
  createAsyncOptionsProviders,
  createOptionsProvider,
  createSessionCacheProviders,
  getSessionStoreToken,
  logger,
} from './session-cache.providers';

/**
 * Owns the session memcached client of one connection: builds it, checks at start-up that it can be
 * reached (a warning, not a failure: sessions work as soon as memcached answers) and closes it on
 * application shutdown. Not exported from the package; use {@link SessionCacheModule}.
 */
@Module({})
export class SessionCacheCoreModule
  implements OnModuleInit, OnApplicationBootstrap, OnApplicationShutdown
{
  constructor(
    @Inject(SESSION_CACHE_NAME) private readonly name: string,
    private readonly moduleRef: ModuleRef,
  ) {}

  static forRoot(options: SessionCacheModuleOptions, name: string): DynamicModule {
    return SessionCacheCoreModule.build(name, [createOptionsProvider(options, name)], []);
  }

  static forRootAsync(options: SessionCacheModuleAsyncOptions, name: string): DynamicModule {
    return SessionCacheCoreModule.build(
      name,
      createAsyncOptionsProviders(options, name),
      options.imports ?? [],
    );
  }

  private static build(
    name: string,
    optionsProviders: DynamicModule['providers'] & unknown[],
    imports: NonNullable<DynamicModule['imports']>,
  ): DynamicModule {
    const exported = [
      getSessionCacheOptionsToken(name),
      getSessionCacheToken(name),
      getSessionStoreToken(name),
    ];
    return {
      module: SessionCacheCoreModule,
      imports,
      providers: [
        { provide: SESSION_CACHE_NAME, useValue: name },
        ...optionsProviders,
        ...createSessionCacheProviders(name),
      ],
      exports: exported,
    };
  }

  private get client(): SessionCache {
    return this.moduleRef.get<SessionCache>(getSessionCacheToken(this.name));
  }

  onModuleInit(): void {
    const clients = this.moduleRef.get(getSessionCacheToken(this.name), {
      strict: false,
      each: true,
    });
    if (clients.length > 1) {
      throw new SessionCacheConfigError(
        `SessionCacheModule is registered ${clients.length} times for the connection ` +
          `"${this.name}". Register it once (it is global by default), or give each ` +
          'registration its own `name` and inject it with @InjectSessionCache(name).',
      );
    }
  }

  async onApplicationBootstrap(): Promise<void> {
    const client = this.client;
    const stats = await client.stats();
    for (const [server, values] of Object.entries(stats)) {
      if (values.error) {
        logger.warn(
          `Session memcached ${server} is not reachable at start-up (${values.error}). The app ` +
            'starts anyway; requests that need a session are answered 503 until it is.',
        );
      }
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.client.close();
  }
}
