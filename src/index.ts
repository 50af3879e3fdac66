export { SessionCacheModule } from './session-cache.module';
export {
  SESSION_CACHE,
  SESSION_CACHE_OPTIONS,
  DEFAULT_SESSION_CACHE_NAME,
  getSessionCacheToken,
  getSessionCacheOptionsToken,
} from './session-cache.constants';
export { getSessionStoreToken } from './session-cache.providers';
export type { ResolvedSessionCacheOptions } from './session-cache.providers';
export { InjectSessionCache, InjectSessionStore } from './session-cache.decorators';
export {
  SessionStore,
  DEFAULT_PREFIX,
  DEFAULT_TTL,
  DEFAULT_MAX_SESSION_SIZE,
  DEFAULT_LAZY_TOUCH,
} from './store/session.store';
export type { ReadRepairEvent } from './store/session.store';
export { SessionMiddleware } from './session.middleware';
export { SessionSaveInterceptor } from './session-save.interceptor';
export { createSessionStore } from './create-session-store';
export {
  SessionCache,
  MemcachedNode,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_RETRY_DELAY_MS,
  MAX_KEY_LENGTH,
} from './memcached/session-cache.client';
export type {
  SessionCacheClientOptions,
  SessionCacheLogger,
  SessionCacheEvents,
  SessionCacheHealth,
  NodeHealth,
  NodeDownEvent,
  NodeUpEvent,
  OperationFailedEvent,
  ReplicaResult,
} from './memcached/session-cache.client';
export { parseSessionCacheUrl, redactUrl, MemcachedCredentials } from './memcached/url';
export { MemcachedTls } from './memcached/tls';
export type { SessionCacheTlsOptions } from './memcached/tls';
export type {
  MemcachedServerAddress,
  ParsedSessionCacheUrl,
  SessionCacheUrlOptions,
} from './memcached/url';
export { toMemcachedExpiry, MAX_RELATIVE_EXPIRY, MAX_ABSOLUTE_EXPIRY } from './memcached/expiry';
export { jsonSessionSerializer } from './store/session.serializer';
export type { SessionSerializer } from './store/session.serializer';
export {
  SessionCacheError,
  SessionCacheUrlError,
  SessionCacheConfigError,
  SessionCacheUnavailableError,
  SessionCacheAuthError,
  SessionCacheTlsError,
  SessionTooLargeError,
  SessionIdError,
} from './session-cache.errors';
export type * from './interfaces/session-cache-options.interface';
