import type { ConnectionOptions } from 'node:tls';

export declare function findMemcachedBinary(): string | null;
export declare function findSaslpasswd2(): string | null;
/** The error message of {@link MemcachedProcess.start} when saslpasswd2 is missing. */
export declare const SASL_INSTALL_HINT: string;
export declare function freePort(): Promise<number>;
export declare function rawCommand(
  port: number,
  command: string,
  /** `tls`: speak TLS with these tls.connect options (a memcached -Z). */
  options?: { until?: RegExp; host?: string; tls?: ConnectionOptions },
): Promise<string>;
/** The `tls` option of {@link MemcachedProcess.start} (see makeTestCertificates().memcachedTls()). */
export interface MemcachedTlsStartOptions {
  /** Server certificate chain and its key, PEM files (memcached -o ssl_chain_cert, ssl_key). */
  certFile: string;
  keyFile: string;
  /** Require client certificates signed by this CA (PEM file; ssl_ca_cert). */
  clientCaFile?: string;
  /** memcached's ssl_verify_mode (default 2 with clientCaFile: a client certificate is required). */
  verifyMode?: 1 | 2 | 3;
  /** What the helper's own connections use, e.g. { ca } or { ca, cert, key }. */
  connect: ConnectionOptions;
}
export interface MemcachedStartOptions {
  /** Listen address. Default 127.0.0.1. */
  host?: string;
  memoryMb?: number;
  maxItemSize?: string;
  args?: string[];
  env?: Record<string, string>;
  /**
   * Runs memcached -S with a temporary sasldb (made with saslpasswd2) holding this one user; it is
   * ready once that user can log in. Such a process speaks only the binary protocol: `stats()`
   * logs in over it, the text-protocol helpers (flush, clients, ttl, getRaw, setRaw) reject. The
   * SASL files are removed by stop() and kill() (restart() makes them anew).
   */
  sasl?: { username: string; password: string };
  /**
   * Runs memcached -Z (TLS only) with this certificate; `url` is then memcacheds://… and the
   * helpers (stats, flush, getRaw…) speak TLS. Ready once the helper gets an answer over TLS (with
   * `sasl`: once its user can log in over TLS).
   */
  tls?: MemcachedTlsStartOptions;
}
export declare class MemcachedProcess {
  readonly port: number;
  readonly host: string;
  static start(options?: MemcachedStartOptions): Promise<MemcachedProcess>;
  /** `memcached://host:port`, or `memcacheds://host:port` for a memcached -Z. */
  get url(): string;
  /** Whether this is a memcached -Z (TLS only). */
  get tls(): boolean;
  get address(): string;
  get running(): boolean;
  /** Calls `listener(reason)` whenever memcached exits without stop(), kill() or restart(). */
  onCrash(listener: (reason: string) => void): void;
  get pid(): number | undefined;
  /** The SASL user name of a memcached -S, or undefined. */
  get saslUser(): string | undefined;
  /** `url` with the SASL user and password, percent-encoded (just `url` without SASL). */
  get urlWithCredentials(): string;
  stop(): Promise<void>;
  kill(): Promise<void>;
  restart(): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  flush(): Promise<void>;
  stats(): Promise<Record<string, string>>;
  clients(): Promise<string[]>;
  ttl(key: string): Promise<number | null>;
  getRaw(key: string): Promise<Buffer | null>;
  setRaw(key: string, value: string | Buffer, exptime?: number): Promise<void>;
}
export declare function startMemcachedCluster(
  count: number,
  options?: MemcachedStartOptions,
): Promise<MemcachedProcess[]>;
