import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { HealthIndicatorService } from '@nestjs/terminus';
import type { HealthIndicatorResult, HealthIndicatorStatus } from '@nestjs/terminus';
import type { SessionCache, SessionCacheHealth } from '../memcached/session-cache.client';
import { DEFAULT_SESSION_CACHE_NAME, getSessionCacheToken } from '../session-cache.constants';
import { SessionCacheConfigError } from '../session-cache.errors';

/** Options of {@link SessionCacheHealthIndicator.isHealthy}. */
export interface SessionCacheHealthCheckOptions {
  /** The connection to check (the `name` given to `forRoot`). Default: the unnamed one. */
  name?: string;
}

/** What the indicator reports about one memcached node. */
export type SessionCacheNodeHealthDetails = {
  status: 'up' | 'down';
  /** Round trip of the probe in ms (also when it failed). */
  latencyMs: number;
  error?: string;
};

/** The details the indicator adds next to `status`. */
export type SessionCacheHealthDetails = {
  /** Copies of every session. */
  replicas: number;
  /** Every node, keyed by `host:port`. */
  nodes: Record<string, SessionCacheNodeHealthDetails>;
  /** Present when a node is down (or the probe failed): what it means for the sessions. */
  message?: string;
};

/**
 * A `@nestjs/terminus` health indicator for the session memcached cluster. Add it to the providers
 * of the module that imports `TerminusModule`, then call {@link isHealthy} from a `@HealthCheck()`
 * handler.
 *
 * Every node is probed (within the connection's `timeout`). The result is
 * - `down` (the health check fails, HTTP 503) when some sessions have no live replica left;
 * - `degraded` (HTTP 200, overall status `degraded`) when a node is down but every session still
 *   has a live replica; on terminus 11, which has no `degraded`, this is reported as `up`;
 * - `up` when every node answers.
 * Every node is listed under `nodes` by `host:port`, with its status and probe latency.
 */
@Injectable()
export class SessionCacheHealthIndicator {
  readonly #clients = new Map<string, SessionCache>();

  constructor(
    private readonly healthIndicatorService: HealthIndicatorService,
    private readonly moduleRef: ModuleRef,
  ) {}

  /**
   * Probes the session memcached cluster of connection `options.name` and reports it under `key`.
   */
  async isHealthy<const Key extends string = 'session-cache'>(
    key: Key = 'session-cache' as Key,
    options: SessionCacheHealthCheckOptions = {},
  ): Promise<HealthIndicatorResult<Key, HealthIndicatorStatus, SessionCacheHealthDetails>> {
    const indicator = this.healthIndicatorService.check(key);
    const client = this.#client(options.name);
    let health: SessionCacheHealth;
    try {
      health = await client.health();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      return indicator.down<SessionCacheHealthDetails>({
        replicas: client.replicas,
        nodes: {},
        message,
      });
    }
    const details: SessionCacheHealthDetails = { replicas: health.replicas, nodes: {} };
    for (const node of health.nodes) {
      details.nodes[node.server] = {
        status: node.status,
        latencyMs: node.latencyMs,
        ...(node.error === undefined ? {} : { error: node.error }),
      };
    }
    const down = health.nodes.filter((n) => n.status === 'down').length;
    if (down === 0) return indicator.up(details);
    const of = `${down} of ${health.nodes.length} session memcached nodes down`;
    if (!health.healthy) {
      return indicator.down({
        ...details,
        message: `${of}: some sessions have no live replica (replicas=${health.replicas}).`,
      });
    }
    details.message = `${of}: every session still has a live replica (replicas=${health.replicas}).`;
    // `degraded` arrived in terminus 12; on 11 a cluster that still serves every session is `up`.
    return typeof indicator.degraded === 'function'
      ? indicator.degraded(details)
      : indicator.up(details);
  }

  #client(name: string = DEFAULT_SESSION_CACHE_NAME): SessionCache {
    let client = this.#clients.get(name);
    if (client) return client;
    try {
      client = this.moduleRef.get<SessionCache>(getSessionCacheToken(name), { strict: false });
    } catch (err) {
      throw new SessionCacheConfigError(
        `SessionCacheHealthIndicator found no session cache connection named "${name}". ` +
          `Import SessionCacheModule.forRoot(url, { name: '${name}', … }) in the application, ` +
          'or pass the name of an existing connection in the options of isHealthy().',
        { cause: err },
      );
    }
    this.#clients.set(name, client);
    return client;
  }
}
