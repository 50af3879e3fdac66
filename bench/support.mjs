// Helpers shared by bench/run.mjs and bench/micro.mjs: process cleanup, redis-server, memcached
// and redis command counters, the environment description, and small statistics.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { findMemcachedBinary, freePort, MemcachedProcess } from '../test/support/memcached.mjs';

export const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Everything this run started (child processes, memcached, redis-server, clients), stopped in
 * reverse order by `run()`: at the normal end, on an error, and on SIGINT/SIGTERM. Whatever is still
 * alive when the process exits anyway gets a synchronous SIGKILL from the `exit` handler.
 */
export class Cleanup {
  #tasks = [];
  #children = new Set();
  #pids = [];
  #running = null;

  constructor() {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
      process.once(signal, () => {
        console.error(`\n${signal}: stopping everything this run started…`);
        this.run().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
      });
    }
    process.once('exit', () => {
      for (const child of this.#children) {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      for (const pidOf of this.#pids) {
        const pid = pidOf();
        if (!pid) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    });
  }

  /** Registers an async stop function. */
  add(stop) {
    this.#tasks.push(stop);
  }

  /** Registers a child process: SIGKILLed at exit if it is still running then. */
  child(child) {
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /** Registers a process id getter (undefined once stopped): SIGKILLed at exit if still set. */
  pid(pidOf) {
    this.#pids.push(pidOf);
  }

  /** Runs every stop function once (latest first); errors are reported, not thrown. */
  run() {
    this.#running ??= (async () => {
      while (this.#tasks.length > 0) {
        const stop = this.#tasks.pop();
        try {
          let timer;
          const timeout = new Promise((resolve) => {
            timer = setTimeout(resolve, 5000);
          });
          await Promise.race([stop(), timeout]);
          clearTimeout(timer);
        } catch (err) {
          console.error(`cleanup: ${err?.message ?? err}`);
        }
      }
    })();
    return this.#running;
  }
}

/** Starts `count` memcached processes (test/support's helper), stopped by `cleanup`. */
export async function startMemcached(cleanup, count = 1) {
  const nodes = [];
  for (let i = 0; i < count; i++) {
    const node = await MemcachedProcess.start({ memoryMb: 64 });
    cleanup.add(() => node.kill());
    cleanup.pid(() => node.pid);
    nodes.push(node);
  }
  return nodes;
}

/** Path of redis-server, or null when it is not installed. */
export function findRedisServer() {
  for (const bin of [process.env.REDIS_SERVER_BIN, 'redis-server', '/usr/bin/redis-server']) {
    if (bin && !spawnSync(bin, ['--version'], { stdio: 'ignore' }).error) return bin;
  }
  return null;
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts redis-server on a free loopback port, without persistence; null when not installed. */
export async function startRedis(cleanup) {
  const bin = findRedisServer();
  if (!bin) return null;
  const port = await freePort();
  const child = cleanup.child(
    spawn(
      bin,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    ),
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  cleanup.add(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  });
  const deadline = Date.now() + 5000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null) throw new Error(`redis-server exited at start: ${stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`redis-server did not listen on port ${port}`);
    await sleep(20);
  }
  return { port, url: `redis://127.0.0.1:${port}` };
}

/**
 * Commands a memcached served, from its `stats`: every `cmd_*` counter (get, set — which also
 * counts add/replace —, touch, flush, meta) plus deletes and incr/decr, which have no `cmd_` one.
 */
export function memcachedCommands(stats) {
  let total = 0;
  for (const [name, value] of Object.entries(stats)) {
    if (name.startsWith('cmd_') || /^(delete|incr|decr)_(hits|misses)$/.test(name)) {
      total += Number(value);
    }
  }
  return total;
}

/** Calls recorded by redis's `INFO commandstats`, not counting the INFO probes themselves. */
export function redisCommands(info) {
  let total = 0;
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (m[1] !== 'info') total += Number(m[2]);
  }
  return total;
}

function firstLine(bin, args) {
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  return r.error ? null : (r.stdout || r.stderr).split('\n')[0].trim();
}

function packageVersion(name) {
  try {
    // Read the file directly: some packages (connect-redis) do not export their package.json.
    const main = require.resolve(name);
    const dir = main.slice(
      0,
      main.lastIndexOf(`/node_modules/${name}/`) + `/node_modules/${name}/`.length,
    );
    return JSON.parse(readFileSync(`${dir}package.json`, 'utf8')).version;
  } catch {
    return null;
  }
}

/** Node, CPU, memcached/redis and package versions, for the report. */
export function environment() {
  const memcachedBin = findMemcachedBinary();
  const redisBin = findRedisServer();
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], {
    cwd: root,
    encoding: 'utf8',
  });
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src'], {
    cwd: root,
    encoding: 'utf8',
  });
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    loadAverage: os.loadavg().map((n) => Number(n.toFixed(2))),
    memcached: memcachedBin ? firstLine(memcachedBin, ['-V']) : null,
    redis: redisBin ? firstLine(redisBin, ['--version'])?.replace(/ sha=.*/, '') : null,
    commit:
      commit.status === 0
        ? commit.stdout.trim() + (dirty.stdout.trim() ? '+src-changes' : '')
        : null,
    packages: Object.fromEntries(
      [
        'autocannon',
        'express',
        'express-session',
        'memjs',
        'connect-memcached',
        'connect-redis',
        'redis',
        '@nestjs/core',
        '@nestjs/platform-express',
        '@nestjs/platform-fastify',
        'fastify',
        '@fastify/session',
        '@fastify/cookie',
      ].map((name) => [name, packageVersion(name)]),
    ),
  };
}

export function median(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Rounds in alternating order: A B C, C B A, A B C, … */
export function alternating(items, round) {
  return round % 2 === 0 ? [...items] : [...items].reverse();
}
