import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { CapturingLogger } from '../../support/logger';
import { MemcachedProcess, startMemcachedCluster } from '../../support/memcached.mjs';
import { eventually } from '../../support/wait';
import { createApp, type Platform, PLATFORMS } from '../../support/platform';
import { healthModule } from './health.module';

const TIMEOUT_MS = 300;

type NodeDetails = { status: 'up' | 'down'; latencyMs: number; error?: string };
type IndicatorDetails = {
  status: string;
  replicas: number;
  nodes: Record<string, NodeDetails>;
  message?: string;
};

/** Runs `test` against a fresh scenario app and closes the app afterwards, whatever happens. */
async function withApp(
  platform: Platform,
  url: string,
  test: (ctx: { app: INestApplication; logger: CapturingLogger }) => Promise<void>,
  archiveUrl?: string,
): Promise<void> {
  const moduleRef = await Test.createTestingModule({
    imports: [healthModule(url, archiveUrl)],
  }).compile();
  const logger = new CapturingLogger();
  const app = await createApp(moduleRef, platform, { logger });
  try {
    await test({ app, logger });
  } finally {
    await app.close();
  }
}

function getHealth(app: INestApplication, path = '/health') {
  return request(app.getHttpServer()).get(path);
}

function indicatorOf(body: { details: Record<string, IndicatorDetails> }, key = 'session-cache') {
  return body.details[key];
}

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('SessionCacheHealthIndicator e2e (3 real memcached, replicas=2)', () => {
    let cluster: MemcachedProcess[];
    let url: string;

    beforeAll(async () => {
      cluster = await startMemcachedCluster(3);
      const servers = cluster.map((m) => m.address).join(',');
      url = `memcached://${servers}?replicas=2&timeout=${TIMEOUT_MS}`;
    });
    // Never leave a node frozen or dead for the next test, even on failure.
    afterEach(async () => {
      for (const m of cluster ?? []) {
        await m.resume();
        if (!m.running) await m.restart();
      }
    });
    afterAll(async () => {
      await Promise.all((cluster ?? []).map((m) => m.kill()));
    });

    it('all nodes up: 200, status ok, every node up with its latency', async () => {
      await withApp(platform, url, async ({ app }) => {
        const res = await getHealth(app).expect(200);
        expect(res.headers['cache-control']).toMatch(/no-store/);
        expect(res.body.status).toBe('ok');
        const indicator = indicatorOf(res.body);
        expect(indicator.status).toBe('up');
        expect(indicator.replicas).toBe(2);
        expect(indicator.message).toBeUndefined();
        expect(Object.keys(indicator.nodes).sort()).toEqual(cluster.map((m) => m.address).sort());
        for (const node of Object.values(indicator.nodes)) {
          expect(node).toEqual({ status: 'up', latencyMs: expect.any(Number) });
          expect(node.latencyMs).toBeGreaterThanOrEqual(0);
          expect(node.latencyMs).toBeLessThan(TIMEOUT_MS);
        }
        expect(res.body.info['session-cache']).toEqual(indicator);
      });
    });

    it('one node killed: still 200 (degraded, every session has a replica); two: 503 error; back: ok', async () => {
      await withApp(platform, url, async ({ app, logger }) => {
        const [first, second, third] = cluster;
        await first.kill();
        const one = await getHealth(app).expect(200);
        expect(one.body.status).toBe('degraded');
        const degraded = indicatorOf(one.body);
        expect(degraded.status).toBe('degraded');
        expect(degraded.nodes[first.address]).toEqual({
          status: 'down',
          latencyMs: expect.any(Number),
          error: expect.any(String),
        });
        expect(degraded.nodes[second.address].status).toBe('up');
        expect(degraded.nodes[third.address].status).toBe('up');
        expect(degraded.message).toMatch(/1 of 3 .* down: every session still has a live replica/);

        await second.kill();
        const started = Date.now();
        const two = await getHealth(app).expect(503);
        expect(Date.now() - started).toBeLessThan(1000);
        expect(two.body.status).toBe('error');
        const down = indicatorOf(two.body);
        expect(down.status).toBe('down');
        expect(down.nodes[first.address].status).toBe('down');
        expect(down.nodes[second.address].status).toBe('down');
        expect(down.nodes[third.address].status).toBe('up');
        expect(down.message).toMatch(/2 of 3 .* down: some sessions have no live replica/);
        expect(two.body.error['session-cache']).toEqual(down);
        expect(logger.lines.some((l) => l.includes('Health Check has failed'))).toBe(true);

        await first.restart();
        await second.restart();
        const back = await eventually(() => getHealth(app).expect(200));
        expect(back.body.status).toBe('ok');
        expect(Object.values(indicatorOf(back.body).nodes).map((n) => n.status)).toEqual([
          'up',
          'up',
          'up',
        ]);
      });
    });

    it('a frozen node (SIGSTOP) is reported down within the timeout bound', async () => {
      await withApp(platform, url, async ({ app }) => {
        await getHealth(app).expect(200); // connections to every node are open
        const frozen = cluster[2];
        await frozen.pause();
        const started = Date.now();
        const res = await getHealth(app).expect(200);
        expect(Date.now() - started).toBeLessThan(1000);
        expect(res.body.status).toBe('degraded');
        const node = indicatorOf(res.body).nodes[frozen.address];
        expect(node.status).toBe('down');
        expect(node.error).toEqual(expect.any(String));
        expect(node.latencyMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
        expect(node.latencyMs).toBeLessThan(TIMEOUT_MS + 200);

        await frozen.resume();
        const back = await eventually(() => getHealth(app).expect(200));
        expect(indicatorOf(back.body).nodes[frozen.address].status).toBe('up');
      });
    });

    it('checks a named connection, and names the missing one in a clear error', async () => {
      await withApp(
        platform,
        url,
        async ({ app, logger }) => {
          const res = await getHealth(app, '/health/archive').expect(200);
          const archive = indicatorOf(res.body, 'archive');
          expect(archive.status).toBe('up');
          expect(archive.replicas).toBe(1);
          expect(Object.keys(archive.nodes)).toEqual([cluster[0].address]);

          // A configuration error, not a health state: the check fails (5xx) and the log says why.
          const missing = await getHealth(app, '/health/missing');
          expect(missing.status).toBeGreaterThanOrEqual(500);
          expect(
            logger.lines.some((l) =>
              l.includes('found no session cache connection named "missing"'),
            ),
          ).toBe(true);
        },
        cluster[0].url,
      );
    });
  });
});
