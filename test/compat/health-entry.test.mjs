// The built package keeps @nestjs/terminus optional: the main entry point never loads it, and the
// `nestjs-session-cache/health` entry point loads by name from CommonJS and from ESM.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { assertBuilt, repoRoot, run } from './support.mjs';

async function node(args) {
  const r = await run(process.execPath, args, { cwd: repoRoot });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

describe('entry points of the built package', () => {
  before(() => assertBuilt());

  test('the main entry point loads without @nestjs/terminus', async () => {
    const script = `
      const Module = require('node:module');
      const resolve = Module._resolveFilename;
      Module._resolveFilename = function (request, ...rest) {
        if (request === '@nestjs/terminus' || request.startsWith('@nestjs/terminus/')) {
          throw new Error('the main entry point loaded @nestjs/terminus');
        }
        return resolve.call(this, request, ...rest);
      };
      const lib = require('nestjs-session-cache');
      console.log(typeof lib.SessionCacheModule, 'SessionCacheHealthIndicator' in lib);
    `;
    assert.equal(await node(['-e', script]), 'function false');
  });

  test('nestjs-session-cache/health loads with require() and with import', async () => {
    const required = `
      const { SessionCacheHealthIndicator } = require('nestjs-session-cache/health');
      console.log(typeof SessionCacheHealthIndicator.prototype.isHealthy,
        require.resolve('nestjs-session-cache/health'));
    `;
    assert.equal(await node(['-e', required]), `function ${repoRoot}dist/health/index.js`);
    const imported = `
      import { SessionCacheHealthIndicator } from 'nestjs-session-cache/health';
      console.log(typeof SessionCacheHealthIndicator.prototype.isHealthy);
    `;
    assert.equal(await node(['--input-type=module', '-e', imported]), 'function');
  });
});
