import { Client, Server, Utils } from 'memjs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { SessionCacheConfigError } from '../session-cache.errors';

/**
 * The memjs versions whose internals {@link assertMemjsInternals} knows (package.json's `memjs`
 * peer range says the same). CI tests exactly {@link TESTED_MEMJS}, the lockfile's version.
 */
export const SUPPORTED_MEMJS = '~1.3.2';
export const TESTED_MEMJS = '1.3.2';

/** A binary-protocol response as memjs hands it to a `perform` callback (`Utils.parseMessage`). */
export interface MemjsResponse {
  header: { status: number; cas: Buffer };
  val: Buffer;
}

/**
 * The parts of memjs's Server (1.3.2, lib/memjs/server.js) that memjs-adapter.ts wraps, replaces or
 * drives. Its socket is `_socket` (set by `sock`, destroyed and deleted by `error`).
 */
export interface MemjsServerInternals {
  username?: string;
  password?: string;
  options: { conntimeout: number; keepAlive: boolean; keepAliveDelay: number };
  _socket?: TLSSocket;
  connected: boolean;
  timeoutSet: boolean;
  connectCallbacks: Array<(socket: TLSSocket) => void>;
  write(blob: Buffer): void;
  sock(sasl: boolean, go: (socket: TLSSocket) => void): void;
  onConnect(go: (socket: TLSSocket) => void): void;
  responseHandler(data: Buffer): void;
  listSasl(): void;
  error(err: Error): void;
  emit(event: 'authenticated'): boolean;
  once(event: 'authenticated', listener: () => void): unknown;
  removeAllListeners(event: 'authenticated'): unknown;
}

/**
 * The parts of memjs's Client (1.3.2, lib/memjs/memjs.js) used to send the commands memjs has no
 * method for: the request sequence number (`seq`, advanced by `incrSeq`) and `perform`, which
 * sends a request built by `Utils.makeRequestBuffer` and calls back with the parsed response.
 */
export interface MemjsClientInternals {
  seq: number;
  incrSeq(): void;
  perform(
    key: string,
    request: Buffer,
    seq: number,
    callback: (err: Error | null, response?: MemjsResponse) => void,
  ): void;
}

/** What {@link assertMemjsInternals} looks at: memjs's exports. */
export interface MemjsModule {
  Client: unknown;
  Server: unknown;
  Utils: unknown;
}

/** One internal of memjs that the adapter relies on, and how to tell it is there. */
export interface MemjsInternal {
  /** e.g. `Server.prototype.sock`, `Server#username` (a field of a new Server), `Utils.…`. */
  name: string;
  /** What it must be, and what the adapter does with it. */
  expected: string;
  present(probe: Probe): boolean;
}

interface Probe {
  memjs: MemjsModule;
  /** A Server and a Client just constructed (that does not connect). */
  server: Record<string, unknown>;
  client: Record<string, unknown>;
}

type Exports = Record<string, unknown>;
const member = (owner: unknown, name: string): unknown => (owner as Exports | undefined)?.[name];
const prototypeOf = (probe: Probe, cls: 'Server' | 'Client'): unknown =>
  member(member(probe.memjs, cls), 'prototype');
const sourceOf = (fn: unknown): string =>
  typeof fn === 'function' ? Function.prototype.toString.call(fn) : '';

function method(cls: 'Server' | 'Client', name: string, use: string): MemjsInternal {
  return {
    name: `${cls}.prototype.${name}`,
    expected: `a function (${use})`,
    present: (p) => typeof member(prototypeOf(p, cls), name) === 'function',
  };
}

function field(
  cls: 'Server' | 'Client',
  path: string,
  kind: 'own' | 'number' | 'boolean' | 'array',
  use: string,
): MemjsInternal {
  const [name, sub] = path.split('.');
  return {
    name: `${cls}#${path}`,
    expected: `${kind === 'own' ? 'a field' : kind === 'array' ? 'an array' : `a ${kind}`} of a new ${cls} (${use})`,
    present: (p) => {
      const instance = cls === 'Server' ? p.server : p.client;
      if (kind === 'own') return Object.prototype.hasOwnProperty.call(instance, name);
      const value = sub === undefined ? instance[name] : member(instance[name], sub);
      return kind === 'array' ? Array.isArray(value) : typeof value === kind;
    },
  };
}

