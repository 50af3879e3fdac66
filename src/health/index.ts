// Optional entry point `nestjs-session-cache/health`: the only one that imports @nestjs/terminus.
export { SessionCacheHealthIndicator } from './session-cache.health-indicator';
export type {
  SessionCacheHealthCheckOptions,
  SessionCacheHealthDetails,
  SessionCacheNodeHealthDetails,
} from './session-cache.health-indicator';
