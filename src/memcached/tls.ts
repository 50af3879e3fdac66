import { isIP } from 'node:net';
import { connect, createSecureContext } from 'node:tls';
import type { ConnectionOptions, SecureContext } from 'node:tls';
import { inspect } from 'node:util';
import { isError, SessionCacheConfigError } from '../session-cache.errors';

/**
 * TLS settings of the memcached connections: Node's `tls.connect` options (`ca`, `cert`, `key`,
 * `servername`, `rejectUnauthorized`, `minVersion`…), without the address (it comes from the URL).
 */
export type SessionCacheTlsOptions = Omit<ConnectionOptions, 'host' | 'port' | 'path' | 'socket'>;

/** Options that say where to connect: they come from the URL, never from `tls`. */
const ADDRESS_OPTIONS = ['host', 'port', 'path', 'socket'] as const;
/** Secret material: it goes into the secure context once and is never kept or handed on. */
const SECRET_OPTIONS = ['key', 'pfx', 'passphrase'] as const;

/**
 * The resolved TLS settings of a cluster: one secure context (CA, client certificate and key
 * parsed once, when the options are resolved, so a broken PEM fails the configuration, not the
 * first request) and the per-connection options. It keeps no private key or passphrase, and
 * `util.inspect` / `JSON.stringify` show only a summary.
 */
export class MemcachedTls {
  readonly #context: SecureContext;
  readonly #connect: ConnectionOptions;
  readonly #summary: Record<string, unknown>;
  /** False only when `rejectUnauthorized: false` turned certificate verification off. */
  readonly verifies: boolean;

  constructor(options: true | SessionCacheTlsOptions = true) {
    const given: SessionCacheTlsOptions = options === true ? {} : options;
    if (typeof given !== 'object' || given === null || Array.isArray(given)) {
      throw new SessionCacheConfigError(
        `tls must be true or an object of tls.connect options (ca, cert, key, servername…), got ${
          Array.isArray(given) ? 'an array' : typeof given
        }.`,
      );
    }
    for (const name of ADDRESS_OPTIONS) {
      if (given[name as keyof SessionCacheTlsOptions] !== undefined) {
        throw new SessionCacheConfigError(
          `tls.${name} cannot be set: the servers come from the URL (memcacheds://host:port,…).`,
        );
      }
    }
    if ((given.cert === undefined) !== (given.key === undefined)) {
      throw new SessionCacheConfigError(
        'tls.cert and tls.key go together: give both (the client certificate and its private ' +
          'key, PEM) or neither.',
      );
    }
    for (const name of ['ca', 'cert', 'key'] as const) checkPem(name, given[name]);
    try {
      this.#context = createSecureContext(given);
    } catch (err) {
      const { code, reason } = err as { code?: unknown; reason?: unknown };
      throw new SessionCacheConfigError(
        `tls options cannot be used: ${typeof reason === 'string' ? reason : describe(err)}` +
          `${typeof code === 'string' ? ` (${code})` : ''}. Check tls.ca, tls.cert, tls.key ` +
          '(PEM; the key must belong to the certificate) and tls.passphrase.',
        { cause: err },
      );
    }
    const connectOptions: ConnectionOptions = { ...given };
    for (const name of SECRET_OPTIONS) delete connectOptions[name];
    this.#connect = connectOptions;
    this.verifies = given.rejectUnauthorized !== false;
    this.#summary = {
      ca: given.ca === undefined ? "Node's default CAs" : 'custom',
      clientCertificate: given.cert !== undefined || given.pfx !== undefined,
      ...(given.servername !== undefined ? { servername: given.servername } : {}),
      rejectUnauthorized: this.verifies,
    };
  }

  /**
   * TLS is on when the URL is `memcacheds://` or the `tls` option is `true` or an object; `tls:
   * false` with a `memcacheds://` URL is a contradiction and throws.
   */
  static resolve(
    fromUrl: boolean,
    option: boolean | SessionCacheTlsOptions | MemcachedTls | undefined,
  ): MemcachedTls | undefined {
    if (option instanceof MemcachedTls) return option;
    if (option === false) {
      if (fromUrl) {
        throw new SessionCacheConfigError(
          'The URL is memcacheds:// (TLS) but the tls option is false. Use memcached:// for a ' +
            'plaintext connection, or drop `tls: false`.',
        );
      }
      return undefined;
    }
    if (option === undefined) return fromUrl ? new MemcachedTls(true) : undefined;
    return new MemcachedTls(option);
  }

  /**
   * The `tls.connect` options of one server. The server name checked against its certificate
   * (and sent as SNI) is `servername` when given, else the host when it is a name; for an IP
   * address no SNI is sent (Node does not send it for IPs) and the address is checked against the
   * certificate's IP subjectAltName entries.
   */
  connectOptions(host: string, port: number): ConnectionOptions {
    return {
      ...this.#connect,
      secureContext: this.#context,
      host,
      port,
      servername: this.#connect.servername ?? (isIP(host) === 0 ? host : undefined),
    };
  }

  toJSON(): Record<string, unknown> {
    return { ...this.#summary };
  }

  [inspect.custom](): string {
    return `MemcachedTls ${inspect(this.#summary)}`;
  }
}