/** `Utils.makeRequestBuffer`: header (opaque at 12-15, CAS zeroed at 16-23), extras, key, value. */
function buildsRequests(p: Probe): boolean {
  const make = member(member(p.memjs, 'Utils'), 'makeRequestBuffer');
  if (typeof make !== 'function') return false;
  try {
    const b: unknown = make(0x1d, 'key', Buffer.from([1, 2, 3, 4]), 'val', 0x01020304);
    return (
      Buffer.isBuffer(b) &&
      b.length === 34 &&
      b[0] === 0x80 &&
      b[1] === 0x1d &&
      b.readUInt16BE(2) === 3 &&
      b[4] === 4 &&
      b.readUInt32BE(8) === 10 &&
      b.readUInt32BE(12) === 0x01020304 &&
      b.subarray(16, 24).equals(Buffer.alloc(8)) &&
      b.subarray(24).equals(Buffer.from([1, 2, 3, 4, ...Buffer.from('keyval')]))
    );
  } catch {
    return false;
  }
}

/** `Utils.parseMessage`: what `perform` calls back with has `header.status`, `header.cas`, `val`. */
function parsesResponses(p: Probe): boolean {
  const parse = member(member(p.memjs, 'Utils'), 'parseMessage');
  if (typeof parse !== 'function') return false;
  const response = Buffer.alloc(24 + 4 + 3);
  response[0] = 0x81;
  response[4] = 4; // extras length
  response.writeUInt16BE(0x0001, 6); // status
  response.writeUInt32BE(7, 8); // total body length
  Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]).copy(response, 16); // CAS
  Buffer.from('val').copy(response, 28);
  try {
    const parsed = parse(response) as Partial<MemjsResponse> | false;
    return (
      !!parsed &&
      parsed.header?.status === 1 &&
      Buffer.isBuffer(parsed.header.cas) &&
      parsed.header.cas.equals(response.subarray(16, 24)) &&
      Buffer.isBuffer(parsed.val) &&
      parsed.val.toString() === 'val'
    );
  } catch {
    return false;
  }
}

/**
 * Every memjs internal that memjs-adapter.ts relies on. A memjs release that renames or drops one of
 * them would make an adaptation silently do nothing (or worse, e.g. send the MEMCACHIER_*
 * credentials from the environment); {@link assertMemjsInternals} refuses to start instead.
 */
