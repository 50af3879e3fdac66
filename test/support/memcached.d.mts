export declare function findMemcachedBinary(): string | null;
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
}
export declare class MemcachedProcess {
  readonly port: number;
  readonly host: string;
  static start(options?: MemcachedStartOptions): Promise<MemcachedProcess>;
  get url(): string;
  get address(): string;
  get running(): boolean;
  get pid(): number | undefined;
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
