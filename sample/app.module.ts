import { DynamicModule, Module } from '@nestjs/common';
import { SessionCacheModule } from '../src';
import { AdminController } from './admin.controller';
import { AuthController } from './auth.controller';
import { CacheController } from './cache.controller';
import { configFromEnv, SampleConfig } from './config';
import { generalCacheModule } from './general-cache';
import { MeController } from './me.controller';
import { SampleSessionData, SESSION_COOKIE } from './session';
import { SessionCacheStatsService } from './session-cache-stats.service';
import { StampService } from './stamp.service';

/**
 * The sample app: the general cache (CACHE_MANAGER) on memcached A, the sessions on memcached B.
 * `AppModule.forRoot(config)` takes the servers explicitly (tests use that);
 * `AppModule.fromEnv()` reads them from the environment (main.ts uses that).
 */
@Module({})
export class AppModule {
  static forRoot(config: SampleConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        generalCacheModule(config.generalCacheUrl),
        SessionCacheModule.forRoot(config.sessionCacheUrl, {
          session: {
            secret: config.sessionSecret,
            name: SESSION_COOKIE,
            // Behind HTTPS also set `secure: true` (and `app.set('trust proxy', 1)` behind a proxy).
            cookie: { maxAge: 60 * 60 * 1000 },
          },
          // For POST /logout-everywhere: which user a session belongs to.
          userId: (session) => (session as SampleSessionData).user?.username,
        }),
      ],
      controllers: [AuthController, MeController, CacheController, AdminController],
      providers: [StampService, SessionCacheStatsService],
    };
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env): DynamicModule {
    return AppModule.forRoot(configFromEnv(env));
  }
}
