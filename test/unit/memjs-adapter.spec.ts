import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { Client, Server, Utils } from 'memjs';
import { MemcachedNode, SessionCacheConfigError } from '../../src';
import type { MemcachedNodeOptions } from '../../src/memcached/memcached-node';
import {
  assertMemjsInternals,
  installedMemjsVersion,
  MEMJS_INTERNALS,
  SUPPORTED_MEMJS,
  TESTED_MEMJS,
} from '../../src/memcached/memjs-internals';
import type { MemjsModule } from '../../src/memcached/memjs-internals';
import { fakeMemcached } from '../support/fake-memcached';
import { freePort, MemcachedProcess } from '../support/memcached.mjs';

/**
 * memjs-adapter.ts reaches into memjs's internals; memjs-internals.ts lists them and checks them at
 * start-up. These tests fail when an internal changes (a memjs upgrade): the check must name it,
 * and each adaptation must still do what it is for.
 */

const root = process.cwd(); // jest runs from the project root
const readJson = (path: string) => JSON.parse(readFileSync(join(root, path), 'utf8'));
const memjsVersion: string = readJson('node_modules/memjs/package.json').version;

type Mutable = Record<string, unknown>;
const real = { Client, Server, Utils };

/**
 * Makes `name` (an entry of MEMJS_INTERNALS) missing or different, as a memjs release might.
 * Returns the memjs to check and how to put everything back.
 */
function breakInternal(name: string): { memjs: MemjsModule; restore(): void } {
  const replace = (owner: Mutable, key: string, value: unknown) => {
    const own = Object.getOwnPropertyDescriptor(owner, key);
    owner[key] = value; // also shadows what Server inherits from EventEmitter
    return {
      memjs: real,
      restore: () => (own ? Object.defineProperty(owner, key, own) : delete owner[key]),
    };
  };
  const prototypeOf = (cls: string) =>
    (real[cls as 'Server'] as unknown as { prototype: Mutable }).prototype;

  let m = /^(Server|Client)\.prototype\.(\w+)$/.exec(name);
  if (m) return replace(prototypeOf(m[1]), m[2], undefined);
  if (name === 'Server#_socket') {
    // A memjs that keeps its connection under another name.
    return replace(
      prototypeOf('Server'),
      'sock',
      function (this: Mutable, _sasl: boolean, go: (s: unknown) => void) {
        go(this.connection);
      },
    );
  }
  if (name === "Server 'authenticated' event") {
    // A memjs that signals a finished login otherwise.
    return replace(
      prototypeOf('Server'),
      'responseHandler',
      function (this: { emit(e: string): void }) {
        this.emit('ready');
      },
    );
  }
  m = /^(Server|Client)#(\w+)(?:\.(\w+))?$/.exec(name);
  if (m) {
    // A field of a new instance: a memjs whose constructor does not set it.
    const [, cls, field, sub] = m;
    const Real = real[cls as 'Server'] as unknown as new (...args: unknown[]) => Mutable;
    const Without = function (...args: unknown[]) {
      const instance = new Real(...args);
      if (sub === undefined) delete instance[field];
      else instance[field] = { ...(instance[field] as Mutable), [sub]: undefined };
      return instance;
    } as unknown as { prototype: unknown };
    Without.prototype = Real.prototype;
    return { memjs: { ...real, [cls]: Without }, restore: () => undefined };
  }
  m = /^Utils\.(\w+)$/.exec(name);
  if (m) return replace(Utils as unknown as Mutable, m[1], undefined);
  throw new Error(`The test cannot break ${name}: teach breakInternal how.`);
}

function checkError(memjs?: MemjsModule): SessionCacheConfigError {
  try {
    assertMemjsInternals(memjs);
  } catch (err) {
    expect(err).toBeInstanceOf(SessionCacheConfigError);
    return err as SessionCacheConfigError;
  }
  throw new Error('assertMemjsInternals() did not throw');
}

function nodeOptions(options: Partial<MemcachedNodeOptions> = {}): MemcachedNodeOptions {
  return { timeout: 300, keepAlive: false, retryDelay: 1000, maxRetryDelay: 1000, ...options };
}

/** Counts the writes that reach net.Socket (one per syscall batch) on connections to `port`. */
function watchSockets(port: number) {
  type Write = (this: net.Socket, ...args: unknown[]) => unknown;
  const proto = net.Socket.prototype as unknown as Record<'_write' | '_writev', Write>;
  const original = { _write: proto._write, _writev: proto._writev };
  const sockets = new Set<net.Socket>();
  const watch = { writes: 0, sockets, restore: () => Object.assign(proto, original) };
  for (const key of ['_write', '_writev'] as const) {
    proto[key] = function (...args) {
      if (this.remotePort === port) {
        sockets.add(this);
        watch.writes++;
      }
      return original[key].apply(this, args);
    };
  }
  return watch;
}

