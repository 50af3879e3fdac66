import { Client, Server, Utils } from 'memjs';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { isError } from '../session-cache.errors';
import { toMemcachedExpiry } from './expiry';
import { ensureMemjsInternals } from './memjs-internals';
import type { MemjsClientInternals, MemjsResponse, MemjsServerInternals } from './memjs-internals';
import type { MemcachedCredentials } from './url';

/*
 * Everything this library does to memjs beyond its public API is in this file: each adaptation
 * below says which memjs (1.3.2) behaviour it fixes. The internals they rely on are listed, and
 * checked when the first connection is made, in memjs-internals.ts.
 */

export type Callback<T> = (err: Error | null, value: T) => void;

/** A value as memcached holds it, with its CAS token (which any write of the key changes). */
export interface CasValue {
  value: Buffer;
  cas: Buffer;
}

export interface MemjsConnectionOptions {
  /** memjs's own request and connect timeouts, in seconds. */
  timeoutSeconds: number;
  keepAlive: boolean;
  /** Exactly these SASL credentials, or no login at all (see {@link useExactCredentials}). */
  credentials?: MemcachedCredentials;
  /** Connect over TLS with these `tls.connect` options (else plaintext TCP). */
  tls?: ConnectionOptions;
  /** Where memjs's own log lines go (but those {@link filterLog} drops). */
  logger?: { warn(message: string): void };
}

/** Binary-protocol opcodes memjs has no method for (or none that shows the CAS). */
const OP_GET = 0x00;
const OP_ADD = 0x02;
const OP_REPLACE = 0x03;
const OP_DELETE = 0x04;
const OP_VERSION = 0x0b;
const OP_GAT = 0x1d;
/** Binary-protocol response statuses. */
const STATUS_OK = 0x00;
const STATUS_NOT_FOUND = 0x01;
const STATUS_EXISTS = 0x02;
const STATUS_NOT_STORED = 0x05;

const STATUS_NAMES: Record<number, string> = {
  [STATUS_NOT_FOUND]: 'Key not found',
  [STATUS_EXISTS]: 'Key exists',
  [STATUS_NOT_STORED]: 'Item not stored',
};

/**
 * One memcached server's memjs connection (a memjs Server in a Client of its own), adapted. Its
 * public commands are memjs's (`client`); the commands memjs lacks are methods here.
 */
export class MemjsConnection {
  /** memjs's public commands: get, set, add, replace, delete, touch, append, stats. */
  readonly client: Client;
  readonly #server: MemjsServerInternals;
  readonly #client: MemjsClientInternals;
  readonly #handshaking: () => boolean;

