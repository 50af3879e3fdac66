// Starts real memcached processes on free loopback ports, for tests, the sample and benchmarks.
// Plain ESM JavaScript so that jest (ESM mode), node:test suites and scripts can all use it.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';

const INSTALL_HINT =
  'memcached is not installed. On Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y memcached ' +
  '(or set MEMCACHED_BIN to its path).';

/** Path of the memcached binary, or null when there is none. */
export function findMemcachedBinary() {
  const candidates = [
    process.env.MEMCACHED_BIN,
    'memcached',
    '/usr/bin/memcached',
    '/usr/local/bin/memcached',
  ];
  for (const bin of candidates) {
    if (!bin) continue;
    const probe = spawnSync(bin, ['-h'], { stdio: 'ignore' });
    if (!probe.error) return bin;
  }
  return null;
}

/** A free TCP port on 127.0.0.1 (the OS picks it). */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

function canConnect(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitUntil(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** The one-letter state of a process from /proc (R, S, T…), or null when it is gone. */
function processState(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

/** Sends one text-protocol command and resolves with the reply (up to END/OK/an error line). */
export function rawCommand(
  port,
  command,
  { until = /(END|OK|ERROR|STORED|DELETED|NOT_FOUND|TOUCHED)\r\n$/, host = '127.0.0.1' } = {},
) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`memcached on port ${port} did not answer "${command.split('\r\n')[0]}"`));
    }, 5000);
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (until.test(reply)) {
        clearTimeout(timer);
        socket.end();
        resolve(reply);
      }
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(command.endsWith('\r\n') ? command : `${command}\r\n`, 'latin1');
  });
}

/** A memcached child process on a loopback address (127.0.0.1 unless told otherwise). */
export class MemcachedProcess {
  #child = null;
  #args;
  #bin;

  constructor(bin, port, args, host = '127.0.0.1') {
    this.#bin = bin;
    this.port = port;
    this.#args = args;
    this.host = host;
  }

