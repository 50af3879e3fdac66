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
import { settleEach, type SessionCache } from './memcached/session-cache.client';
import {
  getSessionCacheOptionsToken,
  getSessionCacheToken,
  SESSION_CACHE_NAME,
} from './session-cache.constants';
import {
  SessionCacheAuthError,
  SessionCacheConfigError,
  SessionCacheTlsError,
} from './session-cache.errors';
import {
  createAsyncOptionsProviders,
  createOptionsProvider,
  createSessionCacheProviders,
  getSessionStoreToken,
  logger,
} from './session-cache.providers';

/**
 * Owns the session memcached client of one connection: builds it, checks at start-up that it can be
 * reached (a warning, not a failure: sessions work as soon as memcached answers), that every
 * server that answers accepts our SASL login (a {@link SessionCacheAuthError} that fails start-up:
 * wrong credentials do not fix themselves) and that TLS works with it (a {@link SessionCacheTlsError}
 * that fails start-up: untrusted or misnamed certificates, a refused client certificate, TLS on one
 * side only), and closes it on application shutdown. Not exported from the package; use
 * {@link SessionCacheModule}.
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
    const results = await settleEach(client.nodes, (node) => node.stats());
    // A plaintext node whose server reset the connection may be a TLS port: ask it (in parallel).
    const mismatches = await Promise.all(
      results.map((r) => (r.ok ? undefined : r.node.tlsMismatch(r.error))),
    );
    const fatal: (SessionCacheAuthError | SessionCacheTlsError)[] = [];
    if (client.tls && !client.tls.verifies) {
      logger.warn(
        'TLS to the session memcached does not verify its certificates (tls.rejectUnauthorized: ' +
          'false): anyone on the network path can pose as the server and read the sessions. ' +
          'Give its CA in tls.ca instead.',
      );
    }
    for (const [i, r] of results.entries()) {
      if (
        !r.ok &&
        (r.error instanceof SessionCacheAuthError || r.error instanceof SessionCacheTlsError)
      ) {
        fatal.push(r.error);
      } else if (!r.ok && mismatches[i]) {
        fatal.push(mismatches[i]);
      } else if (!r.ok) {
        logger.warn(
          `Session memcached ${r.node.name} is not reachable at start-up (${errorMessage(r.error)}). ` +
            'The app starts anyway; requests that need a session are answered 503 until it is.',
        );
      } else if (r.node.username !== undefined && r.value.auth_cmds === '0') {
        // We logged in before this `stats`, so a server that checks SASL counts at least one.
        logger.warn(
          `Session memcached ${r.node.name} does not check SASL logins (it runs without -S): the ` +
            `credentials of user ${JSON.stringify(r.node.username)} are ignored there and anyone ` +
            'who reaches its port can read and change sessions. Start it with -S and a sasldb, ' +
            'or firewall it.',
        );
      }
    }
    if (fatal.length > 0) {
      for (const err of fatal.slice(1)) logger.error(err.message);
      await client.close();
      throw fatal[0];
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.client.close();
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