describe('memjs internals check', () => {
  // First in this file: the check runs once per process, when the first node is created.
  it('stops the first node when memjs lacks an internal, naming it, the version and the supported range', () => {
    const broken = breakInternal('Server.prototype.sock');
    try {
      const create = () => new MemcachedNode('127.0.0.1:1', '127.0.0.1', 1, nodeOptions());
      expect(create).toThrow(SessionCacheConfigError);
      expect(create).toThrow(`memjs ${memjsVersion}`);
      expect(create).toThrow(/Server\.prototype\.sock: a function/);
      expect(create).toThrow(`memjs ${SUPPORTED_MEMJS} (tested with ${TESTED_MEMJS})`);
    } finally {
      broken.restore();
    }
    new MemcachedNode('127.0.0.1:1', '127.0.0.1', 1, nodeOptions()).close();
  });

  it('passes against the installed memjs, and reads its version', () => {
    expect(() => assertMemjsInternals()).not.toThrow();
    expect(installedMemjsVersion()).toBe(memjsVersion);
  });

  it('the memjs peer range is the supported one, and CI installs the tested version', () => {
    expect(readJson('package.json').peerDependencies.memjs).toBe(SUPPORTED_MEMJS);
    expect(readJson('package-lock.json').packages['node_modules/memjs'].version).toBe(TESTED_MEMJS);
  });

  describe('each internal the adapter relies on', () => {
    afterEach(() => assertMemjsInternals()); // put back

    it.each(MEMJS_INTERNALS.map((internal) => [internal.name]))(
      '%s: missing or changed, the check names it and the installed version',
      (name) => {
        const broken = breakInternal(name);
        let message: string;
        try {
          message = checkError(broken.memjs).message;
        } finally {
          broken.restore();
        }
        expect(message).toContain(`${name}: `);
        expect(message).toContain(`installed memjs ${memjsVersion}`);
        expect(message).toContain(`Supported: memjs ${SUPPORTED_MEMJS}`);
      },
    );
  });

  it('names a makeRequestBuffer that lays requests out otherwise', () => {
    const make = Utils.makeRequestBuffer;
    // e.g. a release that writes the opaque where the CAS goes
    Utils.makeRequestBuffer = (opcode, key, extras, value, opaque) => {
      const request = make(opcode, key, extras, value, 0);
      request.writeUInt32BE(opaque, 16);
      return request;
    };
    try {
      expect(checkError().message).toContain('Utils.makeRequestBuffer: ');
    } finally {
      Utils.makeRequestBuffer = make;
    }
  });

  it('names a Server that cannot be constructed', () => {
    const Throws = function () {
      throw new TypeError('options is required');
    };
    expect(checkError({ ...real, Server: Throws }).message).toMatch(
      /new Server\(…\).*options is required.*Supported: memjs/,
    );
  });
});

