import { jest } from '@jest/globals';
import { once } from 'node:events';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { SessionCache, SessionStore } from '../../src';
import type { NodeUpEvent } from '../../src';
import { MemcachedProcess, startMemcachedCluster } from '../support/memcached.mjs';
import { recordFigure } from '../support/figures';
import { newSession, RecordingLogger } from '../support/store';
import { startListeningApp } from './app';

// Availability at the edges (issue 9): recovery is measured from the moment memcached is back
// (its port accepts again, or it got SIGCONT), not from any timer of ours. These run with the
// defaults users get: timeout 500 ms, background probe every 100 ms.
jest.setTimeout(180_000);

const startApp = startListeningApp;

async function call(base: string, method: string, path: string, cookie?: string) {
  const started = performance.now();
  const res = await fetch(base + path, { method, headers: cookie ? { cookie } : {} });
  const json = (await res.json().catch(() => null)) as { visits?: number } | null;
  const setCookie = res.headers.getSetCookie()[0]?.split(';')[0];
  const at = performance.now();
  return {
    status: res.status,
    json,
    setCookie,
    retryAfter: res.headers.get('retry-after'),
    at,
    ms: at - started,
  };
}
type Answer = Awaited<ReturnType<typeof call>>;

/** Resolves with the time (performance.now()) at which `port` first accepts a connection. */
async function firstAccept(port: number, until: Promise<unknown>): Promise<number> {
  let stop = false;
  void until.finally(() => (stop = true));
  for (;;) {
    const at = await new Promise<number | null>((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(performance.now());
      });
      socket.once('error', () => resolve(null));
    });
    if (at !== null) return at;
    if (stop) throw new Error(`port ${port} never accepted`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * One logged-in client that POSTs /count every 20 ms (following Set-Cookie, as a browser does)
 * until stopped; every answer is recorded.
 */
function steadyClient(base: string) {
  const answers: Answer[] = [];
  let cookie: string | undefined;
  let running = true;
  const done = (async () => {
    while (running) {
      const res = await call(base, 'POST', '/count', cookie);
      answers.push(res);
      if (res.setCookie) cookie = res.setCookie;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    answers,
    async stop() {
      running = false;
      await done;
    },
  };
}

/**
 * Checks the answers of an outage from `downAt` to `backAt` (performance.now()): requests went on
 * all along, each failed one was a 503 with Retry-After, the first waited at most the timeout and
 * every later one failed fast. Returns how long after `backAt` the first 200 came.
 */
function outageOf(answers: Answer[], downAt: number, backAt: number) {
  const outage = answers.filter((a) => a.at > downAt && a.at - a.ms < backAt);
  const failed = outage.filter((a) => a.status === 503);
  expect(outage.every((a) => a.status === 503 || a.status === 200)).toBe(true);
  expect(failed.every((a) => a.retryAfter === '1')).toBe(true);
  const [first, ...later] = failed;
  return {
    failed,
    first,
    later,
    firstServed: answers.find((a) => a.at > backAt && a.status === 200)!,
  };
}

/** Checks an outage (see outageOf) and records its figures under `recovery.<name>`. */
function checkOutage(
  answers: Answer[],
  downAt: number,
  backAt: number,
  name: string,
  what: string,
) {
  const { failed, first, later, firstServed } = outageOf(answers, downAt, backAt);
  expect(failed.length).toBeGreaterThan(((backAt - downAt) / 1000) * 10);
  const firstMs = recordFigure({
    id: `recovery.${name}.first-failure`,
    scenario: `${what}: first request of the outage (503 + Retry-After)`,
    value: Math.round(first.ms),
    unit: 'ms',
    max: 550,
  });
  expect(firstMs).toBeLessThanOrEqual(500 + 50);
  // Every later one fails fast: none waits for the timeout (none near 500 ms), and all but
  // scheduling outliers of this shared machine (at most 1%, seen: one of ~1,400 at 58 ms) are
  // within 50 ms.
  const slow = later.filter((a) => a.ms > 50);
  const slowPct = recordFigure({
    id: `recovery.${name}.later-over-50ms`,
    scenario: `${what}: later requests of the outage over 50 ms`,
    value: Math.round((1000 * slow.length) / later.length) / 10,
    unit: '%',
    max: 1,
  });
  expect(slow.length).toBeLessThanOrEqual(Math.floor(later.length / 100));
  expect(slowPct).toBeLessThanOrEqual(1);
  expect(Math.max(...later.map((a) => a.ms))).toBeLessThan(250);
  const recovery = recordFigure({
    id: `recovery.${name}.first-200`,
    scenario: `${what}: first 200 after memcached is back`,
    value: Math.round(firstServed.at - backAt),
    unit: 'ms',
    max: 300,
  });
  return { recovery, firstServed };
}

/** The figures the README and the closing note quote, printed where CI logs show them. */
function report(line: string) {
  process.stdout.write(`recovery: ${line}\n`);
}

describe('R=1: served again within 300 ms of memcached being back', () => {
  let memcached: MemcachedProcess;
  beforeAll(async () => {
    memcached = await MemcachedProcess.start();
  });
  afterAll(() => memcached.kill());

  it.each([5, 40])('SIGKILL for %i s, then restarted on the same port', async (seconds) => {
    const { app, base } = await startApp(memcached.url);
    const client = steadyClient(base);
    try {
      while (!client.answers.some((a) => a.status === 200))
        await once(app.getHttpServer(), 'request');
      const killedAt = performance.now();
      await memcached.kill();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const restarted = memcached.restart();
      const acceptedAt = await firstAccept(memcached.port, restarted);
      await restarted;
      while (!client.answers.some((a) => a.at > acceptedAt && a.status === 200)) {
        await new Promise((r) => setTimeout(r, 5));
      }
      await client.stop();
      const { recovery } = checkOutage(
        client.answers,
        killedAt,
        acceptedAt,
        `kill-${seconds}s`,
        `R=1, SIGKILL ${seconds} s, restart on the same port (from the moment it accepts)`,
      );
      report(`kill ${seconds} s: first 200 ${recovery.toFixed(0)} ms after the port accepted`);
      expect(recovery).toBeLessThanOrEqual(300);
    } finally {
      await client.stop();
      await app.close();
    }
  });

  it('SIGSTOP for 20 s, then SIGCONT', async () => {
    const { app, base } = await startApp(memcached.url);
    const client = steadyClient(base);
    try {
      while (!client.answers.some((a) => a.status === 200))
        await once(app.getHttpServer(), 'request');
      const hungAt = performance.now();
      await memcached.pause();
      await new Promise((r) => setTimeout(r, 20_000));
      const resumedAt = performance.now();
      await memcached.resume();
      while (!client.answers.some((a) => a.at > resumedAt && a.status === 200)) {
        await new Promise((r) => setTimeout(r, 5));
      }
      await client.stop();
      const { recovery, firstServed } = checkOutage(
        client.answers,
        hungAt,
        resumedAt,
        'hang-20s',
        'R=1, SIGSTOP 20 s, then SIGCONT (from SIGCONT)',
      );
      report(`hang 20 s: first 200 ${recovery.toFixed(0)} ms after SIGCONT`);
      expect(recovery).toBeLessThanOrEqual(300);
      // The counter went on where it was: the session survived the hang.
      expect(firstServed.json?.visits).toBeGreaterThan(1);
    } finally {
      await client.stop();
      await memcached.resume();
      await app.close();
    }
  });
});

describe('3 nodes, R=2: a node that comes back is in service at once', () => {
  let cluster: MemcachedProcess[];
  beforeAll(async () => {
    cluster = await startMemcachedCluster(3);
  });
  afterEach(() => Promise.all(cluster.map((p) => p.resume())));
  afterAll(() => Promise.all(cluster.map((p) => p.kill())));

  it('kill B, restart B, read every session once, hang A at once: 0 of 300 refused or lost', async () => {
    const url = `memcached://${cluster.map((n) => n.address).join(',')}?replicas=2`;
    const store = new SessionStore(
      SessionCache.fromUrl(url),
      { ttl: 3600, keySecret: 'k' },
      new RecordingLogger(),
      true,
    );
    const [a, b] = cluster;
    try {
      const ids = Array.from({ length: 300 }, () => randomBytes(18).toString('base64url'));
      await Promise.all(ids.map((id) => store.setSession(id, newSession(store, id, { user: id }))));
      const read = () =>
        Promise.all(
          ids.map((id) =>
            store.getSession(id).then(
              (s) => ((s as { user?: string } | null)?.user === id ? 'ok' : 'lost'),
              () => 'refused',
            ),
          ),
        );
      await b.kill();
      expect(new Set(await read())).toEqual(new Set(['ok'])); // B's copies are served by others
      const up = once(store.client, 'nodeUp') as Promise<[NodeUpEvent]>;
      await b.restart(); // empty
      expect((await up)[0].server).toBe(b.address);
      expect(new Set(await read())).toEqual(new Set(['ok'])); // …and repairs B
      await a.pause();
      const outcomes = await read();
      const tally = (o: string) => outcomes.filter((x) => x === o).length;
      report(`R=2 second fault: ${tally('refused')} refused, ${tally('lost')} lost of 300`);
      recordFigure({
        id: 'recovery.r2-second-fault',
        scenario:
          'R=2, 300 sessions: kill B, restart B, read all once, hang A at once: refused or lost',
        value: tally('refused') + tally('lost'),
        unit: 'sessions',
        min: 0,
        max: 0,
      });
      expect({ refused: tally('refused'), lost: tally('lost') }).toEqual({ refused: 0, lost: 0 });
    } finally {
      await a.resume();
      await store.close();
    }
  });

  it('200 clients x 50 writes: B hangs for 2 s, then A is killed for good: every answer 200, every count exact', async () => {
    // (With 3 nodes and R=2 every pair of nodes is some session's replica set: while one node is
    // dead and another hung, those sessions have no copy left. So the hang comes first, and the
    // kill once B is back and every client has written through it again.)
    const CLIENTS = 200;
    const WRITES = 50;
    const url = `memcached://${cluster.map((n) => n.address).join(',')}?replicas=2`;
    const { app, base, store } = await startApp(url);
    const [a, b] = cluster;
    try {
      const statuses = new Map<number, number>();
      let done = 0;
      /** Writes each client started after B was back in service. */
      const sinceBack = new Array<number>(CLIENTS).fill(0);
      let bBack = false;
      let phase: 'before' | 'hang' | 'back' | 'killed' = 'before';
      const faults: Promise<unknown>[] = [];
      const maybeFault = () => {
        if (phase === 'before' && done >= (CLIENTS * WRITES) / 10) {
          phase = 'hang';
          const up = once(store, 'nodeUp').then(() => (bBack = true));
          faults.push(
            b
              .pause()
              .then(() => new Promise((r) => setTimeout(r, 2000)))
              .then(() => b.resume())
              .then(() => up),
          );
        } else if (phase === 'hang' && bBack && sinceBack.every((n) => n >= 2)) {
          phase = 'killed';
          faults.push(a.kill());
        }
      };
      const client = async (i: number) => {
        const created = await call(base, 'POST', '/count'); // a new session, visits 1
        expect(created.status).toBe(200);
        const cookie = created.setCookie!;
        for (let n = 1; n <= WRITES; n++) {
          const afterBack = bBack;
          const res = await call(base, 'POST', '/count', cookie);
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          done++;
          if (afterBack) sinceBack[i]++;
          maybeFault();
          // Users pace their clicks: the run lasts about 5 s, so the faults fall inside it.
          await new Promise((r) => setTimeout(r, 100));
        }
        return (await call(base, 'GET', '/count', cookie)).json?.visits;
      };
      const counts = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
      await Promise.all(faults);
      expect(phase).toBe('killed');
      recordFigure({
        id: 'recovery.r2-hang-then-kill',
        scenario:
          'R=2, 200 clients × 50 writes, B hung 2 s, then A killed for good: answers other than 200, or counts off',
        value:
          CLIENTS * WRITES -
          (statuses.get(200) ?? 0) +
          counts.filter((c) => c !== WRITES + 1).length,
        unit: 'answers',
        min: 0,
        max: 0,
      });
      expect(Object.fromEntries(statuses)).toEqual({ 200: CLIENTS * WRITES });
      expect(counts).toEqual(Array(CLIENTS).fill(WRITES + 1));
    } finally {
      await app.close();
      await a.restart();
    }
  });
});
