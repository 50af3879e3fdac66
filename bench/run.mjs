// Side-by-side HTTP benchmark of session stores (issue 5). `npm run bench` (full) or
// `npm run bench:smoke` (CI); both build dist/ first. Directly: node bench/run.mjs [options].
//
// Each variant runs in its own server process, with its own memcached (or redis-server): the
// plain Express app (bench/app.mjs) or the Nest app (bench/nest-app.mjs); bench/variants.mjs
// lists them. The load comes from autocannon in this process: `--connections` connections,
// each bound to one of `--sessions` sessions logged in beforehand (connection i uses session
// i mod sessions; with the default 50/50 every connection has its own session, so writes never
// race each other). Paths: `read` (GET /read, unchanged session: store get + touch) and `write`
// (POST /write, modified session: store get + set).
//
// Every (variant, path) pair is measured for `--duration` seconds per round; rounds alternate the
// order (round 1: A.read A.write B.read …, round 2: … B.read A.write A.read). The report gives
// medians over rounds, each compared with the same app's variant without sessions, the memcached
// (or redis) commands per request from the servers' own counters, and a few ratios between
// variants. A variant fails on any error, timeout or non-2xx answer, a server that did not start
// or died, or a write that did not persist; the run then exits with status 1.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import {
  alternating,
  Cleanup,
  environment,
  median,
  memcachedCommands,
  redisCommands,
  root,
  sleep,
} from './support.mjs';
import { ALL_VARIANTS, APPS, isNone, startBackend, VARIANTS } from './variants.mjs';

const PATHS = {
  read: { method: 'GET', path: '/read' },
  write: { method: 'POST', path: '/write' },
};

const HELP = `usage: node bench/run.mjs [--smoke] [options]
  --smoke             CI mode: 1 round of 2 s, no warm-up; writes bench-results/smoke.{md,json}
  --rounds N          rounds, alternating order (default 4; smoke 1)
  --duration S        seconds per measurement (default 10; smoke 2)
  --warmup S          unmeasured seconds per variant and path before round 1 (default 2; smoke 0)
                      (autocannon stops on whole seconds: both are rounded up)
  --connections N     autocannon connections (default 50)
  --sessions N        sessions logged in per variant, spread over the connections (default 50)
  --variants a,b,…    subset of ${ALL_VARIANTS.join(', ')}
                      (the variant without sessions of each app used, none / nest-none, is added)
  --out NAME          report name under bench-results/ (default latest; smoke: smoke)`;

function options() {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      sessions: { type: 'string' },
      variants: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const smoke = values.smoke;
  const num = (name, fallback) => {
    const n = values[name] === undefined ? fallback : Number(values[name]);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
    return n;
  };
  const chosen = values.variants ? values.variants.split(',').map((v) => v.trim()) : ALL_VARIANTS;
  for (const v of chosen) {
    if (!ALL_VARIANTS.includes(v)) throw new Error(`unknown variant "${v}"\n${HELP}`);
  }
  // × none needs the ceiling of every app used; the report keeps the order of ALL_VARIANTS.
  const ceilings = chosen.map((v) => APPS[VARIANTS[v].app].none);
  const variants = ALL_VARIANTS.filter((v) => chosen.includes(v) || ceilings.includes(v));
  return {
    smoke,
    rounds: Math.round(num('rounds', smoke ? 1 : 4)),
    duration: Math.ceil(num('duration', smoke ? 2 : 10)),
    warmup: smoke || values.warmup === '0' ? 0 : Math.ceil(num('warmup', 2)),
    connections: Math.round(num('connections', 50)),
    sessions: Math.round(num('sessions', 50)),
    variants,
    out: values.out ?? (smoke ? 'smoke' : 'latest'),
  };
}

const log = (message) => console.error(`[bench] ${message}`);

