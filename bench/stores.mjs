// What the two benchmark apps (bench/app.mjs, plain Express; bench/nest-app.mjs, Nest) share: the
// express-session options and the stores they build by hand, so that an Express row and a Nest
// row of the same store differ only in the framework around them.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import session from 'express-session';

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL('..', import.meta.url));

export const SECRET = 'bench-secret-not-for-production';
export const MAX_AGE_MS = 60 * 60 * 1000;

/** express-session's options in every variant (`store` undefined: MemoryStore). */
export function sessionOptions(store) {
  return {
    store,
    secret: SECRET,
    resave: false,
    saveUninitialized: false,
    rolling: false,
    cookie: { maxAge: MAX_AGE_MS },
  };
}

/** This library from the build in dist/, as the apps load it. */
export function library() {
  return require(`${root}dist`);
}

/**
 * An express-session store built by hand, and how to close it. `kind`: memory (MemoryStore), lib
 * (this library's `createSessionStore`; url = memcached://…), connect-memcached (url = host:port),
 * connect-redis (url = redis://…).
 */
export async function makeStore(kind, url) {
  switch (kind) {
    case 'memory':
      return { store: undefined, close: async () => undefined };
    case 'lib': {
      const store = library().createSessionStore(url, { ttl: 3600, keySecret: SECRET });
      return { store, close: () => store.close() };
    }
    case 'connect-memcached': {
      const MemcachedStore = require('connect-memcached')(session);
      const store = new MemcachedStore({ hosts: [url] });
      return { store, close: async () => store.client.end() };
    }
    case 'connect-redis': {
      const { RedisStore } = await import('connect-redis');
      const { createClient } = await import('redis');
      const client = createClient({ url });
      client.on('error', (err) => console.error(`redis client: ${err.message}`));
      await client.connect();
      return { store: new RedisStore({ client }), close: () => client.quit() };
    }
    default:
      throw new Error(`unknown store "${kind}"`);
  }
}