describe('memjs adaptations', () => {
  it('coalesces the requests issued in one tick into one socket write', async () => {
    const port = await freePort();
    const server = await fakeMemcached(port);
    const node = new MemcachedNode(`127.0.0.1:${port}`, '127.0.0.1', port, nodeOptions());
    const watch = watchSockets(port);
    try {
      await node.get('warm-up'); // connected
      for (const batch of [1, 2]) {
        watch.writes = 0;
        const calls = Array.from({ length: 20 }, (_, i) => node.get(`k${batch}-${i}`));
        expect(await Promise.all(calls)).toEqual(Array(20).fill(null));
        expect(watch.writes).toBe(1);
      }
      expect(server.received).toHaveLength(41);
    } finally {
      watch.restore();
      node.close();
      await server.close();
    }
  });

  it('close() destroys the socket of a hung server (ending it would wait for the peer)', async () => {
    const port = await freePort();
    const server = await fakeMemcached(port, { allowHalfOpen: true });
    const node = new MemcachedNode(`127.0.0.1:${port}`, '127.0.0.1', port, nodeOptions());
    const watch = watchSockets(port);
    try {
      await node.get('warm-up');
      server.control.hang = true;
      const pending = node.get('k');
      const rejected = expect(pending).rejects.toThrow(/no answer within 300 ms/);
      const [socket] = watch.sockets;
      node.close();
      expect(socket.destroyed).toBe(true);
      await rejected;
    } finally {
      watch.restore();
      node.close();
      await server.close();
    }
  });

  it('at the deadline, every call queued on a hung connection fails and the next call reconnects', async () => {
    const port = await freePort();
    const server = await fakeMemcached(port);
    const node = new MemcachedNode(`127.0.0.1:${port}`, '127.0.0.1', port, nodeOptions());
    try {
      await node.get('warm-up');
      server.control.hang = true;
      const started = performance.now();
      const calls = Array.from({ length: 5 }, (_, i) =>
        node.get(`k${i}`).then(
          () => 'answered',
          (err: Error) => err.message,
        ),
      );
      for (const outcome of await Promise.all(calls)) expect(outcome).toMatch(/no answer within/);
      expect(performance.now() - started).toBeLessThan(1500);
      server.control.hang = false;
      expect(await node.version()).toBe(''); // the fake answers an empty version
      expect(server.control.connections).toBe(2);
    } finally {
      node.close();
      await server.close();
    }
  });

  it('never logs in with MEMCACHIER_* / MEMCACHE_* credentials from the environment', async () => {
    const saved = { ...process.env };
    for (const prefix of ['MEMCACHIER_', 'MEMCACHE_']) {
      process.env[`${prefix}USERNAME`] = 'someone-else';
      process.env[`${prefix}PASSWORD`] = 'their-password';
    }
    const port = await freePort();
    const server = await fakeMemcached(port);
    const node = new MemcachedNode(`127.0.0.1:${port}`, '127.0.0.1', port, nodeOptions());
    try {
      expect(await node.get('k')).toBeNull();
      expect(server.sasl).toEqual([]);
    } finally {
      process.env = saved;
      node.close();
      await server.close();
    }
  });

  it("drops memjs's per-call failure lines, passes its other messages on", async () => {
    const port = await freePort();
    const server = await fakeMemcached(port, { status: (op) => (op === 0x01 ? 0x03 : 0x01) });
    const warnings: string[] = [];
    const logger = { warn: (message: string) => warnings.push(message) };
    const node = new MemcachedNode(`127.0.0.1:${port}`, '127.0.0.1', port, nodeOptions({ logger }));
    const gone = await freePort(); // nobody listens there
    const down = new MemcachedNode(`127.0.0.1:${gone}`, '127.0.0.1', gone, nodeOptions({ logger }));
    try {
      await expect(node.set('k', 'v', 60)).rejects.toThrow(
        /refused the set: MemJS SET: Value too large/,
      );
      await expect(down.get('k')).rejects.toThrow(/ECONNREFUSED/);
      expect(warnings).toEqual(['MemJS SET: Value too large']);
    } finally {
      node.close();
      down.close();
      await server.close();
    }
  });

  describe('commands memjs lacks, sent through its connection', () => {
    let memcached: MemcachedProcess;
    let node: MemcachedNode;
    beforeAll(async () => {
      memcached = await MemcachedProcess.start();
      node = new MemcachedNode(memcached.address, memcached.host, memcached.port, nodeOptions());
    });
    afterAll(async () => {
      node?.close();
      await memcached?.stop();
    });

    it('version', async () => {
      expect(await node.version()).toMatch(/^\d+\.\d+\.\d+/);
    });

    it("each answer reaches its call when they are interleaved with memjs's own in one batch", async () => {
      for (let i = 0; i < 5; i++) await node.set(`mix${i}`, `v${i}`, 60);
      const first = (await node.gets('mix4'))!;
      const results = await Promise.all([
        node.get('mix0'),
        node.gets('mix1'),
        node.getAndTouch('mix2', 120),
        node.version(),
        node.storeCas('add', 'mix3', Buffer.from('no'), 60),
        node.get('missing'),
        node.storeCas('replace', 'mix4', Buffer.from('new'), 60, first.cas),
        node.deleteIfCas('mix4', first.cas), // the replace above changed the CAS first
        node.gets('missing'),
        node.touch('mix0', 120),
      ]);
      expect(results[0]?.toString()).toBe('v0');
      expect((results[1] as { value: Buffer }).value.toString()).toBe('v1');
      expect(results[2]?.toString()).toBe('v2');
      expect(results[3]).toMatch(/^\d+\.\d+\.\d+/);
      expect(results[4]).toBeNull();
      expect(results[5]).toBeNull();
      expect(Buffer.isBuffer(results[6])).toBe(true);
      expect(results[7]).toBe(false);
      expect(results[8]).toBeNull();
      expect(results[9]).toBe(true);
      expect((await node.get('mix4'))?.toString()).toBe('new');
      expect(await memcached.ttl('mix2')).toBeGreaterThan(100);
    });
  });
});
