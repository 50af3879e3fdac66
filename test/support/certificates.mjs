// A throw-away PKI for the TLS tests, made with the openssl command line into a temporary directory:
// a CA; a server certificate for IP 127.0.0.1 and DNS localhost; a client certificate; and a second,
// unrelated CA with a client certificate of its own (for "wrong CA" cases). EC P-256 keys: the five
// commands take a few tens of milliseconds. Make it once per test file and remove() it afterwards.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const OPENSSL_INSTALL_HINT =
  'openssl is not installed; the TLS tests need it to make their certificates. On Debian/Ubuntu: ' +
  'sudo apt-get update && sudo apt-get install -y openssl (or set OPENSSL_BIN to its path).';

/** Path of the openssl binary, or null when there is none. */
export function findOpenssl() {
  for (const bin of [process.env.OPENSSL_BIN, 'openssl', '/usr/bin/openssl']) {
    if (!bin) continue;
    const probe = spawnSync(bin, ['version'], { stdio: 'ignore' });
    if (!probe.error && probe.status === 0) return bin;
  }
  return null;
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const LEAF = ['-addext', 'basicConstraints=critical,CA:FALSE'];

/**
 * Makes the certificates. Each entry has `certFile`/`keyFile` (paths, for memcached's -o ssl_*)
 * and `cert`/`key` (PEM text, for Node's tls options).
 */
export function makeTestCertificates() {
  const bin = findOpenssl();
  if (!bin) throw new Error(OPENSSL_INSTALL_HINT);
  const dir = mkdtempSync(join(tmpdir(), 'session-cache-tls-'));
  const run = (args) => {
    const result = spawnSync(bin, args, { cwd: dir, encoding: 'utf8' });
    if (result.error || result.status !== 0) {
      throw new Error(
        `openssl ${args.slice(0, 2).join(' ')} failed (exit ${result.status}): ` +
          `${result.error?.message ?? result.stderr.trim()}`,
      );
    }
  };
  const entry = (name) => {
    const certFile = join(dir, `${name}.pem`);
    const keyFile = join(dir, `${name}.key`);
    return {
      certFile,
      keyFile,
      cert: readFileSync(certFile, 'utf8'),
      key: readFileSync(keyFile, 'utf8'),
    };
  };
  const ca = (name, cn) =>
    run([
      'req',
      '-x509',
      ...KEY,
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
    ]);
  const leaf = (name, issuer, cn, ...ext) =>
    run([
      'req',
      '-x509',
      '-CA',
      `${issuer}.pem`,
      '-CAkey',
      `${issuer}.key`,
      ...KEY,
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      ...LEAF,
      ...ext,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
    ]);
  try {
    ca('ca', 'session-cache test CA');
    leaf('server', 'ca', 'localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost');
    leaf('client', 'ca', 'session-cache test client', '-addext', 'extendedKeyUsage=clientAuth');
    ca('other-ca', 'some other CA');
    leaf('other-client', 'other-ca', 'stranger', '-addext', 'extendedKeyUsage=clientAuth');
    return {
      dir,
      ca: entry('ca'),
      server: entry('server'),
      client: entry('client'),
      otherCa: entry('other-ca'),
      otherClient: entry('other-client'),
      /**
       * The `tls` option of MemcachedProcess.start() for a memcached -Z with the server
       * certificate; `mutual` also makes it require client certificates of this CA
       * (ssl_verify_mode=2). The helper's own connections trust the CA and show the client
       * certificate.
       */
      memcachedTls({ mutual = false } = {}) {
        return {
          certFile: this.server.certFile,
          keyFile: this.server.keyFile,
          ...(mutual ? { clientCaFile: this.ca.certFile, verifyMode: 2 } : {}),
          connect: {
            ca: this.ca.cert,
            ...(mutual ? { cert: this.client.cert, key: this.client.key } : {}),
          },
        };
      },
      remove() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
