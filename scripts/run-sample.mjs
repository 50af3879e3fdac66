// `npm run sample`: compiles the sample app, starts two memcached processes when their URLs are not
// given (A: the general cache, B: the sessions), runs the app, and stops everything on exit.
//
// Environment: GENERAL_MEMCACHED_URL, SESSION_MEMCACHED_URL (memcached://host:port; started here
// when missing), SESSION_SECRET (random when missing), PORT (default 3000), SAMPLE_PLATFORM
// (express, the default, or fastify; `npm run sample -- --fastify` sets it).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findMemcachedBinary, MemcachedProcess } from '../test/support/memcached.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (message = '') => console.log(message ? `[sample] ${message}` : '');

/** Memcached processes this script started; stopped on every way out. */
const started = [];
let app = null;
let stopping = false;

async function stopMemcached() {
  while (started.length > 0) {
    const { label, proc } = started.pop();
    if (!proc.running) continue; // it died on its own, and that was said when it did
    await proc.stop().catch(() => proc.kill());
    say(`stopped memcached ${label} (port ${proc.port})`);
  }
}

async function exit(code) {
  await stopMemcached();
  process.exit(code);
}

// Ctrl+C / kill: pass the signal to the app and let main() stop memcached once it has exited.
// A second signal kills the app outright. Before the app runs, main() checks `stopping` itself.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    const running = app && app.exitCode === null && app.signalCode === null;
    if (!stopping) say(`${signal}: stopping`);
    if (running) app.kill(stopping ? 'SIGKILL' : signal);
    stopping = true;
  });
}

function compile() {
  say('compiling sample/ with tsc -p sample/tsconfig.json');
  rmSync(join(root, 'dist-sample'), { recursive: true, force: true });
  const tsc = spawnSync(join(root, 'node_modules/.bin/tsc'), ['-p', 'sample/tsconfig.json'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (tsc.error || tsc.status !== 0) {
    console.error('[sample] compilation failed (did you run `npm install`?)');
    process.exit(1);
  }
}

/** The URL from the environment, or a memcached started here. */
async function memcachedUrl(variable, label, role) {
  if (process.env[variable]) {
    say(`memcached ${label} (${role}): ${process.env[variable]} (from ${variable})`);
    return process.env[variable];
  }
  if (!findMemcachedBinary()) {
    console.error(
      `[sample] ${variable} is not set and memcached is not installed, so it cannot be started.\n` +
        '         Install it:  sudo apt-get update && sudo apt-get install -y memcached\n' +
        `         (or set MEMCACHED_BIN to its path, or point ${variable} at a running memcached).`,
    );
    await exit(1);
  }
  const proc = await MemcachedProcess.start();
  started.push({ label, proc });
  proc.onCrash((reason) =>
    say(
      `memcached ${label} (${role}, port ${proc.port}) exited on its own (${reason}); ` +
        (label === 'B'
          ? 'requests that use the session answer 503 until a memcached listens on that port again.'
          : 'the general cache is gone until a memcached listens on that port again.'),
    ),
  );
  say(`memcached ${label} (${role}): started ${proc.url} (pid ${proc.pid}); stopped on exit`);
  return proc.url;
}

function walkthrough(port) {
  console.log(`
[sample] Try it from another terminal (the cookie jar /tmp/sample.jar keeps the session cookie):

  B=http://localhost:${port}
  curl -s -c /tmp/sample.jar -X POST $B/login -H 'content-type: application/json' -d '{"username":"ada"}'
  curl -s -b /tmp/sample.jar $B/me                    # logged in
  curl -s $B/cache/stamp                              # general cache: fromCache false, then true
  curl -s -X POST $B/cache/clear                      # flush_all on memcached A
  curl -s $B/cache/stamp                              # fromCache false again: A was emptied
  curl -s -b /tmp/sample.jar $B/me                    # still logged in: the session is on B
  curl -s -b /tmp/sample.jar $B/admin/session-cache   # statistics of memcached B
  curl -s -b /tmp/sample.jar -c /tmp/sample.jar -X POST $B/logout
  curl -s -b /tmp/sample.jar $B/me                    # 401

[sample] Ctrl+C stops the app and any memcached started above.
`);
}

/** The platform Nest runs on: --fastify / --express, else SAMPLE_PLATFORM, else express. */
function platform() {
  const flags = process.argv.slice(2);
  const unknown = flags.filter((f) => f !== '--fastify' && f !== '--express');
  if (unknown.length > 0) {
    console.error(
      `[sample] unknown argument(s): ${unknown.join(' ')} (use --fastify or --express)`,
    );
    process.exit(1);
  }
  if (flags.includes('--fastify')) return 'fastify';
  if (flags.includes('--express')) return 'express';
  const chosen = process.env.SAMPLE_PLATFORM ?? 'express';
  if (chosen !== 'express' && chosen !== 'fastify') {
    console.error(`[sample] SAMPLE_PLATFORM must be express or fastify, got "${chosen}"`);
    process.exit(1);
  }
  return chosen;
}

async function main() {
  const nestPlatform = platform();
  compile();
  const generalUrl = await memcachedUrl('GENERAL_MEMCACHED_URL', 'A', 'general cache');
  const sessionUrl = await memcachedUrl('SESSION_MEMCACHED_URL', 'B', 'sessions');
  if (stopping) return exit(130);
  let secret = process.env.SESSION_SECRET;
  if (!secret) {
    secret = randomBytes(32).toString('base64url');
    say('SESSION_SECRET is not set: using a random one for this run (demo only; sessions');
    say('will not survive a restart). Set SESSION_SECRET to keep them.');
  }
  const port = process.env.PORT ?? '3000';
  say(
    `Nest on ${nestPlatform} (${nestPlatform === 'fastify' ? '@fastify/session' : 'express-session'})`,
  );

  // Own process group: a Ctrl+C in the terminal reaches the app once, through the handler above.
  app = spawn(process.execPath, [join(root, 'dist-sample/sample/main.js')], {
    cwd: root,
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    detached: true,
    env: {
      ...process.env,
      GENERAL_MEMCACHED_URL: generalUrl,
      SESSION_MEMCACHED_URL: sessionUrl,
      SESSION_SECRET: secret,
      PORT: port,
      SAMPLE_PLATFORM: nestPlatform,
    },
  });
  const exited = once(app, 'exit');
  // main.ts reports its port over the IPC channel once it listens.
  app.once('message', (message) => {
    if (typeof message?.listening === 'number') walkthrough(message.listening);
  });
  const [code, signal] = await exited;
  say(`app exited (${signal ?? `code ${code}`})`);
  await exit(stopping ? 0 : (code ?? 1));
}

main().catch(async (err) => {
  console.error(`[sample] ${err instanceof Error ? err.message : String(err)}`);
  await exit(1);
});
