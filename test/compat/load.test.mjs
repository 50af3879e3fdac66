// The built package, loaded by name from a CommonJS app (require) and from an ES module app
// (import), boots on Nest 12 (the repo's devDependencies) and keeps a session in a real memcached.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MemcachedProcess } from '../support/memcached.mjs';
import {
  assertBuilt,
  assertSessionRoundTrip,
  compatDir,
  repoRoot,
  resultOf,
  run,
} from './support.mjs';

const fixtures = path.join(compatDir, 'fixtures');

describe('built package on Nest 12', () => {
  let memcached;

  before(async () => {
    assertBuilt();
    memcached = await MemcachedProcess.start();
  });

  after(async () => {
    await memcached?.stop();
  });

  for (const [loader, script, how] of [
    ['require', 'app-require.cjs', "require('nestjs-session-cache') from CommonJS"],
    [
      'import',
      'app-import.mjs',
      "import { SessionCacheModule } from 'nestjs-session-cache' in ESM",
    ],
  ]) {
    test(`${how} (${script}): boots, session round-trips`, async () => {
      const result = resultOf(
        await run(process.execPath, [path.join(fixtures, script), memcached.url], {
          cwd: repoRoot,
        }),
      );
      assert.equal(result.loader, loader);
      assert.equal(result.entry, path.join(repoRoot, 'dist', 'index.js'), 'resolved via "exports"');
      assert.match(result.nestCoreVersion, /^12\./);
      assert.equal(
        result.libraryNestCore,
        path.join(repoRoot, 'node_modules', '@nestjs', 'core', 'index.js'),
        'the library uses the same @nestjs/core as the app',
      );
      await assertSessionRoundTrip(result, memcached);
    });
  }
});
