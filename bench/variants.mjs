// The variants of the HTTP benchmark, shared by bench/run.mjs and bench/profile.mjs: which app
// runs them (bench/app.mjs, plain Express, or bench/nest-app.mjs, Nest) and which store backend
// they need, and how to start that backend.
import { join } from 'node:path';
import { root, startMemcached, startRedis } from './support.mjs';
import { makeTestCertificates } from '../test/support/certificates.mjs';
import { MemcachedProcess } from '../test/support/memcached.mjs';

/**
 * The apps; `none` is the variant without sessions that the other rows are compared with. The
 * Nest app runs on Express (`nest`) or on Fastify (`nest-fastify`), one script for both.
 */
export const APPS = {
  express: { script: join(root, 'bench', 'app.mjs'), none: 'none' },
  nest: { script: join(root, 'bench', 'nest-app.mjs'), none: 'nest-none' },
  'nest-fastify': { script: join(root, 'bench', 'nest-app.mjs'), none: 'nest-fastify-none' },
};

/**
 * Every variant, in report order: its app and its backend (null: none; `lib-1` one memcached,
 * memcached:// URL; `lib-3r2` three memcached, `?replicas=2`; `connect-memcached` one memcached,
 * host:port; `redis` a redis-server, redis:// URL).
 */
export const VARIANTS = {
  none: { app: 'express', backend: null },
  memory: { app: 'express', backend: null },
  'lib-1': { app: 'express', backend: 'lib-1' },
  'lib-3r2': { app: 'express', backend: 'lib-3r2' },
  'connect-memcached': { app: 'express', backend: 'connect-memcached' },
  'connect-redis': { app: 'express', backend: 'redis' },
  'nest-none': { app: 'nest', backend: null },
  'nest-memory': { app: 'nest', backend: null },
  'nest-lib-hand': { app: 'nest', backend: 'lib-1' },
  'nest-lib-1': { app: 'nest', backend: 'lib-1' },
  'nest-lib-3r2': { app: 'nest', backend: 'lib-3r2' },
  'nest-lib-1-tls': { app: 'nest', backend: 'lib-1-tls' },
  'nest-connect-memcached': { app: 'nest', backend: 'connect-memcached' },
  'nest-connect-redis': { app: 'nest', backend: 'redis' },
  'nest-fastify-none': { app: 'nest-fastify', backend: null },
  'nest-fastify-default-store': { app: 'nest-fastify', backend: null },
  'nest-fastify-lib-1': { app: 'nest-fastify', backend: 'lib-1' },
};
export const ALL_VARIANTS = Object.keys(VARIANTS);

/** True for the variants without session middleware (`none`, `nest-none`, `nest-fastify-none`). */
export const isNone = (name) => APPS[VARIANTS[name].app].none === name;

/**
 * Starts the backend of a variant (stopped by `cleanup`). Returns `{ url }` (what the app gets as
 * BENCH_STORE_URL) plus `nodes` (memcached) or `redis: true`; `{ skipped }` when redis-server is
 * not installed.
 */
export async function startBackend(cleanup, name) {
  switch (VARIANTS[name].backend) {
    case null:
      return { url: undefined };
    case 'lib-1': {
      const nodes = await startMemcached(cleanup, 1);
      return { url: nodes[0].url, nodes };
    }
    case 'lib-1-tls': {
      // memcached -Z with a test CA made by openssl; the app trusts that CA (BENCH_TLS_CA, which
      // the server processes inherit from this one).
      const pki = makeTestCertificates();
      cleanup.add(() => pki.remove());
      const node = await MemcachedProcess.start({ memoryMb: 64, tls: pki.memcachedTls() });
      cleanup.add(() => node.kill());
      cleanup.pid(() => node.pid);
      process.env.BENCH_TLS_CA = pki.ca.cert;
      return { url: node.url, nodes: [node] };
    }
    case 'lib-3r2': {
      const nodes = await startMemcached(cleanup, 3);
      return { url: `memcached://${nodes.map((n) => n.address).join(',')}?replicas=2`, nodes };
    }
    case 'connect-memcached': {
      const nodes = await startMemcached(cleanup, 1);
      return { url: nodes[0].address, nodes };
    }
    case 'redis': {
      const redis = await startRedis(cleanup);
      if (!redis) return { skipped: 'redis-server is not installed' };
      return { url: redis.url, redis: true };
    }
  }
  throw new Error(`variant ${name}: unknown backend`);
}
