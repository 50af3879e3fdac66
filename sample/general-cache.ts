import { KeyvMemcache } from '@keyv/memcache';
import { CacheModule } from '@nestjs/cache-manager';
import type { DynamicModule, OnApplicationShutdown } from '@nestjs/common';
import { toMemjsAddress } from './config';

/** The general cache's memcached connection (memcached A). */
export class GeneralMemcache implements OnApplicationShutdown {
  readonly store: KeyvMemcache;

  constructor(readonly address: string) {
    this.store = new KeyvMemcache(address);
  }

  /** KeyvMemcache has no disconnect(), so CacheModule's shutdown leaves memjs open: close it here. */
  onApplicationShutdown(): void {
    this.store.client.close();
  }
}

/**
 * The app's general cache: the usual `CacheModule` of @nestjs/cache-manager on memcached A, through
 * Keyv and @keyv/memcache. Its `clear()` is a memcached `flush_all` of the whole server, which is
 * why the sessions live on another memcached.
 */
export function generalCacheModule(url: string): DynamicModule {
  return CacheModule.registerAsync({
    isGlobal: true,
    extraProviders: [
      { provide: GeneralMemcache, useFactory: () => new GeneralMemcache(toMemjsAddress(url)) },
    ],
    inject: [GeneralMemcache],
    // CacheModule wraps the store in Keyv, under the `sample` namespace.
    useFactory: (memcache: GeneralMemcache) => ({ stores: [memcache.store], namespace: 'sample' }),
  });
}
