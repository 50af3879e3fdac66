import { jest } from '@jest/globals';
import { once } from 'node:events';
import type { NodeUpEvent } from '../../src';
import { sessionIdOf } from '../support/http';
import { MemcachedProcess, startMemcachedCluster } from '../support/memcached.mjs';
import { startListeningApp } from './app';

jest.setTimeout(120_000);

const startApp = startListeningApp;

async function call(base: string, method: string, path: string, cookie?: string, body?: object) {
  const started = performance.now();
  const res = await fetch(base + path, {
    method,
    headers: {
      ...(cookie ? { cookie } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = (await res.json().catch(() => null)) as { visits?: number } | null;
  const setCookie = res.headers.getSetCookie()[0]?.split(';')[0];
  return { status: res.status, json, setCookie, ms: performance.now() - started };
}

const urlOf = (nodes: MemcachedProcess[], query: string) =>
  `memcached://${nodes.map((n) => n.address).join(',')}${query}`;

describe('HTTP under node failures (3 nodes, 2 replicas)', () => {
  let cluster: MemcachedProcess[];
  beforeAll(async () => {
    cluster = await startMemcachedCluster(3);
  });
  afterEach(() => Promise.all(cluster.map((p) => p.resume())));
  afterAll(() => Promise.all(cluster.map((p) => p.kill())));

  it('200 clients x 50 sequential writes: every count is exactly 50 though a node is killed and restarted mid-run', async () => {
    const CLIENTS = 200;
    const WRITES = 50;
    const { app, base } = await startApp(urlOf(cluster, '?replicas=2'), { retryDelay: 200 });
    try {
      const victim = cluster[1];
      let done = 0;
      const faults: Promise<void>[] = [];
      const statuses = new Map<number, number>();
      const client = async (i: number) => {
        const login = await call(base, 'POST', '/login', undefined, { user: `u${i}` });
        expect(login.status).toBe(200);
        const cookie = login.setCookie!;
        for (let n = 1; n <= WRITES; n++) {
          const res = await call(base, 'POST', '/visits', cookie);
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          done++;
          if (done === Math.floor((CLIENTS * WRITES) / 3)) faults.push(victim.kill());
          if (done === Math.floor((CLIENTS * WRITES * 2) / 3)) faults.push(victim.restart());
        }
        return (await call(base, 'GET', '/me', cookie)).json?.visits;
      };
      const counts = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
      await Promise.all(faults);
      expect(faults).toHaveLength(2);
      expect(Object.fromEntries(statuses)).toEqual({ 200: CLIENTS * WRITES });
      expect(counts).toEqual(Array(CLIENTS).fill(WRITES));
    } finally {
      await app.close();
    }
  });

  it('a hung (SIGSTOP) node costs at most the timeout, then is skipped; latency is normal again after SIGCONT', async () => {
    const TIMEOUT = 300;
    const { app, base, store } = await startApp(urlOf(cluster, '?replicas=2'), {
      timeout: TIMEOUT,
      retryDelay: 500,
    });
    try {
      const hung = cluster[0];
      // A user whose session has a copy on the node that will hang.
      let cookie = '';
      for (let i = 0; !cookie; i++) {
        const login = await call(base, 'POST', '/login', undefined, { user: `u${i}` });
        const sid = sessionIdOf(login.setCookie!);
        const nodes = store.client.nodesFor(store.key(sid)).map((n) => n.name);
        if (nodes.includes(hung.address)) cookie = login.setCookie!;
      }
      const downs: unknown[] = [];
      store.on('nodeDown', (e) => downs.push(e));

      await hung.pause();
      const started = Date.now();
      const during: number[] = [];
      let visits = 0;
      while (Date.now() - started < 3000) {
        const res = await call(base, 'POST', '/visits', cookie);
        expect(res.status).toBe(200);
        expect(res.json?.visits).toBe(++visits);
        during.push(res.ms);
      }
      // Each request is answered within the time bound (the timeout plus scheduling slack).
      expect(Math.max(...during)).toBeLessThan(TIMEOUT + 700);
      // Only the first call and the retries (500 ms, then doubling) wait for the timeout.
      const slow = during.filter((ms) => ms >= TIMEOUT).length;
      expect(slow).toBeGreaterThanOrEqual(1);
      expect(slow).toBeLessThanOrEqual(4);
      expect(during.length).toBeGreaterThan(slow * 3);
      expect(downs).toHaveLength(1);

      await hung.resume();
      const up = once(store, 'nodeUp') as Promise<[NodeUpEvent]>;
      let back = false;
      void up.then(() => (back = true));
      while (!back) {
        const res = await call(base, 'POST', '/visits', cookie);
        expect(res.status).toBe(200);
        expect(res.json?.visits).toBe(++visits);
      }
      expect((await up)[0].server).toBe(hung.address);
      const after: number[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await call(base, 'GET', '/me', cookie);
        expect(res.json?.visits).toBe(visits);
        after.push(res.ms);
      }
      expect(Math.max(...after)).toBeLessThan(TIMEOUT);
    } finally {
      await app.close();
    }
  });
});
