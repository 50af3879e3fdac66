// The benchmark's Nest server: the routes and answers of bench/app.mjs in a Nest 12 app on
// @nestjs/platform-express, or on @nestjs/platform-fastify for the nest-fastify-* variants (Nest's
// defaults otherwise: its body parsers, its exception filter), plain JavaScript with Nest's
// decorators applied by hand. Run as a child process by bench/run.mjs:
//
//   BENCH_VARIANT=<variant> [BENCH_STORE_URL=<url>] node bench/nest-app.mjs
//
// Variants on Express:
//   nest-none               no session middleware: the ceiling of the Nest app
//   nest-memory             app.use(session(…)) with express-session's MemoryStore
//   nest-connect-memcached  app.use(session(…)) with connect-memcached (BENCH_STORE_URL = host:port)
//   nest-connect-redis      app.use(session(…)) with connect-redis (BENCH_STORE_URL = redis://…)
//   nest-lib-hand           app.use(session(…)) with this library's createSessionStore
//   nest-lib-1, nest-lib-3r2
//                           SessionCacheModule.forRoot(url, { session }) as the README shows it:
//                           the module's own middleware and save-before-response
// Variants on Fastify:
//   nest-fastify-none       no session plugin: the ceiling of the Nest Fastify app
//   nest-fastify-default-store
//                           @fastify/cookie + @fastify/session registered by hand, with
//                           @fastify/session's own default (in-memory) store
//   nest-fastify-lib-1      SessionCacheModule.forRoot(url, { session }), one memcached: the module
//                           registers @fastify/session on its store
// The session options are the Express app's (bench/stores.mjs; on Fastify with a secret of 32+
// characters and @fastify/session's options set to express-session's defaults). It listens on a
// free port of 127.0.0.1 and prints `ready <port>` once it accepts connections.
import 'reflect-metadata';
import { Catch, Controller, Get, HttpCode, HttpException, Module, Post, Req } from '@nestjs/common';
import { BaseExceptionFilter, NestFactory } from '@nestjs/core';
import session from 'express-session';
import { library, makeStore, SECRET, sessionOptions } from './stores.mjs';

const variant = process.env.BENCH_VARIANT;
const storeUrl = process.env.BENCH_STORE_URL;
/** Variants whose store the app builds itself and installs with app.use(session(…)). */
const BY_HAND = {
  'nest-memory': 'memory',
  'nest-connect-memcached': 'connect-memcached',
  'nest-connect-redis': 'connect-redis',
  'nest-lib-hand': 'lib',
};
const BY_MODULE = ['nest-lib-1', 'nest-lib-3r2', 'nest-lib-1-tls', 'nest-fastify-lib-1'];
const FASTIFY = ['nest-fastify-none', 'nest-fastify-default-store', 'nest-fastify-lib-1'];
const NONE = ['nest-none', 'nest-fastify-none'];
const VARIANTS = [...NONE, ...Object.keys(BY_HAND), ...BY_MODULE, ...FASTIFY];
/** @fastify/session signs with secrets of at least 32 characters. */
const FASTIFY_SECRET = `${SECRET}-on-fastify`;

/** Applies Nest's method decorators (and @Req() on the first parameter) by hand. */
function route(cls, name, ...decorators) {
  const proto = cls.prototype;
  Req()(proto, name, 0);
  for (const decorate of decorators) {
    decorate(proto, name, Object.getOwnPropertyDescriptor(proto, name));
  }
}

/** The same routes and answers as bench/app.mjs. */
function sessionController() {
  const noSession = () => new HttpException({ error: 'no session' }, 401);
  class SessionController {
    login(req) {
      const user = String(req.query.user ?? 'u0');
      req.session.user = { id: user, name: `User ${user}`, roles: ['reader', 'writer'] };
      req.session.counter = 0;
      return { user };
    }
    read(req) {
      if (!req.session.user) throw noSession();
      return { user: req.session.user.id, counter: req.session.counter };
    }
    write(req) {
      if (!req.session.user) throw noSession();
      req.session.counter += 1;
      return { counter: req.session.counter };
    }
  }
  route(SessionController, 'login', Post('login'), HttpCode(200));
  route(SessionController, 'read', Get('read'));
  route(SessionController, 'write', Post('write'), HttpCode(200));
  Controller()(SessionController);
  return SessionController;
}

