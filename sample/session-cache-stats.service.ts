import { Injectable } from '@nestjs/common';
import { InjectSessionCache, SessionCache } from '../src';

/** A few of memcached's statistics, per server of the session cluster. */
export interface SessionServerStats {
  curr_items?: number;
  curr_connections?: number;
  uptime?: number;
  error?: string;
}

/**
 * Reads the session memcached's statistics through the library's client. `@InjectSessionCache()`
 * gives the very client the session store uses (memcached B), not the general cache.
 */
@Injectable()
export class SessionCacheStatsService {
  constructor(@InjectSessionCache() private readonly sessionCache: SessionCache) {}

  async stats(): Promise<Record<string, SessionServerStats>> {
    const all = await this.sessionCache.stats();
    const result: Record<string, SessionServerStats> = {};
    for (const [server, stats] of Object.entries(all)) {
      result[server] = stats.error
        ? { error: stats.error }
        : {
            curr_items: Number(stats.curr_items),
            curr_connections: Number(stats.curr_connections),
            uptime: Number(stats.uptime),
          };
    }
    return result;
  }
}
