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
      if (loader === 'require') {
        assert.deepEqual(
          result.fastifyPackagesLoaded,
          [],
          'an Express app loads no Fastify package',
        );
      }
    });
  }

  test("on Nest's Fastify platform (app-fastify.cjs): boots, session round-trips", async () => {
    const result = resultOf(
      await run(process.execPath, [path.join(fixtures, 'app-fastify.cjs'), memcached.url], {
        cwd: repoRoot,
      }),
    );
    assert.equal(result.platform, 'fastify');
    assert.equal(result.entry, path.join(repoRoot, 'dist', 'index.js'));
    // The same cookie as express-session's (`s:` + the signed id), not URL-encoded by @fastify/cookie.
    await assertSessionRoundTrip(result, memcached, { cookie: /^connect\.sid=s:/ });
    assert.equal(result.loaded['@fastify/session'], true);
    assert.equal(result.loaded['@fastify/cookie'], true);
    // SessionStore extends express-session's Store class, so the module loads it (only the class:
    // its middleware never runs on Fastify).
    assert.equal(result.loaded['express-session'], true);
  });
});
