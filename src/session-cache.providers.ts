import { InjectionToken, Logger, Provider } from '@nestjs/common';
import type {
  SessionCacheModuleAsyncOptions,
  SessionCacheModuleOptions,
  SessionCacheOptionsFactory,
  SessionCacheSessionOptions,
} from './interfaces/session-cache-options.interface';
import { SessionCache } from './memcached/session-cache.client';
import { MemcachedTls } from './memcached/tls';
import { MemcachedCredentials, parseSessionCacheUrl, ParsedSessionCacheUrl } from './memcached/url';
import {
  DEFAULT_SESSION_CACHE_NAME,
  getSessionCacheOptionsToken,
  getSessionCacheToken,
} from './session-cache.constants';
import { SessionCacheConfigError } from './session-cache.errors';
import { SessionCipher } from './store/session-cipher';
import { SessionStore } from './store/session.store';

/** Module options after validation, with defaults applied and the URL parsed. */
export interface ResolvedSessionCacheOptions extends Omit<
  SessionCacheModuleOptions,
  'url' | 'session' | 'tls'
> {
  readonly name: string;
  readonly url: ParsedSessionCacheUrl;
  /** TLS settings (from `memcacheds://` or the `tls` option), or undefined for plaintext. */
  readonly tls: MemcachedTls | undefined;
  readonly session: SessionCacheSessionOptions;
  readonly onUnavailable: 'lazy' | 'fail' | 'proceed';
  readonly installMiddleware: boolean;
  readonly saveBeforeResponse: boolean;
}

/** Token of the {@link SessionStore} of connection `name`; the default one is the class itself. */
export function getSessionStoreToken(name?: string): InjectionToken {
  return name === undefined || name === DEFAULT_SESSION_CACHE_NAME
    ? SessionStore
    : `nestjs-session-cache:SessionStore:${name}`;
}

export const logger = new Logger('SessionCacheModule');

function checkSecret(secret: unknown): void {
  const ok = (s: unknown) => typeof s === 'string' && s.length > 0;
  if (Array.isArray(secret) ? secret.length > 0 && secret.every(ok) : ok(secret)) return;
  throw new SessionCacheConfigError(
    'options.session.secret is required: a non-empty string, or a non-empty array of them ' +
      '(the first signs cookies, all verify). Load it from the environment, e.g. ' +
      '{ session: { secret: process.env.SESSION_SECRET } }.',
  );
}

type CookieSetting = SessionCacheSessionOptions['cookie'];
const COOKIE_DEFAULTS = { httpOnly: true, sameSite: 'lax' } as const;

/** httpOnly and SameSite=Lax unless the app says otherwise (also for a per-request cookie function). */
function withCookieDefaults(cookie: CookieSetting): CookieSetting {
  if (typeof cookie === 'function') return (req) => ({ ...COOKIE_DEFAULTS, ...cookie(req) });
  return { ...COOKIE_DEFAULTS, ...cookie };
}

/**
 * SASL credentials: `username`/`password` from the options win over the URL's. Throws
 * {@link SessionCacheConfigError} when only one of them is given.
 */
export function resolveCredentials(
  options: { username?: string; password?: string },
  fromUrl: MemcachedCredentials | undefined,
): MemcachedCredentials | undefined {
  const { username, password } = options;
  if (username === undefined && password === undefined) return fromUrl;
  if (
    typeof username !== 'string' ||
    username === '' ||
    typeof password !== 'string' ||
    password === ''
  ) {
    throw new SessionCacheConfigError(
      'SASL needs both `username` and `password` as non-empty strings' +
        (typeof username === 'string' && username ? ` (user "${username}" has no password).` : '.'),
    );
  }
  return new MemcachedCredentials(username, password);
}

/** The cookie's maxAge in whole seconds, when it is a fixed number at least as long as 1 s. */
function cookieSeconds(cookie: CookieSetting): number | undefined {
  const maxAge = typeof cookie === 'object' ? cookie?.maxAge : undefined;
  return typeof maxAge === 'number' && maxAge >= 1000 ? Math.ceil(maxAge / 1000) : undefined;
}

