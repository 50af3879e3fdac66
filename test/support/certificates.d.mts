import type { MemcachedTlsStartOptions } from './memcached.mjs';

/** The error message of {@link makeTestCertificates} when openssl is missing. */
export declare const OPENSSL_INSTALL_HINT: string;
export declare function findOpenssl(): string | null;

/** A certificate and its key: paths (for memcached's -o ssl_*) and PEM text (for Node). */
export interface TestCertificate {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

export interface TestCertificates {
  dir: string;
  ca: TestCertificate;
  /** For IP 127.0.0.1 and DNS localhost, signed by `ca`. */
  server: TestCertificate;
  /** A client certificate signed by `ca`. */
  client: TestCertificate;
  /** An unrelated self-signed CA. */
  otherCa: TestCertificate;
  /** A client certificate signed by `otherCa`. */
  otherClient: TestCertificate;
  /** The `tls` option of MemcachedProcess.start(); `mutual` requires client certificates of `ca`. */
  memcachedTls(options?: { mutual?: boolean }): MemcachedTlsStartOptions;
  remove(): void;
}

/** Makes the test PKI with openssl in a temporary directory (remove() deletes it). */
export declare function makeTestCertificates(): TestCertificates;
