// Makes a fresh machine ready for `npm test` and `npm run sample` (run by npm as pretest/presample):
// installs the npm dependencies when node_modules is missing or older than the lockfile, and
// memcached, and for the SASL tests sasl2-bin (saslpasswd2) and libsasl2-modules (SASL's PLAIN
// mechanism), from Debian's packages when they are missing and this user may install packages.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { findMemcachedBinary, findSaslpasswd2 } from '../test/support/memcached.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

function run(command, args) {
  console.log(`[ensure-env] ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`[ensure-env] "${command} ${args.join(' ')}" failed (exit ${result.status}).`);
    process.exit(result.status ?? 1);
  }
}

const marker = `${root}node_modules/.package-lock.json`;
if (
  !existsSync(marker) ||
  statSync(marker).mtimeMs < statSync(`${root}package-lock.json`).mtimeMs
) {
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

/** Whether dpkg knows package `name` as installed (true where there is no dpkg to ask). */
function dpkgInstalled(name) {
  const query = spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' });
  if (query.error) return true;
  return query.status === 0 && query.stdout.trim() === 'install ok installed';
}

const memcachedMissing = !findMemcachedBinary();
const saslPackages = [
  ...(findSaslpasswd2() ? [] : ['sasl2-bin']),
  // Only a Recommends of libsasl2-2: missing where apt installs no recommends.
  ...(dpkgInstalled('libsasl2-modules') ? [] : ['libsasl2-modules']),
];
const missing = [...(memcachedMissing ? ['memcached'] : []), ...saslPackages];

if (missing.length > 0) {
  const isRoot = process.getuid?.() === 0;
  const sudo = !isRoot && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
  const hasApt = spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0;
  if (hasApt && (isRoot || sudo)) {
    const prefix = isRoot ? [] : ['sudo', '-n'];
    const [cmd, ...rest] = [...prefix, 'apt-get'];
    run(cmd, [...rest, 'update', '-qq']);
    run(cmd, [...rest, 'install', '-y', '-qq', ...missing]);
  } else if (memcachedMissing) {
    console.error(
      '[ensure-env] memcached is not installed and cannot be installed from here. Install it ' +
        '(Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y memcached; macOS: ' +
        'brew install memcached) or set MEMCACHED_BIN to its path, then run this again.',
    );
    process.exit(1);
  } else {
    // The other suites can run; the SASL suite fails and says how to install these.
    console.warn(
      `[ensure-env] ${saslPackages.join(' and ')} ${saslPackages.length > 1 ? 'are' : 'is'} not ` +
        'installed and cannot be installed from here: the SASL tests (test/e2e/sasl) will fail. ' +
        `Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y ${saslPackages.join(' ')}` +
        ' (or set SASLPASSWD2_BIN to the path of saslpasswd2).',
    );
  }
}