/** Validates options and applies the defaults. Throws {@link SessionCacheConfigError}. */
export function resolveSessionCacheOptions(
  options: SessionCacheModuleOptions,
  name: string = DEFAULT_SESSION_CACHE_NAME,
): ResolvedSessionCacheOptions {
  if (!options || typeof options !== 'object') {
    throw new SessionCacheConfigError(
      'SessionCacheModule needs options with at least { url, session: { secret } }.',
    );
  }
  const { url, session, ...rest } = options;
  if (!session || typeof session !== 'object') {
    throw new SessionCacheConfigError(
      'options.session is required: express-session options with at least a `secret`.',
    );
  }
  checkSecret(session.secret);
  if ((session as { store?: unknown }).store !== undefined) {
    throw new SessionCacheConfigError(
      'options.session.store must not be set: SessionCacheModule provides the store. Use ' +
        '`installMiddleware: false` to wire express-session yourself with the injected SessionStore.',
    );
  }
  if (
    rest.onUnavailable !== undefined &&
    !['lazy', 'fail', 'proceed'].includes(rest.onUnavailable)
  ) {
    throw new SessionCacheConfigError(
      `onUnavailable must be 'lazy', 'fail' or 'proceed', got ${JSON.stringify(rest.onUnavailable)}.`,
    );
  }
  const parsed = parseSessionCacheUrl(url);
  // Fail at definition time, before anything connects: broken keys, half credentials, unreadable
  // TLS certificates.
  if (rest.encryptionKeys !== undefined) new SessionCipher(rest.encryptionKeys);
  resolveCredentials(rest, parsed.credentials);
  const tls = MemcachedTls.resolve(parsed.tls, rest.tls);
  if (rest.userId !== undefined && typeof rest.userId !== 'function') {
    throw new SessionCacheConfigError(
      'userId must be a function that returns the user id of a session, e.g. (s) => s.userId.',
    );
  }
  return {
    ...rest,
    name,
    url: parsed,
    tls,
    timeout: rest.timeout ?? parsed.options.timeout,
    keepAlive: rest.keepAlive ?? parsed.options.keepAlive,
    replicas: rest.replicas ?? parsed.options.replicas,
    retryDelay: rest.retryDelay ?? parsed.options.retryDelay,
    tombstoneTtl: rest.tombstoneTtl ?? cookieSeconds(session.cookie),
    // The oldest secret: adding a new one in front (express-session's rotation) keeps every key.
    keySecret:
      rest.keySecret ??
      (Array.isArray(session.secret) ? session.secret[session.secret.length - 1] : session.secret),
    onUnavailable: rest.onUnavailable ?? 'lazy',
    installMiddleware: rest.installMiddleware ?? true,
    saveBeforeResponse: rest.saveBeforeResponse ?? true,
    session: {
      resave: false,
      saveUninitialized: false,
      ...session,
      cookie: withCookieDefaults(session.cookie),
    },
  };
}

/** The options provider of `forRoot`: validated while the module is defined. */
export function createOptionsProvider(options: SessionCacheModuleOptions, name: string): Provider {
  return {
    provide: getSessionCacheOptionsToken(name),
    useValue: resolveSessionCacheOptions(options, name),
  };
}

/** The options provider of `forRootAsync`. */
export function createAsyncOptionsProviders(
  options: SessionCacheModuleAsyncOptions,
  name: string,
): Provider[] {
  const provide = getSessionCacheOptionsToken(name);
  if (options.useFactory) {
    const factory = options.useFactory;
    return [
      {
        provide,
        useFactory: async (...args: unknown[]) =>
          resolveSessionCacheOptions(await factory(...args), name),
        inject: options.inject ?? [],
      },
    ];
  }
  const factoryClass = options.useClass ?? options.useExisting;
  if (!factoryClass) {
    throw new SessionCacheConfigError(
      'SessionCacheModule.forRootAsync() needs one of useFactory, useClass or useExisting, ' +
        'returning { url, session: { secret }, ... }.',
    );
  }
  const providers: Provider[] = [
    {
      provide,
      useFactory: async (factory: SessionCacheOptionsFactory) =>
        resolveSessionCacheOptions(await factory.createSessionCacheOptions(), name),
      inject: [factoryClass],
    },
  ];
  if (options.useClass) providers.push({ provide: options.useClass, useClass: options.useClass });
  return providers;
}

/** The client and the store of connection `name`. */
export function createSessionCacheProviders(name: string): Provider[] {
  const optionsToken = getSessionCacheOptionsToken(name);
  const cacheToken = getSessionCacheToken(name);
  return [
    {
      provide: cacheToken,
      useFactory: (options: ResolvedSessionCacheOptions) =>
        new SessionCache(options.url.servers, {
          timeout: options.timeout,
          keepAlive: options.keepAlive,
          replicas: options.replicas,
          retryDelay: options.retryDelay,
          credentials: resolveCredentials(options, options.url.credentials),
          tls: options.tls,
          logger,
        }),
      inject: [optionsToken],
    },
    {
      provide: getSessionStoreToken(name),
      useFactory: (client: SessionCache, options: ResolvedSessionCacheOptions) =>
        new SessionStore(client, options, logger),
      inject: [cacheToken, optionsToken],
    },
  ];
}
