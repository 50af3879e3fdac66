import { Logger } from '@nestjs/common';
import type { SessionStoreOptions } from './interfaces/session-cache-options.interface';
import { SessionCache } from './memcached/session-cache.client';
import { resolveCredentials } from './session-cache.providers';
import { SessionStore } from './store/session.store';

/**
 * The same store without Nest, for plain Express apps:
 *
 * ```ts
 * const store = createSessionStore('memcached://127.0.0.1:11212', { ttl: 3600 });
 * // TLS: createSessionStore('memcacheds://cache.internal:11212', { tls: { ca: readFileSync(caFile) } })
 * app.use(session({ store, secret, resave: false, saveUninitialized: false }));
 * // on shutdown: await store.close();
 * ```
 */
export function createSessionStore(url: string, options: SessionStoreOptions = {}): SessionStore {
  const logger = new Logger('SessionCacheModule');
  const client = SessionCache.fromUrl(url, {
    credentials: resolveCredentials(options, undefined),
    timeout: options.timeout,
    keepAlive: options.keepAlive,
    replicas: options.replicas,
    retryDelay: options.retryDelay,
    tls: options.tls,
    logger,
  });
  return new SessionStore(client, options, logger, true);
}
