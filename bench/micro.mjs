// Micro-benchmark (issue 5): the library's store get/set against raw memjs on the same memcached.
// `npm run bench:micro` (builds dist first) or node bench/micro.mjs [options].
//
// One memcached; `--concurrency` operations in flight (one loop each, awaiting its own
// operation); keys spread over `--keys` sessions. Operations:
//   store.get       store.getSession(sid): memcached get, header + JSON decode
//   store.set       store.setSession(sid, session) of a session loaded from the store (replace),
//                   as express-session saves a modified session
//   memjs.get/set   client.get/set(key) of the same bytes, on a memjs client with its defaults
//   memjs+JSON ...  the same plus JSON.parse / JSON.stringify: what any store has to do at least
// The sessions are real express-session Session objects (cookie maxAge 1 h, a user and a
// counter), built the way express-session builds them (new Session(req), store.createSession).
// Rounds alternate the order; the report gives ops/s medians and the ratio to raw memjs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import session from 'express-session';
import memjs from 'memjs';
import { alternating, Cleanup, environment, median, root, startMemcached } from './support.mjs';

const require = createRequire(import.meta.url);
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '50' },
    keys: { type: 'string', default: '1000' },
  },
});
const opts = {
  rounds: Number(values.rounds),
  seconds: Number(values.seconds),
  concurrency: Number(values.concurrency),
  keys: Number(values.keys),
};
for (const [name, n] of Object.entries(opts)) {
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
}

const log = (message) => console.error(`[micro] ${message}`);
const quiet = { log: () => undefined };

/** express-session's Session and Cookie; their constructors are public at run time. */
function newSession(store, sid, i) {
  const req = { sessionID: sid, sessionStore: store };
  const s = new session.Session(req);
  s.cookie = new session.Cookie({ maxAge: 60 * 60 * 1000 });
  s.user = { id: `u${i}`, name: `User u${i}`, roles: ['reader', 'writer'] };
  s.counter = i;
  return s;
}

/** Runs `op(slot)` in `concurrency` loops for `seconds`; returns ops/s and failures. */
async function drive(op) {
  const end = performance.now() + opts.seconds * 1000;
  let ops = 0;
  let failures = 0;
  let firstError = null;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: opts.concurrency }, async (_, worker) => {
      for (let k = worker; performance.now() < end; k += opts.concurrency) {
        try {
          if ((await op(k % opts.keys)) === false) failures++;
        } catch (err) {
          failures++;
          firstError ??= err;
        }
        ops++;
      }
    }),
  );
  return { opsPerSecond: ops / ((performance.now() - start) / 1000), failures, firstError };
}

async function main() {
  const cleanup = new Cleanup();
  try {
    const { createSessionStore } = require(join(root, 'dist'));
    const [node] = await startMemcached(cleanup, 1);
    const store = createSessionStore(node.url, { ttl: 3600, keySecret: 'micro-bench-secret' });
    cleanup.add(() => store.close());
    const raw = memjs.Client.create(node.address, { logger: quiet });
    cleanup.add(async () => raw.close());

    // Sessions as express-session has them: created (store add), then loaded (get + createSession).
    const sids = Array.from({ length: opts.keys }, (_, i) => `micro-${i}`);
    const loaded = [];
    const payloads = [];
    for (const [i, sid] of sids.entries()) {
      await store.setSession(sid, newSession(store, sid, i));
      const data = await store.getSession(sid);
      loaded.push(store.createSession({ sessionID: sid, sessionStore: store }, data));
      payloads.push(Buffer.from(JSON.stringify(loaded[i])));
      await raw.set(`raw:${sid}`, payloads[i], { expires: 3600 });
    }
    const bytes = median(payloads.map((p) => p.length));
    log(`${opts.keys} sessions of ~${bytes} bytes of JSON (+12 bytes of header in the store)`);

    const ops = {
      'store.get': async (i) => (await store.getSession(sids[i])) !== null,
      'memjs.get': async (i) => (await raw.get(`raw:${sids[i]}`)).value !== null,
      'memjs+JSON.get': async (i) => {
        const { value } = await raw.get(`raw:${sids[i]}`);
        return value !== null && typeof JSON.parse(value.toString('utf8')) === 'object';
      },
      'store.set': async (i) => {
        await store.setSession(sids[i], loaded[i]);
      },
      'memjs.set': (i) => raw.set(`raw:${sids[i]}`, payloads[i], { expires: 3600 }),
      'memjs+JSON.set': (i) =>
        raw.set(`raw:${sids[i]}`, JSON.stringify(loaded[i]), { expires: 3600 }),
    };
    const names = Object.keys(ops);
    const samples = Object.fromEntries(names.map((n) => [n, []]));
    let failed = false;
    for (let round = 0; round < opts.rounds; round++) {
      for (const name of alternating(names, round)) {
        const r = await drive(ops[name]);
        samples[name].push(r.opsPerSecond);
        log(`round ${round + 1} ${name.padEnd(15)} ${r.opsPerSecond.toFixed(0).padStart(7)} ops/s`);
        if (r.failures) {
          failed = true;
          log(`${name}: ${r.failures} failed (${r.firstError?.message ?? 'wrong answer'})`);
        }
      }
    }

    const env = environment();
    const rows = names.map((name) => {
      const rawName = name.endsWith('.get') ? 'memjs.get' : 'memjs.set';
      return {
        op: name,
        opsPerSecond: median(samples[name]),
        min: Math.min(...samples[name]),
        max: Math.max(...samples[name]),
        ratio: median(samples[name]) / median(samples[rawName]),
      };
    });
    const f0 = (n) => n.toFixed(0);
    const report = [
      '# Store micro-benchmark: store get/set vs raw memjs',
      '',
      `${env.date} · Node ${env.node} · ${env.cpus} × ${env.cpuModel} · ${env.memcached} · ` +
        `memjs ${env.packages.memjs} · commit ${env.commit ?? '?'} · load average ` +
        env.loadAverage.join(' '),
      '',
      `${opts.concurrency} operations in flight over ${opts.keys} sessions of ~${bytes} bytes, ` +
        `${opts.rounds} rounds of ${opts.seconds} s per operation, alternating order.`,
      '',
      '| operation | ops/s (median) | min–max | × raw memjs |',
      '|---|---:|---:|---:|',
      ...rows.map(
        (r) =>
          `| ${r.op} | ${f0(r.opsPerSecond)} | ${f0(r.min)}–${f0(r.max)} | ${r.ratio.toFixed(2)} |`,
      ),
      '',
      '× raw memjs: median ops/s divided by the median of memjs.get (for gets) or memjs.set ' +
        '(for sets) on the same memcached.',
    ].join('\n');
    const dir = join(root, 'bench-results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'micro.md'), report + '\n');
    writeFileSync(
      join(dir, 'micro.json'),
      JSON.stringify({ options: opts, environment: env, rows, samples }, null, 2) + '\n',
    );
    console.log(report);
    if (failed) process.exitCode = 1;
  } catch (err) {
    console.error(err?.stack ?? err);
    process.exitCode = 1;
  } finally {
    await cleanup.run();
  }
}

await main();