/** A path where PEM text belongs gives an empty trust store or an OpenSSL riddle: say it plainly. */
function checkPem(name: string, value: unknown): void {
  if (value === undefined) return;
  for (const item of Array.isArray(value) ? value : [value]) {
    const pem =
      typeof item === 'string'
        ? item
        : Buffer.isBuffer(item)
          ? item.toString('latin1')
          : typeof item === 'object' && item !== null && 'pem' in item
            ? (item as { pem: unknown }).pem
            : undefined;
    const text = Buffer.isBuffer(pem) ? pem.toString('latin1') : pem;
    if (typeof text !== 'string' || !text.includes('-----BEGIN ')) {
      throw new SessionCacheConfigError(
        `tls.${name} must be PEM text (or a Buffer of it), starting with "-----BEGIN"; ` +
          'to use a file, pass its contents, e.g. readFileSync(path).',
      );
    }
  }
}

/** X.509 verification codes Node reports for a server certificate it does not accept. */
const UNTRUSTED = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_UNTRUSTED',
  'INVALID_CA',
]);
const NOT_NOW = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const OTHER_CERTIFICATE = new Set([
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_REJECTED',
]);
/** What OpenSSL reports when the peer's bytes are not TLS records (a plaintext port). */
const NOT_TLS = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_RECORD_LAYER_FAILURE',
  'ERR_SSL_HTTP_REQUEST',
]);
/** Alerts of a server that checks client certificates (ssl_verify_mode) and refused ours. */
const CLIENT_CERTIFICATE_ALERT =
  /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED|DECRYPT_ERROR)$/;

/**
 * When `err` is a TLS failure that configuration causes (certificate not trusted or not valid for
 * the name, client certificate refused, TLS against a plaintext port…), what failed and what to do;
 * otherwise (connection refused or reset, timeouts: outages) undefined.
 */
export function describeTlsFailure(err: unknown): string | undefined {
  if (!isError(err)) return undefined;
  const { code, reason } = err as { code?: unknown; reason?: unknown };
  if (typeof code !== 'string') return undefined;
  const detail = typeof reason === 'string' && reason ? reason : describe(err);
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') {
    return (
      `its certificate is not valid for the name we connect to (${detail}). Connect with a host ` +
      'name or IP address its subjectAltName lists, or set `tls.servername` to one of its names.'
    );
  }
  if (UNTRUSTED.has(code)) {
    return (
      `its certificate is not trusted (${detail}, ${code}). Give the certificate of the CA that ` +
      'signed it (PEM) in the `tls.ca` option.'
    );
  }
  if (NOT_NOW.has(code)) {
    return `its certificate is not valid now (${detail}, ${code}). Renew it (memcached's ssl_chain_cert).`;
  }
  if (OTHER_CERTIFICATE.has(code)) return `its certificate was rejected (${detail}, ${code}).`;
  if (NOT_TLS.has(code)) {
    return (
      `it does not answer in TLS (${detail}): this looks like a plaintext port. Point the URL at ` +
      "memcached's TLS port (memcached -Z -o ssl_chain_cert=…,ssl_key=…), or use memcached:// " +
      'for a plaintext connection.'
    );
  }
  if (!code.startsWith('ERR_SSL_') && !code.startsWith('ERR_TLS_')) return undefined;
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return undefined; // an outage, not a configuration
  if (CLIENT_CERTIFICATE_ALERT.test(code)) {
    return (
      `it refused our TLS connection (${detail}): it checks client certificates ` +
      '(ssl_verify_mode). Give `tls.cert` and `tls.key`: a certificate signed by a CA in its ' +
      'ssl_ca_cert, and its private key.'
    );
  }
  if (/ALERT_HANDSHAKE_FAILURE$/.test(code)) {
    return (
      `it refused the TLS handshake (${detail}): it requires a client certificate (give ` +
      '`tls.cert` and `tls.key`), or we share no TLS version or cipher (`tls.minVersion`, ' +
      "`tls.ciphers`; memcached's ssl_min_version, ssl_ciphers)."
    );
  }
  return `the TLS handshake failed (${detail}, ${code}).`;
}

/**
 * Whether the server at `host:port` speaks TLS: one handshake without certificate checks and
 * without sending any data, within `timeoutMs`. For start-up: it tells a plaintext URL pointed at a
 * TLS-only port (memcached resets the connection) from an outage.
 */
export function speaksTls(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({
      host,
      port,
      rejectUnauthorized: false,
      servername: isIP(host) === 0 ? host : undefined,
    });
    const done = (yes: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(yes);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('secureConnect', () => done(true));
    // An alert is TLS too (e.g. a server that requires client certificates, on TLS 1.2).
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(/^ERR_SSL_.*ALERT/.test(err.code ?? '')),
    );
    socket.once('close', () => done(false));
  });
}

function describe(err: unknown): string {
  return isError(err) && err.message ? err.message.trim().replace(/\.$/, '') : String(err);
}
