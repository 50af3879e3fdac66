// The benchmark's server: one small plain Express app, the same for every session store, so that
// the only difference between two variants is the store. Run as a child process by bench/run.mjs:
//
//   BENCH_VARIANT=<variant> [BENCH_STORE_URL=<url>] node bench/app.mjs
//
// Variants: none (no session middleware), memory (express-session's MemoryStore), lib-1 and
// lib-3r2 (this library, BENCH_STORE_URL = memcached://…), connect-memcached (BENCH_STORE_URL =
// host:port) and connect-redis (BENCH_STORE_URL = redis://…). It listens on a free port of
// 127.0.0.1 and prints `ready <port>` once it accepts connections.
//
// Routes (all answer a tiny JSON):
//   POST /login  creates a session with a user and a counter
//   GET  /read   reads the session, leaves it unchanged (express-session then calls store.touch)
//   POST /write  increments the session's counter (express-session saves the modified session)
// /read and /write answer 401 when the request has no logged-in session, so a store that loses
// sessions shows up as non-2xx responses in the benchmark instead of as a fast wrong result.
import express from 'express';
import session from 'express-session';
import { makeStore, sessionOptions } from './stores.mjs';

const variant = process.env.BENCH_VARIANT;
const storeUrl = process.env.BENCH_STORE_URL;
const STORES = {
  memory: 'memory',
  'lib-1': 'lib',
  'lib-3r2': 'lib',
  'connect-memcached': 'connect-memcached',
  'connect-redis': 'connect-redis',
};

async function main() {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  let close = async () => undefined;

  if (variant === 'none') {
    // The ceiling: the same routes and answers, no session middleware.
    let counter = 0;
    app.post('/login', (req, res) => res.json({ user: String(req.query.user ?? 'u0') }));
    app.get('/read', (_req, res) => res.json({ user: 'u0', counter }));
    app.post('/write', (_req, res) => res.json({ counter: ++counter }));
  } else {
    if (!STORES[variant]) {
      throw new Error(
        `unknown BENCH_VARIANT "${variant}" (none, ${Object.keys(STORES).join(', ')})`,
      );
    }
    const made = await makeStore(STORES[variant], storeUrl);
    close = made.close;
    app.use(session(sessionOptions(made.store)));
    app.post('/login', (req, res) => {
      const user = String(req.query.user ?? 'u0');
      req.session.user = { id: user, name: `User ${user}`, roles: ['reader', 'writer'] };
      req.session.counter = 0;
      res.json({ user });
    });
    app.get('/read', (req, res) => {
      if (!req.session.user) return res.status(401).json({ error: 'no session' });
      res.json({ user: req.session.user.id, counter: req.session.counter });
    });
    app.post('/write', (req, res) => {
      if (!req.session.user) return res.status(401).json({ error: 'no session' });
      req.session.counter += 1;
      res.json({ counter: req.session.counter });
    });
  }
  // A store error reaches here through express-session: answer 500 (counted as a failure).
  app.use((err, _req, res, _next) => {
    console.error(`request failed: ${err?.stack ?? err}`);
    res.status(500).json({ error: String(err?.message ?? err) });
  });

  const server = app.listen(0, '127.0.0.1', () => {
    console.log(`ready ${server.address().port}`);
  });
  server.keepAliveTimeout = 60_000;

  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    server.closeAllConnections?.();
    server.close();
    try {
      await close();
    } finally {
      process.exit(0);
    }
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((err) => {
  console.error(err?.stack ?? err);
  process.exit(1);
});