  /**
   * Starts memcached on a free port. Options: memoryMb (default 64), maxItemSize (e.g. '1m'),
   * args (extra command-line arguments), env (extra environment variables).
   */
  static async start(options = {}) {
    const bin = findMemcachedBinary();
    if (!bin) throw new Error(INSTALL_HINT);
    const args = [
      '-l',
      options.host ?? '127.0.0.1',
      '-U',
      '0',
      '-m',
      String(options.memoryMb ?? 64),
      '-c',
      '4096',
      ...(options.maxItemSize ? ['-I', options.maxItemSize] : []),
      ...(process.getuid?.() === 0 ? ['-u', 'root'] : []),
      ...(options.args ?? []),
    ];
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      const proc = new MemcachedProcess(bin, port, args, options.host);
      proc.env = options.env;
      try {
        await proc.#spawn();
        return proc;
      } catch (err) {
        if (attempt >= 4) throw err;
      }
    }
  }

  /** `memcached://127.0.0.1:<port>` (IPv6 hosts in brackets) */
  get url() {
    return `memcached://${this.address}`;
  }

  /** `127.0.0.1:<port>` (IPv6 hosts in brackets) */
  get address() {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  get running() {
    return this.#child !== null;
  }

  get pid() {
    return this.#child?.pid;
  }

  async #spawn() {
    const child = spawn(this.#bin, [...this.#args, '-p', String(this.port)], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...(this.env ?? {}) },
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let exited = false;
    child.once('exit', () => {
      exited = true;
      if (this.#child === child) this.#child = null;
    });
    this.#child = child;
    try {
      await waitUntil(
        async () => {
          if (exited)
            throw new Error(`memcached exited at start on port ${this.port}: ${stderr.trim()}`);
          return canConnect(this.port, this.host);
        },
        5000,
        `memcached on port ${this.port}`,
      );
    } catch (err) {
      child.kill('SIGKILL');
      this.#child = null;
      throw err;
    }
  }

  async #signalAndWait(signal) {
    const child = this.#child;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGCONT');
      child.kill(signal);
      await exited;
    }
    this.#child = null;
  }

  /** Stops memcached (SIGTERM) and waits for it to exit. */
  stop() {
    return this.#signalAndWait('SIGTERM');
  }

  /** Kills memcached (SIGKILL) and waits for it to exit. */
  kill() {
    return this.#signalAndWait('SIGKILL');
  }

  /** Starts memcached again on the same port (empty, as after a real restart). */
  async restart() {
    await this.kill();
    await this.#spawn();
  }

  /**
   * Freezes the process (SIGSTOP): connections stay open but nothing answers. Resolves once the
   * kernel reports the process as stopped.
   */
  async pause() {
    const child = this.#child;
    if (!child) return;
    child.kill('SIGSTOP');
    await waitUntil(() => processState(child.pid) === 'T', 5000, `memcached ${child.pid} to stop`);
  }

  /** Thaws a paused process (SIGCONT). Resolves once it runs again. */
  async resume() {
    const child = this.#child;
    if (!child) return;
    child.kill('SIGCONT');
    await waitUntil(() => processState(child.pid) !== 'T', 5000, `memcached ${child.pid} to run`);
  }

  /** `flush_all` over the text protocol. */
  async flush() {
    await rawCommand(this.port, 'flush_all', { host: this.host });
  }

  /** Current `stats` as a name → value map. */
  async stats() {
    const reply = await rawCommand(this.port, 'stats', { until: /END\r\n$/, host: this.host });
    const stats = {};
    for (const line of reply.split('\r\n')) {
      const [tag, name, value] = line.split(' ');
      if (tag === 'STAT') stats[name] = value;
    }
    return stats;
  }

  /**
   * The client connections memcached has open (peer `host:port` of each), not counting the one
   * that asks (`stats conns`).
   */
  clients() {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port: this.port, host: this.host });
      let reply = '';
      socket.once('error', reject);
      socket.once('connect', () => socket.write('stats conns\r\n'));
      socket.on('data', (chunk) => {
        reply += chunk.toString('latin1');
        if (!/END\r\n$/.test(reply)) return;
        socket.end();
        const own = `${socket.localAddress}:${socket.localPort}`;
        const byFd = new Map();
        for (const line of reply.split('\r\n')) {
          const m = /^STAT (\d+):(\w+) (.*)$/.exec(line);
          if (!m) continue;
          const entry = byFd.get(m[1]) ?? {};
          entry[m[2]] = m[3];
          byFd.set(m[1], entry);
        }
        const peers = [...byFd.values()]
          .filter((c) => c.state !== 'conn_listening' && c.addr?.startsWith('tcp:'))
          .map((c) => c.addr.slice(4))
          .filter(
            (addr) => addr !== own && addr !== `[${socket.localAddress}]:${socket.localPort}`,
          );
        resolve(peers);
      });
    });
  }

  /** Seconds memcached will still keep `key` (meta command `mg <key> t`), or null if it has none. */
  async ttl(key) {
    const reply = await rawCommand(this.port, `mg ${key} t`, { until: /\r\n$/, host: this.host });
    const m = /^HD t(-?\d+)/.exec(reply);
    return m ? Number(m[1]) : null;
  }

  /** The raw value stored under `key`, or null. */
  async getRaw(key) {
    const reply = await rawCommand(this.port, `get ${key}`, { until: /END\r\n$/, host: this.host });
    const m = /^VALUE \S+ \d+ (\d+)\r\n/.exec(reply);
    if (!m) return null;
    const start = reply.indexOf('\r\n') + 2;
    return Buffer.from(reply.slice(start, start + Number(m[1])), 'latin1');
  }

  /** Stores a raw value under `key` (no expiry unless given). */
  async setRaw(key, value, exptime = 0) {
    const buf = Buffer.isBuffer(value) ? value : Buffer.from(value);
    const reply = await rawCommand(
      this.port,
      `set ${key} 0 ${exptime} ${buf.length}\r\n${buf.toString('latin1')}\r\n`,
      { host: this.host },
    );
    if (!reply.startsWith('STORED')) throw new Error(`memcached refused set: ${reply.trim()}`);
  }
}

/** Starts `count` memcached processes. */
export function startMemcachedCluster(count, options) {
  return Promise.all(Array.from({ length: count }, () => MemcachedProcess.start(options)));
}
