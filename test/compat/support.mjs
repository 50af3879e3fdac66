// Helpers of the compatibility tests (not a test file itself: node --test only runs *.test.mjs).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const compatDir = path.join(repoRoot, 'test', 'compat');

/** Fails unless the package has been built: the tests load dist/ as an installed app would. */
export function assertBuilt() {
  const entry = path.join(repoRoot, 'dist', 'index.js');
  if (!existsSync(entry) || !existsSync(path.join(repoRoot, 'dist', 'index.d.ts'))) {
    throw new Error(`${entry} not found: run npm run build first (npm test builds before it).`);
  }
}

/**
 * The environment for child processes, without what `npm run` adds for its own script (the
 * package and lifecycle variables, npm_config_local_prefix): a child npm must see its own project.
 */
export function childEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  for (const key of Object.keys(env)) {
    if (
      /^npm_(package|lifecycle)_/.test(key) ||
      key === 'npm_config_local_prefix' ||
      key === 'npm_command' ||
      key === 'NODE_TEST_CONTEXT'
    ) {
      delete env[key];
    }
  }
  return env;
}

/**
 * Runs a command and resolves with { code, signal, stdout, stderr } once it has exited; kills it
 * (SIGKILL) after `timeoutMs`. Rejects only if it cannot be started.
 */
export function run(command, args, { cwd = repoRoot, timeoutMs = 30_000, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      env: childEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        command: [command, ...args].join(' '),
        cwd,
        code,
        signal,
        timedOut,
        stdout,
        stderr,
      });
    });
  });
}

/** Describes a finished command for an assertion message. */
export function describeRun(r) {
  const timeout = r.timedOut ? ' (killed: did not exit in time; handles left open?)' : '';
  return (
    `${r.command} (in ${r.cwd}) exited with code ${r.code}, signal ${r.signal}${timeout}\n` +
    `--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`
  );
}

/** Asserts a clean exit (code 0) and returns the command's output. */
export function assertSucceeded(r) {
  assert.equal(r.timedOut, false, describeRun(r));
  assert.equal(r.code, 0, describeRun(r));
  return r;
}

/** The JSON of the `RESULT {...}` line a fixture prints, after checking it exited with 0. */
export function resultOf(r) {
  assertSucceeded(r);
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  assert.ok(line, `no RESULT line\n${describeRun(r)}`);
  return JSON.parse(line.slice('RESULT '.length));
}

/**
 * Asserts what `sessionRoundTrip` (fixtures/round-trip.cjs) saw: the write set a session cookie,
 * the read with that cookie got the value back in the same session, a read without it did not,
 * and the session is stored in `memcached` (not in express-session's MemoryStore). `cookie`: how
 * the session cookie starts (express-session URL-encodes the `s:` of its signed value).
 */
export async function assertSessionRoundTrip(
  result,
  memcached,
  { cookie = /^connect\.sid=s%3A/ } = {},
) {
  const { write, read, anonymous, greeting } = result;
  assert.equal(write.status, 200, JSON.stringify(write));
  assert.match(write.setCookie.join('\n'), cookie, 'the write set a session cookie');
  assert.match(write.setCookie[0], /HttpOnly/i);
  const { sessionId } = write.body;
  assert.equal(typeof sessionId, 'string');

  assert.equal(read.status, 200, JSON.stringify(read));
  assert.deepEqual(read.body, { sessionId, greeting }, 'the read saw the written session');

  assert.equal(anonymous.status, 200, JSON.stringify(anonymous));
  assert.equal(anonymous.body.greeting, null, 'a request without the cookie has no greeting');
  assert.notEqual(anonymous.body.sessionId, sessionId);

  const { key } = write.body;
  assert.match(key, /^sess:[A-Za-z0-9_-]{43}$/, 'the key is the prefix and an HMAC');
  assert.ok(!key.includes(sessionId), 'the key does not show the session id');
  const stored = await memcached.getRaw(key);
  assert.ok(stored, `session ${key} is in memcached`);
  // Stored values start with a 28-byte header (0xF6, flags, version, tag, generation, expiry,
  // index, longest TTL; see src/store/value-header.ts).
  assert.equal(stored[0], 0xf6, 'the value has the header');
  assert.equal(JSON.parse(stored.subarray(28).toString('utf8')).greeting, greeting);
}
