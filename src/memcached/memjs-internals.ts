import type { TLSSocket } from 'node:tls';

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
