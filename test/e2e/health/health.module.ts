import { Controller, Get } from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { SessionCacheModule } from '../../../src';
import { SessionCacheHealthIndicator } from '../../../src/health';
import { SECRET } from '../../support/platform';

/** The name of the second (named) connection of the scenario, when it has one. */
export const ARCHIVE = 'archive';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly sessions: SessionCacheHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.sessions.isHealthy('session-cache')]);
  }

  @Get('archive')
  @HealthCheck()
  archive() {
    return this.health.check([() => this.sessions.isHealthy('archive', { name: ARCHIVE })]);
  }

  @Get('missing')
  @HealthCheck()
  missing() {
    return this.health.check([() => this.sessions.isHealthy('missing', { name: 'missing' })]);
  }
}

/**
 * The scenario app: the session cluster at `url`, optionally a second, named connection at
 * `archiveUrl`, Terminus and a GET /health controller that uses the indicator.
 */
export function healthModule(url: string, archiveUrl?: string): DynamicModule {
  return {
    module: class HealthAppModule {},
    imports: [
      SessionCacheModule.forRoot(url, { session: { secret: SECRET } }),
      ...(archiveUrl
        ? [
            SessionCacheModule.forRoot(archiveUrl, {
              name: ARCHIVE,
              installMiddleware: false,
              session: { secret: 'health-e2e-archive-secret' },
            }),
          ]
        : []),
      TerminusModule,
    ],
    controllers: [HealthController],
    providers: [SessionCacheHealthIndicator],
  };
}