/** Fails early when dist/ is missing, warns when src/ has changed since it was built. */
function checkDist() {
  const index = join(root, 'dist', 'index.js');
  if (!existsSync(index))
    throw new Error('dist/ is missing: run `npm run build` (npm run bench does).');
  const built = statSync(index).mtimeMs;
  const newest = (dir) =>
    readdirSync(dir, { withFileTypes: true }).reduce((max, e) => {
      const p = join(dir, e.name);
      return Math.max(max, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }, 0);
  if (newest(join(root, 'src')) > built) {
    log('warning: src/ is newer than dist/; the lib variants run the old build (npm run build).');
  }
}

/** Starts the variant's app and resolves once it prints `ready <port>`. */
async function startServer(cleanup, variant, storeUrl) {
  const child = cleanup.child(
    spawn(process.execPath, [APPS[variant.app].script], {
      env: { ...process.env, BENCH_VARIANT: variant.name, BENCH_STORE_URL: storeUrl ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  variant.child = child;
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  variant.stderr = () => stderr.trim();
  child.once('exit', (code, signal) => {
    variant.exited = `server exited (${signal ?? `code ${code}`})`;
  });
  cleanup.add(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  });
  let stdout = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('did not print "ready" within 30 s')), 30_000);
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /^ready (\d+)$/m.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`exited at start (${signal ?? `code ${code}`}): ${stderr.trim()}`));
    });
  });
  variant.base = `http://127.0.0.1:${port}`;
}

/** Starts the variant's memcached/redis and server; records a failure instead of throwing. */
async function prepare(cleanup, variant, opts) {
  try {
    const backend = await startBackend(cleanup, variant.name);
    if (backend.skipped) {
      variant.skipped = backend.skipped;
      return;
    }
    if (backend.nodes) variant.counter = memcachedCounter(backend.nodes);
    if (backend.redis) {
      const { createClient } = await import('redis');
      const client = createClient({ url: backend.url });
      client.on('error', () => undefined);
      await client.connect();
      cleanup.add(() => client.quit());
      variant.counter = async () => redisCommands(await client.info('commandstats'));
    }
    await startServer(cleanup, variant, backend.url);
    variant.cookies = await login(variant, opts.sessions);
  } catch (err) {
    fail(variant, `setup: ${err?.message ?? err}`);
  }
}

function memcachedCounter(nodes) {
  return async () => {
    const all = await Promise.all(nodes.map((n) => n.stats()));
    return all.reduce((sum, stats) => sum + memcachedCommands(stats), 0);
  };
}

