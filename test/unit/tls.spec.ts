import { inspect } from 'node:util';
import {
  MemcachedTls,
  SessionCache,
  SessionCacheConfigError,
  SessionCacheModule,
  type SessionCacheTlsOptions,
} from '../../src';
import { describeTlsFailure } from '../../src/memcached/tls';
import { makeTestCertificates } from '../support/certificates.mjs';
import type { TestCertificates } from '../support/certificates.mjs';

/** An error as Node's tls module reports it. */
function tlsError(code: string, message: string, reason?: string): Error {
  return Object.assign(new Error(message), { code, ...(reason ? { reason } : {}) });
}

describe('MemcachedTls (the tls option)', () => {
  let pki: TestCertificates;
  beforeAll(() => {
    pki = makeTestCertificates();
  });
  afterAll(() => pki?.remove());

  /** The lines of a private key's body: none may show in anything printed. */
  const keyLines = () => pki.client.key.split('\n').filter((l) => l && !l.startsWith('-----'));

  it('sends the host as SNI when it is a name, nothing for IP addresses, and servername when given', () => {
    const tls = new MemcachedTls({ ca: pki.ca.cert });
    expect(tls.connectOptions('cache.internal', 11212)).toMatchObject({
      host: 'cache.internal',
      port: 11212,
      servername: 'cache.internal',
    });
    expect(tls.connectOptions('10.0.0.5', 1).servername).toBeUndefined();
    expect(tls.connectOptions('::1', 1).servername).toBeUndefined();
    const named = new MemcachedTls({ servername: 'memcached.example' });
    expect(named.connectOptions('10.0.0.5', 1).servername).toBe('memcached.example');
    expect(tls.connectOptions('h', 1).secureContext).toBeDefined();
    expect(tls.verifies).toBe(true);
    expect(new MemcachedTls({ rejectUnauthorized: false }).verifies).toBe(false);
  });

  it('keeps no private key: not in the connect options, inspect or JSON', () => {
    const tls = new MemcachedTls({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
    const options = tls.connectOptions('h', 1);
    expect(options.key).toBeUndefined();
    expect(options.passphrase).toBeUndefined();
    const shown = [
      inspect(tls, { depth: 10, showHidden: true }),
      JSON.stringify(tls),
      inspect(options, { depth: 10 }),
    ];
    for (const text of shown) for (const line of keyLines()) expect(text).not.toContain(line);
    expect(inspect(tls)).toBe(
      "MemcachedTls { ca: 'custom', clientCertificate: true, rejectUnauthorized: true }",
    );
    expect(JSON.parse(JSON.stringify(new MemcachedTls(true)))).toEqual({
      ca: "Node's default CAs",
      clientCertificate: false,
      rejectUnauthorized: true,
    });
  });

  it.each<[string, () => unknown, RegExp]>([
    ['not an object', () => 'yes', /tls must be true or an object .* got string/],
    ['an array', () => [], /got an array/],
    ['host', () => ({ host: 'h' }), /tls.host cannot be set: the servers come from the URL/],
    ['port', () => ({ port: 1 }), /tls.port cannot be set/],
    ['a key without a certificate', () => ({ key: pki.client.key }), /tls.cert and tls.key go/],
    ['a certificate without a key', () => ({ cert: pki.client.cert }), /go together/],
    ['a file path as ca', () => ({ ca: pki.ca.certFile }), /tls.ca must be PEM text/],
    ['a file path as key', () => ({ cert: pki.client.cert, key: pki.client.keyFile }), /tls.key/],
    [
      'a key that does not belong to the certificate',
      () => ({ cert: pki.client.cert, key: pki.server.key }),
      /tls options cannot be used: key values mismatch \(ERR_OSSL_X509_KEY_VALUES_MISMATCH\)/,
    ],
    [
      'a broken key',
      () => ({ cert: pki.client.cert, key: pki.client.key.replace(/\n[A-Za-z0-9+/]{8}/, '\n') }),
      /tls options cannot be used: /,
    ],
  ])('refuses %s with a SessionCacheConfigError that shows no key', (_, options, message) => {
    let error: unknown;
    try {
      new MemcachedTls(options() as SessionCacheTlsOptions);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SessionCacheConfigError);
    expect((error as Error).message).toMatch(message);
    const shown = inspect(error, { depth: 10 });
    for (const line of keyLines()) expect(shown).not.toContain(line);
    for (const line of pki.server.key.split('\n').slice(1, -2)) expect(shown).not.toContain(line);
  });

  it('memcacheds:// turns TLS on; the tls option alone too; tls: false with memcacheds:// is an error', () => {
    expect(MemcachedTls.resolve(true, undefined)).toBeInstanceOf(MemcachedTls);
    expect(MemcachedTls.resolve(false, undefined)).toBeUndefined();
    expect(MemcachedTls.resolve(false, false)).toBeUndefined();
    expect(MemcachedTls.resolve(false, { ca: pki.ca.cert })).toBeInstanceOf(MemcachedTls);
    const given = new MemcachedTls(true);
    expect(MemcachedTls.resolve(true, given)).toBe(given);
    expect(() => MemcachedTls.resolve(true, false)).toThrow(
      'The URL is memcacheds:// (TLS) but the tls option is false.',
    );
    const client = SessionCache.fromUrl('memcacheds://127.0.0.1:1');
    expect(client.tls).toBeInstanceOf(MemcachedTls);
    expect(client.nodes[0].tls).toBe(true);
    expect(SessionCache.fromUrl('memcached://127.0.0.1:1').tls).toBeUndefined();
    void client.close();
  });

  it('forRoot checks the tls option when the module is defined', () => {
    expect(() =>
      SessionCacheModule.forRoot('memcacheds://127.0.0.1:1', {
        session: { secret: 's' },
        tls: { ca: '/etc/ssl/ca.pem' },
      }),
    ).toThrow(/tls.ca must be PEM text/);
    expect(() =>
      SessionCacheModule.forRoot('memcacheds://127.0.0.1:1', {
        session: { secret: 's' },
        tls: false,
      }),
    ).toThrow(SessionCacheConfigError);
  });
});

describe('describeTlsFailure', () => {
  it.each<[string, Error, RegExp | undefined]>([
    [
      'an unknown CA',
      tlsError('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unable to verify the first certificate'),
      /^its certificate is not trusted \(unable to verify the first certificate, UNABLE_TO_VERIFY_LEAF_SIGNATURE\)\. Give .* `tls.ca`/,
    ],
    [
      'a self-signed certificate',
      tlsError('DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'),
      /^its certificate is not trusted/,
    ],
    [
      'a wrong name',
      tlsError(
        'ERR_TLS_CERT_ALTNAME_INVALID',
        'Hostname/IP does not match',
        'Host: a. is not in …',
      ),
      /^its certificate is not valid for the name we connect to \(Host: a\. is not in …\)\. .*`tls.servername`/,
    ],
    [
      'an expired certificate',
      tlsError('CERT_HAS_EXPIRED', 'certificate has expired'),
      /^its certificate is not valid now \(certificate has expired, CERT_HAS_EXPIRED\)/,
    ],
    [
      'a plaintext port',
      tlsError('ERR_SSL_WRONG_VERSION_NUMBER', '80…:error:0A00010B:…', 'wrong version number'),
      /^it does not answer in TLS \(wrong version number\): this looks like a plaintext port/,
    ],
    [
      'a refused client certificate',
      tlsError('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', '…', 'tlsv1 alert unknown ca'),
      /^it refused our TLS connection \(tlsv1 alert unknown ca\): it checks client certificates/,
    ],
    [
      'a handshake failure',
      tlsError('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', '…', 'sslv3 alert handshake failure'),
      /^it refused the TLS handshake \(sslv3 alert handshake failure\): it requires a client certificate/,
    ],
    [
      'another TLS error',
      tlsError('ERR_SSL_NO_PROTOCOLS_AVAILABLE', '…', 'no protocols available'),
      /^the TLS handshake failed \(no protocols available, ERR_SSL_NO_PROTOCOLS_AVAILABLE\)\.$/,
    ],
    [
      'a refused connection (an outage)',
      tlsError('ECONNREFUSED', 'connect ECONNREFUSED'),
      undefined,
    ],
    ['a reset (an outage)', tlsError('ECONNRESET', 'read ECONNRESET'), undefined],
    ['a handshake timeout', tlsError('ERR_TLS_HANDSHAKE_TIMEOUT', 'timeout'), undefined],
  ])('%s', (_, err, expected) => {
    const reason = describeTlsFailure(err);
    if (expected === undefined) expect(reason).toBeUndefined();
    else expect(reason).toMatch(expected);
  });

  it('ignores what is not an error with a code', () => {
    expect(describeTlsFailure('Memcached server authentication failed!')).toBeUndefined();
    expect(describeTlsFailure(new Error('no code'))).toBeUndefined();
  });
});
