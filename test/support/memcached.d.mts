export declare function findMemcachedBinary(): string | null;
export declare function findSaslpasswd2(): string | null;
/** The error message of {@link MemcachedProcess.start} when saslpasswd2 is missing. */
export declare const SASL_INSTALL_HINT: string;
export declare function freePort(): Promise<number>;
export declare function rawCommand(
  port: number,
  command: string,
  options?: { until?: RegExp; host?: string },
): Promise<string>;
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
}
export declare class MemcachedProcess {
  readonly port: number;
  readonly host: string;
  static start(options?: MemcachedStartOptions): Promise<MemcachedProcess>;
  get url(): string;
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
