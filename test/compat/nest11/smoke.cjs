'use strict';
// Nest 11, CommonJS: the packed nestjs-session-cache installed in ./node_modules next to Nest 11
// (see ../nest11.test.mjs). Boots the app of ../fixtures/round-trip.cjs and prints a RESULT line.
// Usage: node smoke.cjs memcached://127.0.0.1:11211 (or SESSION_CACHE_URL=...).
require('reflect-metadata');
const assert = require('node:assert/strict');
const path = require('node:path');
const common = require('@nestjs/common');
const core = require('@nestjs/core');
const { SessionCacheModule, SessionStore } = require('nestjs-session-cache');
const { sessionRoundTrip } = require('../fixtures/round-trip.cjs');

async function main() {
  const url = process.argv[2] ?? process.env.SESSION_CACHE_URL;
  if (!url) throw new Error('usage: node smoke.cjs memcached://host:port');
  const nestCoreVersion = require('@nestjs/core/package.json').version;
  assert.match(nestCoreVersion, /^11\./, `expected Nest 11, found @nestjs/core ${nestCoreVersion}`);

  // Where the installed library finds its peers: it must be this project's Nest 11, not the
  // repo's Nest 12 further up the tree.
  const entry = require.resolve('nestjs-session-cache');
  const fromLibrary = { paths: [path.dirname(entry)] };
  const peers = {};
  for (const name of ['@nestjs/common', '@nestjs/core', 'express-session', 'memjs', 'rxjs']) {
    peers[name] = path.relative(__dirname, require.resolve(name, fromLibrary));
  }

  const result = await sessionRoundTrip({ common, core, SessionCacheModule, SessionStore }, url);
  console.log(
    'RESULT ' +
      JSON.stringify({
        loader: 'require',
        entry: path.relative(__dirname, entry),
        library: require('nestjs-session-cache/package.json').version,
        nestCoreVersion,
        nestCommonVersion: require('@nestjs/common/package.json').version,
        platformExpressVersion: require('@nestjs/platform-express/package.json').version,
        peers,
        ...result,
      }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