/** Logs in `count` sessions; returns their `name=value` cookies (empty strings for none). */
async function login(variant, count) {
  const cookies = [];
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${variant.base}/login?user=u${i}`, { method: 'POST' });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`POST /login answered ${res.status}`);
    const cookie = res.headers.get('set-cookie')?.split(';')[0] ?? '';
    if (!isNone(variant.name) && !cookie) throw new Error('POST /login set no session cookie');
    cookies.push(cookie);
  }
  return cookies;
}

/** The counter of the first session, as GET /read reports it. */
async function sessionCounter(variant) {
  const res = await fetch(`${variant.base}/read`, { headers: { cookie: variant.cookies[0] } });
  const body = await res.json().catch(() => ({}));
  if (res.status !== 200) throw new Error(`GET /read answered ${res.status}`);
  return body.counter;
}

function fail(variant, reason) {
  variant.failures.push(reason);
  log(`${variant.name}: FAILED: ${reason}`);
}

/** One autocannon run against a variant's path. */
function load(variant, pathName, seconds, connections) {
  const { method, path } = PATHS[pathName];
  let next = 0;
  return autocannon({
    url: `${variant.base}${path}`,
    method,
    connections,
    duration: seconds,
    timeout: 10,
    setupClient(client) {
      const cookie = variant.cookies[next++ % variant.cookies.length];
      if (cookie) client.setHeaders({ cookie });
    },
  });
}

/** Measures one (variant, path) pair; returns the sample or null when it failed. */
async function measure(variant, pathName, round, opts) {
  const checkWrite = pathName === 'write' && !isNone(variant.name);
  const counterBefore = checkWrite ? await sessionCounter(variant) : undefined;
  const commandsBefore = variant.counter ? await variant.counter() : null;
  const result = await load(variant, pathName, opts.duration, opts.connections);
  await sleep(50); // let the answers that were in flight when autocannon stopped finish
  const commandsAfter = variant.counter ? await variant.counter() : null;

  const responses = result['2xx'] + result.non2xx;
  const problems = [];
  if (variant.exited) problems.push(`${variant.exited}: ${variant.stderr()}`);
  if (result.errors) problems.push(`${result.errors} errors (${result.timeouts} timeouts)`);
  if (result.non2xx) {
    const codes = Object.entries(result.statusCodeStats)
      .filter(([code]) => !code.startsWith('2'))
      .map(([code, { count }]) => `${count}×${code}`);
    problems.push(`non-2xx answers: ${codes.join(', ')}`);
  }
  if (result['2xx'] === 0) problems.push('no successful request');
  if (checkWrite && problems.length === 0) {
    const counterAfter = await sessionCounter(variant);
    if (!(counterAfter > counterBefore)) {
      problems.push(`writes did not persist (counter ${counterBefore} → ${counterAfter})`);
    }
  }
  for (const p of problems) fail(variant, `${pathName}, round ${round + 1}: ${p}`);

  const sample = {
    round: round + 1,
    variant: variant.name,
    app: variant.app,
    path: pathName,
    seconds: result.duration,
    requests: responses,
    rps: result['2xx'] / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    commands: commandsBefore === null ? null : commandsAfter - commandsBefore,
    errors: result.errors,
    non2xx: result.non2xx,
  };
  log(
    `round ${round + 1} ${variant.name.padEnd(22)} ${pathName.padEnd(5)} ` +
      `${sample.rps.toFixed(0).padStart(6)} req/s  p50 ${sample.p50} ms  p99 ${sample.p99} ms` +
      (sample.commands === null ? '' : `  ${(sample.commands / responses).toFixed(2)} cmds/req`),
  );
  return problems.length === 0 ? sample : null;
}

function summarize(variants, samples) {
  const rows = [];
  for (const path of Object.keys(PATHS)) {
    const of = (name) => samples.filter((s) => s.variant === name && s.path === path);
    for (const variant of variants) {
      const noneRps = median(of(APPS[variant.app].none).map((s) => s.rps));
      const own = of(variant.name);
      const rps = own.map((s) => s.rps);
      const counted = own.filter((s) => s.commands !== null);
      const requests = counted.reduce((sum, s) => sum + s.requests, 0);
      const commands = counted.reduce((sum, s) => sum + s.commands, 0);
      rows.push({
        path,
        app: variant.app,
        variant: variant.name,
        rounds: own.length,
        rps: median(rps),
        min: Math.min(...rps),
        max: Math.max(...rps),
        ratio: median(rps) / noneRps,
        p50: median(own.map((s) => s.p50)),
        p99: median(own.map((s) => s.p99)),
        commandsPerRequest: counted.length && requests ? commands / requests : null,
        commandSource: VARIANTS[variant.name].backend === 'redis' ? 'redis' : 'memcached',
        status: variant.skipped ? 'skipped' : variant.failures.length ? 'FAILED' : 'ok',
      });
    }
  }
  return rows;
}

/**
 * Ratios between variants for issue 10's targets, from the rows' medians (req/s; for `p99`, the
 * p99 latencies). A ratio is only computed when both variants ran without failing.
 */
const RATIOS = [
  {
    a: 'nest-lib-1',
    b: 'nest-lib-hand',
    what: 'Nest module / Nest by hand',
    paths: ['read', 'write'],
  },
  {
    a: 'nest-lib-1',
    b: 'nest-connect-redis',
    what: 'Nest module / Nest connect-redis',
    paths: ['read', 'write'],
  },
  { a: 'nest-lib-1', b: 'nest-memory', what: 'Nest module / Nest MemoryStore', paths: ['read'] },
  {
    a: 'lib-1',
    b: 'memory',
    what: 'Express lib-1 / Express MemoryStore',
    paths: ['read', 'write'],
  },
  { a: 'nest-lib-3r2', b: 'nest-lib-1', what: 'Nest module 3 nodes ×2 / 1 node', paths: ['read'] },
  {
    a: 'nest-lib-1-tls',
    b: 'nest-lib-1',
    what: 'Nest module over TLS / over TCP',
    paths: ['read', 'write'],
  },
  {
    a: 'nest-lib-1',
    b: 'nest-connect-redis',
    what: 'Nest module / Nest connect-redis',
    paths: ['read', 'write'],
    metric: 'p99',
  },
  {
    a: 'nest-fastify-lib-1',
    b: 'nest-fastify-default-store',
    what: "Nest Fastify module / @fastify/session's default store",
    paths: ['read', 'write'],
  },
  {
    a: 'nest-fastify-lib-1',
    b: 'nest-lib-1',
    what: 'Nest module on Fastify / on Express',
    paths: ['read', 'write'],
  },
];

function ratios(rows, variants) {
  const status = (name) => {
    const v = variants.find((x) => x.name === name);
    if (!v) return 'not run';
    if (v.skipped) return 'skipped';
    return v.failures.length ? 'failed' : null;
  };
  return RATIOS.map(({ a, b, what, paths, metric = 'rps' }) => {
    const missing = [a, b].filter(status).map((name) => `${name} ${status(name)}`);
    const values = {};
    for (const path of paths) {
      const of = (name) => rows.find((r) => r.variant === name && r.path === path)?.[metric];
      values[path] = missing.length
        ? null
        : { a: of(a), b: of(b), ratio: Number.isFinite(of(a) / of(b)) ? of(a) / of(b) : null };
    }
    return { a, b, what, metric, values, missing };
  });
}

function markdown(opts, env, rows, variants, computed) {
  const f0 = (n) => (Number.isFinite(n) ? n.toFixed(0) : '–');
  const f2 = (n) => (Number.isFinite(n) ? n.toFixed(2) : '–');
  const ms = (n) => (Number.isFinite(n) ? String(Number(n.toFixed(1))) : '–');
  const lines = [
    `# Session store benchmark (${opts.smoke ? 'smoke' : 'full'} run)`,
    '',
    `${env.date} · Node ${env.node} · ${env.cpus} × ${env.cpuModel} · ${env.memcached ?? 'no memcached'}` +
      ` · ${env.redis ?? 'no redis-server'} · commit ${env.commit ?? '?'} · load average at start ` +
      `${env.loadAverage.join(' ')}, at end ${os
        .loadavg()
        .map((n) => n.toFixed(2))
        .join(' ')}`,
    '',
    `autocannon ${env.packages.autocannon}, ${opts.connections} connections over ${opts.sessions} ` +
      `sessions, ${opts.rounds} round(s) of ${opts.duration} s per variant and path, alternating ` +
      `order, ${opts.warmup} s warm-up. express ${env.packages.express}, express-session ` +
      `${env.packages['express-session']}, memjs ${env.packages.memjs}, connect-memcached ` +
      `${env.packages['connect-memcached']}, connect-redis ${env.packages['connect-redis']}, ` +
      `redis ${env.packages.redis}, @nestjs/core ${env.packages['@nestjs/core']}, ` +
      `@nestjs/platform-express ${env.packages['@nestjs/platform-express']}, ` +
      `@nestjs/platform-fastify ${env.packages['@nestjs/platform-fastify']}, fastify ` +
      `${env.packages.fastify}, @fastify/session ${env.packages['@fastify/session']}, ` +
      `@fastify/cookie ${env.packages['@fastify/cookie']}.`,
    '',
    '| path | app | variant | req/s (median) | min–max | × none | p50 ms | p99 ms | store cmds/req |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const name = r.status === 'ok' ? r.variant : `${r.variant} (${r.status})`;
    const cmds =
      r.commandsPerRequest === null
        ? '–'
        : `${f2(r.commandsPerRequest)}${r.commandSource === 'redis' ? ' (redis)' : ''}`;
    lines.push(
      `| ${r.path} | ${r.app} | ${name} | ${f0(r.rps)} | ${r.rounds ? `${f0(r.min)}–${f0(r.max)}` : '–'} | ${f2(r.ratio)} | ` +
        `${ms(r.p50)} | ${ms(r.p99)} | ${cmds} |`,
    );
  }
  lines.push(
    '',
    'app: express is bench/app.mjs (plain Express), nest is bench/nest-app.mjs (Nest on ' +
      '@nestjs/platform-express), nest-fastify the same app on @nestjs/platform-fastify. ' +
      'req/s: successful responses per second, median over rounds ' +
      '(min–max: slowest and fastest round). × none: median req/s divided by the median of the ' +
      "same app's variant without session middleware (none, nest-none, nest-fastify-none) on the same path. p50/p99: autocannon latency percentiles, median over rounds. store " +
      'cmds/req: commands counted by the store servers (memcached `stats`: every cmd_* plus ' +
      "delete/incr/decr hits and misses, summed over all of the variant's nodes; redis: " +
      '`INFO commandstats` calls) during the measurements, divided by the responses.',
  );
  lines.push('', '## Ratios', '', '| ratio | metric | read | write |', '|---|---|---:|---:|');
  for (const r of computed) {
    const cell = (path) => {
      if (!(path in r.values)) return '';
      const v = r.values[path];
      if (!v || v.ratio === null) return '–';
      return r.metric === 'p99' ? `${f2(v.ratio)} (${ms(v.a)} / ${ms(v.b)} ms)` : f2(v.ratio);
    };
    const missing = r.missing.length ? ` (not computed: ${r.missing.join(', ')})` : '';
    lines.push(
      `| ${r.what}: ${r.a} / ${r.b}${missing} | ${r.metric === 'p99' ? 'p99 latency' : 'req/s'} | ` +
        `${cell('read')} | ${cell('write')} |`,
    );
  }
  lines.push(
    '',
    'Medians of the table above divided by each other; above 1 means more req/s (for p99: ' +
      'slower) for the first variant. Computed only when both variants ran without failing.',
  );
  const notes = variants.flatMap((v) => [
    ...(v.skipped ? [`- ${v.name} skipped: ${v.skipped}.`] : []),
    ...v.failures.map((reason) => `- ${v.name} FAILED: ${reason}`),
  ]);
  if (notes.length) lines.push('', ...notes);
  return lines.join('\n') + '\n';
}

