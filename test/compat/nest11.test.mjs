// Nest 11, CommonJS: the package as npm would install it (npm pack, unpacked into the
// node_modules of test/compat/nest11, a project pinned to Nest 11), so that it resolves its peers
// from Nest 11 exactly as in a user's app; then a boot-and-request smoke test on a real memcached.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MemcachedProcess } from '../support/memcached.mjs';
import {
  assertBuilt,
  assertSessionRoundTrip,
  assertSucceeded,
  compatDir,
  repoRoot,
  resultOf,
  run,
} from './support.mjs';

const projectDir = path.join(compatDir, 'nest11');
const nodeModules = path.join(projectDir, 'node_modules');
const installed = path.join(nodeModules, 'nestjs-session-cache');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

async function mtimeMs(file) {
  try {
    return (await stat(file)).mtimeMs;
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
}

/** `npm ci` in the Nest 11 project unless its node_modules is there and newer than its lockfile. */
async function installNest11() {
  // npm writes node_modules/.package-lock.json at the end of every install.
  const installedAt = await mtimeMs(path.join(nodeModules, '.package-lock.json'));
  const lockedAt = Math.max(
    await mtimeMs(path.join(projectDir, 'package-lock.json')),
    await mtimeMs(path.join(projectDir, 'package.json')),
  );
  if (installedAt !== null && installedAt >= lockedAt) return 'reused';
  assertSucceeded(
    await run(npm, ['ci', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], {
      cwd: projectDir,
      timeoutMs: 120_000,
    }),
  );
  return 'installed';
}

/** `npm pack` of the repo into `dir` (no lifecycle scripts); resolves with npm's JSON report. */
async function pack(dir) {
  const r = assertSucceeded(
    await run(
      npm,
      ['pack', '--pack-destination', dir, '--ignore-scripts', '--json', '--loglevel=error'],
      { cwd: repoRoot, timeoutMs: 60_000 },
    ),
  );
  const [report] = JSON.parse(r.stdout);
  return { ...report, tarball: path.join(dir, report.filename) };
}

describe('packed package on Nest 11 (CommonJS)', () => {
  let memcached;
  let tmpDir;
  let packed;

  before(
    async () => {
      assertBuilt();
      tmpDir = await mkdtemp(path.join(os.tmpdir(), 'nestjs-session-cache-compat-'));
      // Both at once; a memcached that started is kept (and stopped in `after`) even if npm failed.
      const [install, started] = await Promise.allSettled([
        installNest11(),
        MemcachedProcess.start(),
      ]);
      if (started.status === 'fulfilled') memcached = started.value;
      for (const r of [install, started]) if (r.status === 'rejected') throw r.reason;
      packed = await pack(tmpDir);
      await rm(installed, { recursive: true, force: true });
      await mkdir(installed, { recursive: true });
      assertSucceeded(
        await run('tar', ['-xzf', packed.tarball, '-C', installed, '--strip-components=1']),
      );
      console.log(`test/compat/nest11: node_modules ${install.value}, packed ${packed.filename}`);
    },
    { timeout: 180_000 },
  );

  after(async () => {
    await memcached?.stop();
    if (tmpDir) await rm(tmpDir, { recursive: true, force: true });
  });

  test('the tarball holds package.json and dist/ (entry and types), no sources', () => {
    const files = packed.files.map((f) => f.path);
    assert.ok(files.includes('package.json'));
    assert.ok(files.includes('dist/index.js'), files.join('\n'));
    assert.ok(files.includes('dist/index.d.ts'), files.join('\n'));
    const unexpected = files.filter(
      (f) => !/^(package\.json|dist\/.+\.(js|d\.ts)|README(\.md)?|LICEN[CS]E(\.md)?)$/i.test(f),
    );
    assert.deepEqual(unexpected, [], 'files outside dist/ in the tarball');
  });

  test('smoke.cjs: boots on Nest 11 with the installed package, session round-trips', async () => {
    const result = resultOf(
      await run(process.execPath, ['smoke.cjs', memcached.url], { cwd: projectDir }),
    );
    assert.match(result.nestCoreVersion, /^11\./);
    assert.match(result.nestCommonVersion, /^11\./);
    assert.match(result.platformExpressVersion, /^11\./);
    assert.equal(
      result.entry,
      path.join('node_modules', 'nestjs-session-cache', 'dist', 'index.js'),
    );
    for (const [peer, file] of Object.entries(result.peers)) {
      assert.ok(
        file.startsWith(`node_modules${path.sep}`) && !file.includes('nestjs-session-cache'),
        `the installed package resolves ${peer} from the Nest 11 project, got ${file}`,
      );
    }
    await assertSessionRoundTrip(result, memcached);
  });
});
