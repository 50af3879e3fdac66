// Starts real memcached processes on free loopback ports, for tests, the sample and benchmarks.
// Plain ESM JavaScript so that jest (ESM mode), node:test suites and scripts can all use it.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { hostname, tmpdir } from 'node:os';
import tls from 'node:tls';
import { join } from 'node:path';

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

export const SASL_INSTALL_HINT =
  'saslpasswd2 is not installed; the SASL tests need it to build the sasldb of a memcached -S. ' +
  'On Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y sasl2-bin libsasl2-modules ' +
  '(or run .ci/run, or set SASLPASSWD2_BIN to its path).';

/** Path of saslpasswd2 (Debian's sasl2-bin), or null when there is none. */
export function findSaslpasswd2() {
  const candidates = [
    process.env.SASLPASSWD2_BIN,
    'saslpasswd2',
    // Not on the PATH of ordinary users on Debian.
    '/usr/sbin/saslpasswd2',
    '/usr/local/sbin/saslpasswd2',
  ];
  for (const bin of candidates) {
    if (!bin) continue;
    const probe = spawnSync(bin, ['-v'], { stdio: 'ignore' });
    if (!probe.error) return bin;
  }
  return null;
}

/**
 * Makes a temporary SASL configuration for memcached: a sasldb with one user and a
 * memcached.conf that offers PLAIN from it. Returns the directory (for SASL_CONF_PATH).
 */