/** nest-none: the same routes and answers without sessions. */
function noneController() {
  let counter = 0;
  class NoneController {
    login(req) {
      return { user: String(req.query.user ?? 'u0') };
    }
    read() {
      return { user: 'u0', counter };
    }
    write() {
      return { counter: ++counter };
    }
  }
  route(NoneController, 'login', Post('login'), HttpCode(200));
  route(NoneController, 'read', Get('read'));
  route(NoneController, 'write', Post('write'), HttpCode(200));
  Controller()(NoneController);
  return NoneController;
}

/** Nest's own exception filter, which also prints unexpected errors (the logger is off). */
class LoggingExceptionFilter extends BaseExceptionFilter {
  catch(exception, host) {
    if (!(exception instanceof HttpException) || exception.getStatus() >= 500) {
      console.error(`request failed: ${exception?.stack ?? exception}`);
    }
    super.catch(exception, host);
  }
}
Catch()(LoggingExceptionFilter);

/** The Nest app on the variant's platform. */
async function createApp(AppModule) {
  if (!FASTIFY.includes(variant)) {
    const app = await NestFactory.create(AppModule, { logger: false });
    const express = app.getHttpAdapter().getInstance();
    express.disable('x-powered-by');
    express.disable('etag');
    return app;
  }
  const { FastifyAdapter } = await import('@nestjs/platform-fastify');
  const app = await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false });
  if (variant === 'nest-fastify-default-store') {
    const { default: cookie } = await import('@fastify/cookie');
    const { default: fastifySession } = await import('@fastify/session');
    const { store, ...options } = sessionOptions();
    await app.register(cookie);
    await app.register(fastifySession, {
      secret: FASTIFY_SECRET,
      cookie: { ...options.cookie, secure: false },
      rolling: options.rolling,
      saveUninitialized: options.saveUninitialized,
      store, // undefined: @fastify/session's default in-memory store
    });
  }
  return app;
}

async function main() {
  if (!VARIANTS.includes(variant)) {
    throw new Error(`unknown BENCH_VARIANT "${variant}" (${VARIANTS.join(', ')})`);
  }
  const imports = [];
  if (BY_MODULE.includes(variant)) {
    const options = sessionOptions();
    delete options.store; // the module provides it
    if (FASTIFY.includes(variant)) options.secret = FASTIFY_SECRET;
    // BENCH_MODULE_OPTIONS (JSON): extra module options, for experiments (e.g. saveBeforeResponse).
    const extra = JSON.parse(process.env.BENCH_MODULE_OPTIONS ?? '{}');
    imports.push(
      library().SessionCacheModule.forRoot(storeUrl, {
        ttl: 3600,
        // nest-lib-1-tls: memcacheds:// to a memcached -Z whose test CA the harness passes here
        ...(variant === 'nest-lib-1-tls' ? { tls: { ca: process.env.BENCH_TLS_CA } } : {}),
        ...extra,
        session: options,
      }),
    );
  }
  class AppModule {}
  Module({
    imports,
    controllers: [NONE.includes(variant) ? noneController() : sessionController()],
  })(AppModule);

  const app = await createApp(AppModule);
  app.useGlobalFilters(new LoggingExceptionFilter(app.getHttpAdapter()));
  let close = async () => undefined;
  if (BY_HAND[variant]) {
    const made = await makeStore(BY_HAND[variant], storeUrl);
    close = made.close;
    app.use(session(sessionOptions(made.store)));
  }

  await app.listen(0, '127.0.0.1');
  const server = app.getHttpServer();
  server.keepAliveTimeout = 60_000;
  console.log(`ready ${server.address().port}`);

  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    server.closeAllConnections?.();
    try {
      await app.close(); // closes the module's memcached client too
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
