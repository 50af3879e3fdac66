import { Controller, Get, UseGuards } from '@nestjs/common';
import { LoggedInGuard } from './session';
import { SessionCacheStatsService, SessionServerStats } from './session-cache-stats.service';

@Controller('admin')
@UseGuards(LoggedInGuard) // a real app would check for an admin role here
export class AdminController {
  constructor(private readonly sessionCacheStats: SessionCacheStatsService) {}

  /** Statistics of the session memcached (B), keyed by `host:port`. */
  @Get('session-cache')
  async sessionCache(): Promise<{ servers: Record<string, SessionServerStats> }> {
    return { servers: await this.sessionCacheStats.stats() };
  }
}
