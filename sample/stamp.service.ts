import { CACHE_MANAGER } from '@nestjs/cache-manager';
import { Inject, Injectable } from '@nestjs/common';
import type { Cache } from 'cache-manager';

const STAMP_KEY = 'stamp';
const STAMP_TTL_MS = 10 * 60 * 1000;

/** Stands for any data an app caches: a value that is "expensive" to compute, kept 10 minutes. */
@Injectable()
export class StampService {
  constructor(@Inject(CACHE_MANAGER) private readonly cache: Cache) {}

  /** The cached stamp, or a new one (then cached) when the general cache does not have it. */
  async get(): Promise<{ value: string; fromCache: boolean }> {
    const cached = await this.cache.get<string>(STAMP_KEY);
    if (cached !== undefined && cached !== null) return { value: cached, fromCache: true };
    const value = new Date().toISOString();
    await this.cache.set(STAMP_KEY, value, STAMP_TTL_MS);
    return { value, fromCache: false };
  }

  /** Empties the general cache. With memcached this is `flush_all` on memcached A. */
  async clear(): Promise<void> {
    await this.cache.clear();
  }
}