function makeSaslDir({ username, password }) {
  const bin = findSaslpasswd2();
  if (!bin) throw new Error(SASL_INSTALL_HINT);
  const dir = mkdtempSync(join(tmpdir(), 'memcached-sasl-'));
  try {
    const db = join(dir, 'sasldb2');
    // memcached asks SASL for users of the realm named like its host name (gethostname()), which
    // saslpasswd2's default (the fully qualified name) need not match: give it explicitly.
    const result = spawnSync(
      bin,
      ['-p', '-c', '-a', 'memcached', '-f', db, '-u', hostname(), username],
      { input: password, encoding: 'utf8' },
    );
    if (result.error || result.status !== 0) {
      throw new Error(
        `saslpasswd2 could not create the sasldb (exit ${result.status}): ` +
          `${result.error?.message ?? result.stderr.trim()}`,
      );
    }
    writeFileSync(join(dir, 'memcached.conf'), `mech_list: plain\nsasldb_path: ${db}\n`);
    return dir;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * A connection to a test memcached: plain TCP, or TLS with `tlsOptions` (tls.connect options such as
 * { ca, cert, key }). Returns the socket and the event after which it is ready.
 */
function openSocket(port, host, tlsOptions) {
  if (!tlsOptions) return { socket: net.connect({ port, host }), ready: 'connect' };
  const servername = net.isIP(host) === 0 ? host : undefined;
  return { socket: tls.connect({ port, host, servername, ...tlsOptions }), ready: 'secureConnect' };
}

/** One binary-protocol request (no extras, no CAS). */
function binaryRequest(opcode, key, value, opaque) {
  const header = Buffer.alloc(24);
  header[0] = 0x80;
  header[1] = opcode;
  header.writeUInt16BE(key.length, 2);
  header.writeUInt32BE(key.length + value.length, 8);
  header.writeUInt32BE(opaque, 12);
  return Buffer.concat([header, key, value]);
}

/**
 * `stats` over the binary protocol after a SASL PLAIN login (what a memcached -S speaks), over TCP
 * or TLS. A refused login rejects with "authentication failed".
 */
function saslStats(host, port, { username, password }, tlsOptions) {
  return new Promise((resolve, reject) => {
    const { socket, ready } = openSocket(port, host, tlsOptions);
    const stats = {};
    let buffer = Buffer.alloc(0);
    const finish = (err) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(stats);
    };
    const timer = setTimeout(
      () => finish(new Error(`memcached on port ${port} did not answer a SASL login and stats`)),
      5000,
    );
    socket.once('error', finish);
    socket.once(ready, () => {
      const auth = Buffer.from(`\0${username}\0${password}`);
      const none = Buffer.alloc(0);
      socket.write(
        Buffer.concat([
          binaryRequest(0x21, Buffer.from('PLAIN'), auth, 1),
          binaryRequest(0x10, none, none, 2),
        ]),
      );
    });
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 24 && buffer.length >= 24 + buffer.readUInt32BE(8)) {
        const bodyLength = buffer.readUInt32BE(8);
        const keyStart = 24 + buffer[4];
        const valueStart = keyStart + buffer.readUInt16BE(2);
        const [opcode, status] = [buffer[1], buffer.readUInt16BE(6)];
        const key = buffer.subarray(keyStart, valueStart).toString();
        const value = buffer.subarray(valueStart, 24 + bodyLength).toString();
        buffer = buffer.subarray(24 + bodyLength);
        if (status !== 0) {
          finish(
            new Error(status === 0x20 ? 'authentication failed' : `status ${status}: ${value}`),
          );
          return;
        }
        if (opcode !== 0x10) continue;
        if (key === '') {
          finish(null);
          return;
        }
        stats[key] = value;
      }
    });
  });
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
  {
    until = /(END|OK|ERROR|STORED|DELETED|NOT_FOUND|TOUCHED)\r\n$/,
    host = '127.0.0.1',
    tls: tlsOptions,
  } = {},
) {
  return new Promise((resolve, reject) => {
    const { socket } = openSocket(port, host, tlsOptions);
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
  /** SASL user and password (memcached -S), or null. */
  #sasl = null;
  /** The temporary SASL configuration of the running process. */
  #saslDir = null;
  /** Called when the process exits without being told to (crash, OOM killer, kill -9 by hand). */
  #onCrash = [];
  /** The child this object is stopping or killing on purpose. */
  #stopping = null;
  /** The `tls` start option of a memcached -Z, or null. */
  #tls = null;

  constructor(bin, port, args, host = '127.0.0.1') {
    this.#bin = bin;
    this.port = port;
    this.#args = args;
    this.host = host;
  }

  /**
   * Starts memcached on a free port. Options: memoryMb (default 64), maxItemSize (e.g. '1m'),
   * args (extra command-line arguments), env (extra environment variables), sasl ({ username,
   * password }: runs memcached -S with a temporary sasldb holding that one user, and is ready once
   * that user can log in; such a process speaks only the binary protocol, so `stats()` logs in
   * over it and the text-protocol helpers reject), tls ({ certFile, keyFile, clientCaFile?,
   * verifyMode?, connect }: runs memcached -Z with that server certificate, requiring client
   * certificates signed by clientCaFile when given (ssl_verify_mode, default 2); the helpers'
   * own connections use TLS with the tls.connect options `connect`, and it is ready once they get
   * an answer over TLS. See makeTestCertificates() in certificates.mjs).
   */
  static async start(options = {}) {
    const bin = findMemcachedBinary();
    if (!bin) throw new Error(INSTALL_HINT);
    const sasl = options.sasl ?? null;
    if (sasl) {
      if (typeof sasl.username !== 'string' || !sasl.username || typeof sasl.password !== 'string')
        throw new Error('sasl needs { username, password } as strings');
      if (!findSaslpasswd2()) throw new Error(SASL_INSTALL_HINT);
    }
    const tlsOption = options.tls ?? null;
    if (tlsOption && (!tlsOption.certFile || !tlsOption.keyFile || !tlsOption.connect))
      throw new Error('tls needs { certFile, keyFile, connect } (see makeTestCertificates)');
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
      ...(sasl ? ['-S'] : []),
      ...(tlsOption ? ['-Z', '-o', memcachedTlsSettings(tlsOption)] : []),
      ...(options.args ?? []),
    ];
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      const proc = new MemcachedProcess(bin, port, args, options.host);
      proc.env = options.env;
      proc.#sasl = sasl && { username: sasl.username, password: sasl.password };
      proc.#tls = tlsOption;
      try {
        await proc.#spawn();
        return proc;
      } catch (err) {
        proc.#removeSaslDir();
        if (attempt >= 4 || err.fatal) throw err;
      }
    }
  }

  /** `memcached://127.0.0.1:<port>` (IPv6 hosts in brackets), `memcacheds://` for a memcached -Z */
  get url() {
    return `${this.#scheme}://${this.address}`;
  }

  get #scheme() {
    return this.#tls ? 'memcacheds' : 'memcached';
  }

  /** Whether this is a memcached -Z (TLS only). */
  get tls() {
    return this.#tls !== null;
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

  /** The SASL user name of a memcached -S, or undefined. */
  get saslUser() {
    return this.#sasl?.username;
  }

  /** `url` with the SASL user and password, percent-encoded (just `url` without SASL). */
  get urlWithCredentials() {
    if (!this.#sasl) return this.url;
    const { username, password } = this.#sasl;
    return `${this.#scheme}://${encodeURIComponent(username)}:${encodeURIComponent(password)}@${this.address}`;
  }

  #removeSaslDir() {
    if (!this.#saslDir) return;
    rmSync(this.#saslDir, { recursive: true, force: true });
    this.#saslDir = null;
  }

  /** Fails with a hint when a memcached -S refuses the very user its sasldb was made with. */
  async #checkSaslLogin() {
    try {
      await saslStats(this.host, this.port, this.#sasl, this.#tls?.connect);
    } catch (err) {
      const error = new Error(
        `memcached -S on port ${this.port} refused the SASL login of its own test user ` +
          `"${this.#sasl.username}" (${err.message}). Is SASL's PLAIN mechanism installed? On ` +
          'Debian/Ubuntu: sudo apt-get install -y libsasl2-modules.',
      );
      error.fatal = /authentication/i.test(err.message);
      throw error;
    }
  }

  /** Fails with the reason when the helper's own TLS connection to a memcached -Z fails. */
  async #checkTls() {
    try {
      await this.stats();
    } catch (err) {
      const error = new Error(
        `memcached -Z on port ${this.port} did not answer the test helper over TLS ` +
          `(${err.code ?? ''} ${err.message}). Check the certificates given in the tls option.`,
      );
      error.fatal = typeof err.code === 'string' && !/^E[A-Z]+$/.test(err.code);
      throw error;
    }
  }

  /** Options of rawCommand() for this process (its host; TLS for a memcached -Z). */
  #rawOptions(extra = {}) {
    return { host: this.host, ...(this.#tls ? { tls: this.#tls.connect } : {}), ...extra };
  }

  /** Rejects for helpers that speak the text protocol, which memcached -S turns off. */
  #textProtocol(helper) {
    if (!this.#sasl) return;
    throw new Error(
      `MemcachedProcess.${helper}() speaks memcached's text protocol, which a memcached -S ` +
        '(SASL) does not serve; check through the app or a memjs client with credentials.',
    );
  }

  async #spawn() {
    if (this.#sasl && !this.#saslDir) {
      try {
        this.#saslDir = makeSaslDir(this.#sasl);
      } catch (err) {
        err.fatal = true;
        throw err;
      }
    }
    const child = spawn(this.#bin, [...this.#args, '-p', String(this.port)], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...process.env,
        ...(this.env ?? {}),
        ...(this.#saslDir ? { SASL_CONF_PATH: this.#saslDir } : {}),
      },
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let exited = false;
    child.once('exit', (code, signal) => {
      exited = true;
      if (this.#child === child) this.#child = null;
      if (this.#stopping !== child) {
        for (const listener of this.#onCrash) listener(signal ?? `code ${code}`);
      }
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
      if (this.#sasl) await this.#checkSaslLogin();
      else if (this.#tls) await this.#checkTls();
    } catch (err) {
      this.#stopping = child;
      child.kill('SIGKILL');
      this.#child = null;
      throw err;
    }
  }

  /**
   * Calls `listener(reason)` whenever this memcached exits without stop(), kill() or restart()
   * (a crash, the OOM killer, a kill from another terminal).
   */
  onCrash(listener) {
    this.#onCrash.push(listener);
  }

  async #signalAndWait(signal) {
    const child = this.#child;
    if (!child) return;
    this.#stopping = child;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGCONT');
      child.kill(signal);
      await exited;
    }
    this.#child = null;
  }

  /** Stops memcached (SIGTERM), waits for it to exit and removes its SASL files (if any). */
  async stop() {
    try {
      await this.#signalAndWait('SIGTERM');
    } finally {
      this.#removeSaslDir();
    }
  }

  /** Kills memcached (SIGKILL), waits for it to exit and removes its SASL files (if any). */
  async kill() {
    try {
      await this.#signalAndWait('SIGKILL');
    } finally {
      this.#removeSaslDir();
    }
  }

  /**
   * Starts memcached again on the same port (empty, as after a real restart; a SASL process gets
   * a fresh sasldb with the same user).
   */
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
    this.#textProtocol('flush');
    await rawCommand(this.port, 'flush_all', this.#rawOptions());
  }

  /** Current `stats` as a name → value map (binary protocol with a login for memcached -S). */
  async stats() {
    if (this.#sasl) return saslStats(this.host, this.port, this.#sasl, this.#tls?.connect);
    const reply = await rawCommand(this.port, 'stats', this.#rawOptions({ until: /END\r\n$/ }));
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
  async clients() {
    this.#textProtocol('clients');
    return new Promise((resolve, reject) => {
      const { socket, ready } = openSocket(this.port, this.host, this.#tls?.connect);
      let reply = '';
      socket.once('error', reject);
      socket.once(ready, () => socket.write('stats conns\r\n'));
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
    this.#textProtocol('ttl');
    const reply = await rawCommand(this.port, `mg ${key} t`, this.#rawOptions({ until: /\r\n$/ }));
    const m = /^HD t(-?\d+)/.exec(reply);
    return m ? Number(m[1]) : null;
  }

  /** The raw value stored under `key`, or null. */
  async getRaw(key) {
    this.#textProtocol('getRaw');
    const reply = await rawCommand(
      this.port,
      `get ${key}`,
      this.#rawOptions({ until: /END\r\n$/ }),
    );
    const m = /^VALUE \S+ \d+ (\d+)\r\n/.exec(reply);
    if (!m) return null;
    const start = reply.indexOf('\r\n') + 2;
    return Buffer.from(reply.slice(start, start + Number(m[1])), 'latin1');
  }

  /** Stores a raw value under `key` (no expiry unless given). */
  async setRaw(key, value, exptime = 0) {
    this.#textProtocol('setRaw');
    const buf = Buffer.isBuffer(value) ? value : Buffer.from(value);
    const reply = await rawCommand(
      this.port,
      `set ${key} 0 ${exptime} ${buf.length}\r\n${buf.toString('latin1')}\r\n`,
      this.#rawOptions(),
    );
    if (!reply.startsWith('STORED')) throw new Error(`memcached refused set: ${reply.trim()}`);
  }
}

/** memcached's -o value for TLS: the server certificate, and client certificates when asked. */
function memcachedTlsSettings({ certFile, keyFile, clientCaFile, verifyMode }) {
  for (const path of [certFile, keyFile, clientCaFile]) {
    // memcached splits -o on commas: a path with one would be cut in two.
    if (path && path.includes(',')) throw new Error(`TLS file path has a comma: ${path}`);
  }
  const settings = [`ssl_chain_cert=${certFile}`, `ssl_key=${keyFile}`];
  if (clientCaFile)
    settings.push(`ssl_verify_mode=${verifyMode ?? 2}`, `ssl_ca_cert=${clientCaFile}`);
  else if (verifyMode) settings.push(`ssl_verify_mode=${verifyMode}`);
  return settings.join(',');
}

/** Starts `count` memcached processes. */
export function startMemcachedCluster(count, options) {
  return Promise.all(Array.from({ length: count }, () => MemcachedProcess.start(options)));
}
