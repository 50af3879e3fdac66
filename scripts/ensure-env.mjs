// Makes a fresh machine ready for `npm test` and `npm run sample` (run by npm as pretest/presample):
// installs the npm dependencies when node_modules is missing or older than the lockfile, and
// memcached from Debian's packages when it is missing and this user may install packages.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { findMemcachedBinary } from '../test/support/memcached.mjs';

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

if (!findMemcachedBinary()) {
  const isRoot = process.getuid?.() === 0;
  const sudo = !isRoot && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
  const hasApt = spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0;
  if (hasApt && (isRoot || sudo)) {
    const prefix = isRoot ? [] : ['sudo', '-n'];
    const [cmd, ...rest] = [...prefix, 'apt-get'];
    run(cmd, [...rest, 'update', '-qq']);
    run(cmd, [...rest, 'install', '-y', '-qq', 'memcached']);
  } else {
    console.error(
      '[ensure-env] memcached is not installed and cannot be installed from here. Install it ' +
        '(Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y memcached; macOS: ' +
        'brew install memcached) or set MEMCACHED_BIN to its path, then run this again.',
    );
    process.exit(1);
  }
}
