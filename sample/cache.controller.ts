import { Controller, Get, HttpCode, Post } from '@nestjs/common';
import { StampService } from './stamp.service';

/** The general cache (CACHE_MANAGER on memcached A). Sessions are not in it. */
@Controller('cache')
export class CacheController {
  constructor(private readonly stamps: StampService) {}

  /** Reads the stamp from the general cache, computing and caching it when it is missing. */
  @Get('stamp')
  stamp(): Promise<{ value: string; fromCache: boolean }> {
    return this.stamps.get();
  }

  /** Clears the whole general cache. Logged-in users stay logged in: their sessions are on B. */
  @Post('clear')
  @HttpCode(200)
  async clear(): Promise<{ cleared: true }> {
    await this.stamps.clear();
    return { cleared: true };
  }
}