  constructor(host: string, port: number, options: MemjsConnectionOptions) {
    ensureMemjsInternals();
    const seconds = options.timeoutSeconds;
    const server = new Server(
      host,
      port,
      options.credentials?.username,
      options.credentials?.password,
      { timeout: seconds, conntimeout: seconds, keepAlive: options.keepAlive },
    );
    this.#server = server as unknown as MemjsServerInternals;
    useExactCredentials(this.#server, options.credentials);
    forgetUnsentOnError(this.#server);
    coalesceWrites(this.#server);
    this.#handshaking = options.tls ? connectOverTls(this.#server, options.tls) : () => false;
    this.client = new Client([server], {
      // memjs counts attempts here (1 = no retry); a retry would not fit the caller's time budget.
      retries: 1,
      failover: false,
      logger: { log: filterLog(options.logger) },
    });
    this.#client = this.client as unknown as MemjsClientInternals;
  }

  /** With TLS: whether the current connection is still in its TLS handshake. */
  get handshaking(): boolean {
    return this.#handshaking();
  }

  /** `get` with the value's CAS token; null when the key is missing. */
  gets(key: string, cb: Callback<CasValue | null>): void {
    this.#perform(OP_GET, key, '', '', undefined, (err, response) => {
      if (err) return cb(err, null);
      const status = response!.header.status;
      if (status === STATUS_NOT_FOUND) return cb(null, null);
      if (status !== STATUS_OK) return cb(refused('GET', status), null);
      cb(null, { value: response!.val, cas: Buffer.from(response!.header.cas) });
    });
  }

  /**
   * `add` or `replace` (with `cas`: only while the key holds the value of that CAS token) that
   * answers the new CAS token, or null when it was not stored.
   */
  storeCas(
    operation: 'add' | 'replace',
    key: string,
    value: Buffer,
    ttl: number,
    cas: Buffer | undefined,
    cb: Callback<Buffer | null>,
  ): void {
    const extras = Buffer.concat([Buffer.alloc(4), expirationExtras(ttl)]); // flags, expiration
    const opcode = operation === 'add' ? OP_ADD : OP_REPLACE;
    this.#perform(opcode, key, extras, value, cas, (err, response) => {
      if (err) return cb(err, null);
      const status = response!.header.status;
      if (status === STATUS_OK) return cb(null, Buffer.from(response!.header.cas));
      if (status === STATUS_EXISTS || status === STATUS_NOT_FOUND || status === STATUS_NOT_STORED)
        return cb(null, null);
      cb(refused(operation.toUpperCase(), status), null);
    });
  }

  /** `delete` that applies only while the key holds the value whose CAS token is `cas`. */
  deleteIfCas(key: string, cas: Buffer, cb: Callback<boolean>): void {
    this.#perform(OP_DELETE, key, '', '', cas, (err, response) => {
      if (err) return cb(err, false);
      const status = response!.header.status;
      if (status === STATUS_OK) return cb(null, true);
      if (status === STATUS_EXISTS || status === STATUS_NOT_FOUND) return cb(null, false);
      cb(refused('DELETE', status), false);
    });
  }

  /** Get-and-touch: the value the new TTL applied to, or null when the key is missing. */
  getAndTouch(key: string, ttl: number, cb: Callback<Buffer | null>): void {
    this.#perform(OP_GAT, key, expirationExtras(ttl), '', undefined, (err, response) => {
      if (err) return cb(err, null);
      const status = response!.header.status;
      if (status === STATUS_NOT_FOUND) return cb(null, null);
      if (status !== STATUS_OK) return cb(refused('GAT', status), null);
      cb(null, response!.val);
    });
  }

  /** memcached's `version`. */
  version(cb: Callback<string>): void {
    this.#perform(OP_VERSION, '', '', '', undefined, (err, response) =>
      cb(err, response?.val?.toString() ?? ''),
    );
  }

  /**
   * Sends one binary-protocol request through memjs's connection, numbered like memjs's own
   * (`incrSeq`, `seq`) so the answers of both are matched right. `Utils.makeRequestBuffer` has no
   * CAS parameter: the token goes into bytes 16-23 of the header it built.
   */
  #perform(
    opcode: number,
    key: string,
    extras: Buffer | string,
    value: Buffer | string,
    cas: Buffer | undefined,
    callback: (err: Error | null, response?: MemjsResponse) => void,
  ): void {
    const client = this.#client;
    client.incrSeq();
    const request = Utils.makeRequestBuffer(opcode, key, extras, value, client.seq);
    if (cas) cas.copy(request, 16, 0, 8);
    client.perform(key, request, client.seq, (err, response) => callback(err, response));
  }

  /**
   * Drops the connection (memjs's `Server.error`): memjs fails every request still queued on it
   * with `reason` and destroys the socket, so a hung server cannot stall the calls after this one.
   * memjs's own request timeout (a backstop here) does the same.
   */
  drop(reason: Error): void {
    this.#server.error(reason);
  }

  /**
   * Closes the connection. memjs's close() only ends the socket, which waits for the peer: a hung
   * server never answers, and the socket would keep the process alive. Destroy it.
   */
  close(): void {
    this.client.close();
    this.#server._socket?.destroy();
  }
}

/**
 * memjs reports a refused SASL login (wrong user or password, or no credentials for a server that
 * runs with -S) as the bare string "Memcached server authentication failed!".
 */
export function isAuthFailure(err: unknown): boolean {
  const message =
    typeof err === 'string'
      ? err
      : isError(err) && typeof err.message === 'string'
        ? err.message
        : '';
  return /authentication (failed|error)/i.test(message);
}

/**
 * memjs reports a command the server refused (e.g. "Value too large") as an Error whose message
 * starts with "MemJS <OP>:" (so does {@link refused}); connection problems are socket errors or
 * plain strings.
 */
export function isRefusal(err: unknown): err is Error {
  return err instanceof Error && /^MemJS [A-Z]+:/.test(err.message);
}

/** A refused command, worded as memjs words its own ("MemJS <OP>: …"). */
function refused(name: string, status: number): Error {
  return new Error(`MemJS ${name}: ${STATUS_NAMES[status] ?? `status 0x${status.toString(16)}`}`);
}

/** The 4-byte expiration extras of touch and get-and-touch (and the second half of a store's). */
function expirationExtras(ttl: number): Buffer {
  const extras = Buffer.alloc(4);
  extras.writeUInt32BE(toMemcachedExpiry(ttl), 0);
  return extras;
}

/**
 * memjs logs every failed call ("MemJS: Server <…> failed after (1) retries with error - …"):
 * under load on a dead node that floods the log. The node reports those itself, once per state
 * change (nodeDown/nodeUp, SessionCacheAuthError) and per call as the operationFailed event.
 * Other memjs messages go to `logger.warn`.
 */
function filterLog(logger: { warn(message: string): void } | undefined) {
  return (...args: unknown[]): void => {
    const message = args.map(String).join(' ');
    if (!/^MemJS: Server <.*> failed after/.test(message)) logger?.warn(message);
  };
}