async function main() {
  const opts = options();
  const cleanup = new Cleanup();
  try {
    checkDist();
    const env = environment();
    const variants = opts.variants.map((name) => ({
      name,
      app: VARIANTS[name].app,
      failures: [],
      cookies: [],
    }));
    log(
      `${opts.smoke ? 'smoke' : 'full'} run: ${opts.rounds} round(s) × ${variants.length} ` +
        `variants × 2 paths × ${opts.duration} s`,
    );
    await Promise.all(variants.map((v) => prepare(cleanup, v, opts)));
    log('servers ready');
    for (const v of variants.filter((v) => v.skipped)) log(`${v.name} skipped: ${v.skipped}`);
    const live = () => variants.filter((v) => !v.skipped && v.failures.length === 0);

    if (opts.warmup > 0) {
      for (const v of live()) {
        for (const path of Object.keys(PATHS)) await load(v, path, opts.warmup, opts.connections);
      }
    }
    const sequence = variants.flatMap((v) => Object.keys(PATHS).map((path) => [v, path]));
    const samples = [];
    for (let round = 0; round < opts.rounds; round++) {
      for (const [variant, path] of alternating(sequence, round)) {
        if (!live().includes(variant)) continue;
        try {
          const sample = await measure(variant, path, round, opts);
          if (sample) samples.push(sample);
        } catch (err) {
          fail(variant, `${path}, round ${round + 1}: ${err?.message ?? err}`);
        }
      }
    }

    const rows = summarize(variants, samples);
    const computed = ratios(rows, variants);
    const report = markdown(opts, env, rows, variants, computed);
    const dir = join(root, 'bench-results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${opts.out}.md`), report);
    writeFileSync(
      join(dir, `${opts.out}.json`),
      JSON.stringify(
        {
          options: opts,
          environment: env,
          rows,
          ratios: computed,
          samples,
          variants: variants.map((v) => ({
            name: v.name,
            skipped: v.skipped ?? null,
            failures: v.failures,
          })),
        },
        null,
        2,
      ) + '\n',
    );
    console.log(report);
    log(`written to bench-results/${opts.out}.md and .json`);
    const failed = variants.filter((v) => v.failures.length > 0);
    if (failed.length) {
      log(`failed: ${failed.map((v) => v.name).join(', ')}`);
      process.exitCode = 1;
    }
  } catch (err) {
    console.error(err?.stack ?? err);
    process.exitCode = 1;
  } finally {
    await cleanup.run();
  }
}

await main();