export const MEMJS_INTERNALS: readonly MemjsInternal[] = [
  method('Server', 'write', 'wrapped to cork the socket per batch'),
  method('Server', 'error', 'wrapped to drop queued logins; called at our deadline'),
  method('Server', 'sock', 'replaced for TLS'),
  method('Server', 'onConnect', 'queues requests while a TLS connection logs in'),
  method('Server', 'responseHandler', 'fed the data of the TLS socket'),
  method('Server', 'listSasl', 'starts the SASL login over TLS'),
  method('Server', 'emit', "emits 'authenticated' over TLS without SASL"),
  method('Server', 'once', "waits for 'authenticated' over TLS"),
  method('Server', 'removeAllListeners', "drops queued 'authenticated' listeners"),
  field('Server', 'username', 'own', 'overwritten: never the MEMCACHIER_* env credentials'),
  field('Server', 'password', 'own', 'overwritten: never the MEMCACHIER_* env credentials'),
  field('Server', 'connected', 'boolean', 'kept by the TLS connect'),
  field('Server', 'timeoutSet', 'boolean', 'kept by the TLS connect'),
  field('Server', 'connectCallbacks', 'array', 'run by the TLS connect'),
  field('Server', 'options.conntimeout', 'number', 'the TLS connect timeout'),
  field('Server', 'options.keepAlive', 'boolean', 'TCP keep-alive of the TLS socket'),
  field('Server', 'options.keepAliveDelay', 'number', 'TCP keep-alive of the TLS socket'),
  {
    name: 'Server#_socket',
    expected:
      'the connection socket, set by Server.prototype.sock and destroyed by ' +
      'Server.prototype.error (corked per batch, destroyed by close(), set by the TLS connect)',
    present: (p) =>
      /\b_socket\b/.test(sourceOf(member(prototypeOf(p, 'Server'), 'sock'))) &&
      /\b_socket\b/.test(sourceOf(member(prototypeOf(p, 'Server'), 'error'))),
  },
  {
    name: "Server 'authenticated' event",
    expected:
      'emitted by Server.prototype.responseHandler after the SASL login, awaited by ' +
      'Server.prototype.sock (queued requests wait on it)',
    present: (p) =>
      /['"]authenticated['"]/.test(sourceOf(member(prototypeOf(p, 'Server'), 'responseHandler'))) &&
      /['"]authenticated['"]/.test(sourceOf(member(prototypeOf(p, 'Server'), 'sock'))),
  },
  method('Client', 'perform', 'sends the commands memjs has no method for'),
  method('Client', 'incrSeq', 'numbers those requests'),
  field('Client', 'seq', 'number', 'the number of the request being sent'),
  {
    name: 'Utils.makeRequestBuffer',
    expected:
      'a function building a binary request: 24-byte header (opaque in bytes 12-15, CAS in ' +
      '16-23), then extras, key, value',
    present: buildsRequests,
  },
  {
    name: 'Utils.parseMessage',
    expected: 'a function parsing a binary response into { header: { status, cas }, val }',
    present: parsesResponses,
  },
];

/** The version in memjs's package.json, as installed next to this library. */
export function installedMemjsVersion(): string {
  try {
    // CommonJS (the published build) has `require`, resolving from here. Jest runs this file as an
    // ES module, without one: resolve from the working directory (the project) instead.
    const load =
      typeof require === 'function' ? require : createRequire(join(process.cwd(), 'index.js'));
    const { version } = load('memjs/package.json') as { version?: unknown };
    return typeof version === 'string' ? version : 'of unknown version';
  } catch {
    return 'of unknown version';
  }
}

/**
 * Checks that every internal in {@link MEMJS_INTERNALS} is there, with the expected kind, in
 * `memjs` (by default the memjs this library loads). Constructs one Server and one Client (neither
 * connects). Throws a {@link SessionCacheConfigError} naming the installed memjs version, what is
 * missing and the supported versions.
 */
export function assertMemjsInternals(
  memjs: MemjsModule = { Client, Server, Utils },
  version: () => string = installedMemjsVersion,
): void {
  let probe: Probe;
  try {
    const NewServer = memjs.Server as new (...args: unknown[]) => Record<string, unknown>;
    const NewClient = memjs.Client as new (...args: unknown[]) => Record<string, unknown>;
    const server = new NewServer('127.0.0.1', 11211, undefined, undefined, {
      timeout: 1,
      conntimeout: 1,
      keepAlive: false,
    });
    const client = new NewClient([server], { retries: 1, failover: false, logger: { log() {} } });
    probe = { memjs, server, client };
  } catch (err) {
    throw unsupported(version(), [`new Server(…) and new Client([server], …) (${String(err)})`], {
      cause: err,
    });
  }
  const missing = MEMJS_INTERNALS.filter((internal) => !internal.present(probe));
  if (missing.length > 0) {
    throw unsupported(
      version(),
      missing.map((m) => `${m.name}: ${m.expected}`),
    );
  }
}

function unsupported(
  version: string,
  missing: string[],
  options?: { cause?: unknown },
): SessionCacheConfigError {
  return new SessionCacheConfigError(
    `nestjs-session-cache cannot use the installed memjs ${version}: it adapts memjs through ` +
      `internals this version does not have as expected: ${missing.join('; ')}. Supported: memjs ` +
      `${SUPPORTED_MEMJS} (tested with ${TESTED_MEMJS}); install it with ` +
      `\`npm install memjs@${SUPPORTED_MEMJS}\`.`,
    options,
  );
}

let verified = false;

/**
 * {@link assertMemjsInternals} once per process: the first node created runs it; after it passed,
 * later nodes skip it (memjs does not change while the process runs). A failed check is run again.
 */
export function ensureMemjsInternals(): void {
  if (verified) return;
  assertMemjsInternals();
  verified = true;
}