/**
 * Without credentials memjs falls back to MEMCACHIER_USERNAME / MEMCACHE_USERNAME (and the
 * matching *_PASSWORD) from the environment. Those belong to some other cache: never send them to
 * the session servers. Exactly the configured credentials, or none.
 */
function useExactCredentials(
  server: MemjsServerInternals,
  credentials: MemcachedCredentials | undefined,
): void {
  server.username = credentials?.username;
  server.password = credentials?.password;
}

/**
 * memjs writes every request to the socket at once. Requests issued while the event loop handles
 * one batch of I/O (many HTTP requests at once) go out in one socket write instead: the socket is
 * corked at the first write of a batch and uncorked when the batch is done (setImmediate runs
 * right after the I/O phase). Fewer syscalls and packets, on the app and on memcached.
 */
function coalesceWrites(server: MemjsServerInternals): void {
  const write = server.write.bind(server);
  let corked: { uncork(): void } | null = null;
  server.write = (blob: Buffer) => {
    const socket = server._socket;
    if (socket && socket.writable && corked === null) {
      socket.cork();
      corked = socket;
      setImmediate(() => {
        const s = corked;
        corked = null;
        s?.uncork();
      });
    }
    write(blob);
  };
}

/**
 * memjs queues a request on a new connection behind its SASL login ('authenticated'). When that
 * connection fails before the login completes, memjs fails the request but keeps the listener, so
 * the next successful login would send it after all, possibly minutes later and over newer data.
 * Drop those listeners whenever memjs drops a connection.
 */
function forgetUnsentOnError(server: MemjsServerInternals): void {
  const error = server.error.bind(server);
  server.error = (err: Error) => {
    server.removeAllListeners('authenticated');
    error(err);
  };
}

/**
 * TLS for memjs, which has none (memjs issue #169). memjs opens its connection in one place,
 * `Server.prototype.sock(sasl, go)`: when there is no `_socket` it calls `net.connect(port, host,
 * onConnect)`, and `onConnect` feeds 'data' to `responseHandler`, starts the SASL login
 * (`listSasl`) or emits 'authenticated' at once, and on 'authenticated' marks the server
 * `connected` and runs `go` and the queued `connectCallbacks`; while connecting, requests queue
 * with `onConnect(go)` (SASL writes go straight out), and once connected `go(_socket)` runs at once.
 * This replaces that method, for this server only, with the same steps over `tls.connect`, where
 * `onConnect` waits for 'secureConnect' (handshake done, certificate and name verified).
 * Everything else is memjs's own: `write` and its request timeouts, `error` (fails the waiting
 * calls and destroys `_socket`), `close`. {@link MemjsConnection.drop}, `close()` and
 * {@link coalesceWrites} work on the TLS socket as on a TCP one. Two deliberate differences from
 * memjs's copy: a socket that closes clears `_socket` only if it is still the current one (memjs
 * clears whatever socket is current, which can orphan a newer connection), and a connection timeout
 * destroys the socket instead of ending it politely. Returns whether the current connection is
 * still in its TLS handshake.
 */
function connectOverTls(memjs: MemjsServerInternals, options: ConnectionOptions): () => boolean {
  let handshaking: TLSSocket | null = null;
  memjs.sock = (sasl, go) => {
    const current = memjs._socket;
    if (current) {
      if (!memjs.connected && !sasl) memjs.onConnect(go);
      else go(current);
      return;
    }
    memjs.connected = false;
    const socket = tlsConnect(options, () => {
      handshaking = null;
      memjs.once('authenticated', () => {
        if (memjs._socket !== socket) return;
        memjs.connected = true;
        socket.setTimeout(0);
        memjs.timeoutSet = false;
        go(socket);
        const queued = memjs.connectCallbacks;
        memjs.connectCallbacks = [];
        for (const cb of queued) cb(socket);
      });
      socket.on('data', (data: Buffer) => memjs.responseHandler(data));
      if (memjs.username && memjs.password) memjs.listSasl();
      else memjs.emit('authenticated');
    });
    handshaking = socket;
    memjs._socket = socket;
    socket.on('error', (err) => memjs.error(err));
    socket.on('close', () => {
      if (handshaking === socket) handshaking = null;
      if (memjs._socket !== socket) return;
      memjs.connected = false;
      memjs.timeoutSet = false;
      memjs._socket = undefined;
    });
    memjs.timeoutSet = true;
    socket.setTimeout(memjs.options.conntimeout * 1000, () => {
      memjs.timeoutSet = false;
      if (memjs.connected || memjs._socket !== socket) return;
      memjs.error(new Error('socket timed out connecting to server.'));
    });
    socket.setKeepAlive(memjs.options.keepAlive, memjs.options.keepAliveDelay * 1000);
  };
  return () => handshaking !== null && handshaking === memjs._socket;
}
