import type { HttpServer } from '@nestjs/common';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { installSaveBeforeResponse } from '../save-before-response';
import { logger } from '../session-cache.providers';
import { SessionCacheConfigError } from '../session-cache.errors';
import {
  errorSummary,
  isUnavailable,
  setRetryAfter,
  ThrottledWarning,
  toHttpException,
} from '../session-cache.http';
import {
  deferredLoadFailure,
  deferSession,
  failedLoadFailure,
  proceedingLoadFailure,
  sessionUnavailable,
  settleDeferredSession,
  type SessionHttpContext,
} from '../session.middleware';
import { FastifySessionBridge, type FastifySession } from './fastify-session.bridge';
import { toFastifySessionOptions } from './fastify-session.options';

/** Marks a Fastify instance on which a connection installed its sessions: the connection's name. */
const INSTALLED = Symbol.for('nestjs-session-cache:fastify-sessions');

/** A Fastify plugin function as `register()` takes it. */
type Plugin = (instance: FastifyInstance, options: Record<string, unknown>) => Promise<void>;

/** The request as the hooks see it: @fastify/session's `session` (the types are not loaded). */
type SessionRequest = FastifyRequest & { session?: unknown };

const MISSING_PACKAGES =
  'On Fastify, SessionCacheModule needs @fastify/session (11.x) and @fastify/cookie (11.x): ' +
  'npm install @fastify/session@^11 @fastify/cookie@^11';

/** Loads an optional peer dependency (only ever on the Fastify path). */
async function loadPlugin(name: '@fastify/session' | '@fastify/cookie'): Promise<Plugin> {
  let loaded: { default?: unknown };
  try {
    loaded = (await import(name)) as { default?: unknown };
  } catch (err) {
    throw new SessionCacheConfigError(`${MISSING_PACKAGES} (${errorSummary(err)}).`);
  }
  const plugin = (loaded.default ?? loaded) as Plugin;
  if (typeof plugin !== 'function') {
    throw new SessionCacheConfigError(`${MISSING_PACKAGES} (${name} exports no plugin).`);
  }
  return plugin;
}

/** Like fastify-plugin: registered on the instance itself, so its hooks apply to every route. */
function rootPlugin(name: string, plugin: Plugin): Plugin {
  return Object.assign(plugin, {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: name,
  });
}

/**
 * The module's session layer on Nest's Fastify platform: @fastify/session (and @fastify/cookie,
 * unless the app registered it already) on the Fastify instance, with a
 * {@link FastifySessionBridge} to the module's store as its store, around hooks that give it the
 * module's policies:
 *
 * - `onRequest`, after @fastify/session's: takes the bridge's record off the loaded session;
 *   a session that could not be loaded is handled per `onUnavailable` (lazy: `req.session`
 *   throws the 503 on first use; fail: the request is answered 503 through the app's exception
 *   filters; proceed: `req.session` is undefined);
 * - `onSend`, before @fastify/session's: a request whose session was deferred has none (nothing
 *   is saved, no cookie set);
 * - `onSend`, after @fastify/session's: the store's lazy touch of a loaded session that was not
 *   saved, as express-session touches.
 *
 * Save-before-response wraps the adapter's `reply()` as on Express. Called from the module's
 * `configure()`, which Nest awaits before it registers the routes.
 */
export async function installFastifySessions(
  adapter: HttpServer,
  context: SessionHttpContext,
): Promise<void> {
  const { options, store } = context;
  if (options.forRoutes?.length || options.exclude?.length) {
    throw new SessionCacheConfigError(
      'forRoutes and exclude are not supported on Fastify: @fastify/session runs for every ' +
        'route (a route that never uses req.session costs no memcached request without a ' +
        'session cookie, and is served while memcached is down). Leave them out, or set ' +
        '`installMiddleware: false` and register @fastify/session yourself.',
    );
  }
  const sessionOptions = toFastifySessionOptions(options.session);
  const instance = adapter.getInstance() as FastifyInstance & { [INSTALLED]?: string };
  if (instance[INSTALLED] !== undefined) {
    throw new SessionCacheConfigError(
      `SessionCacheModule connection "${options.name}" cannot install sessions on Fastify: ` +
        `connection "${instance[INSTALLED]}" did (a Fastify instance has one @fastify/session). ` +
        'Give the other connections `installMiddleware: false`.',
    );
  }
  // Marked before the first await: the modules' configure() calls run concurrently.
  instance[INSTALLED] = options.name;
  if (instance.hasPlugin('@fastify/session')) {
    throw new SessionCacheConfigError(
      '@fastify/session is registered already: SessionCacheModule registers it with its store. ' +
        'Remove your registration, or set `installMiddleware: false` to keep yours.',
    );
  }
  const [cookiePlugin, sessionPlugin] = await Promise.all([
    loadPlugin('@fastify/cookie'),
    loadPlugin('@fastify/session'),
  ]);
  const bridge = new FastifySessionBridge(store);
  const { client } = store;
  const mode = options.onUnavailable;
  const unavailable = new ThrottledWarning((m) => logger.warn(m));
  const late = new ThrottledWarning((m) => logger.warn(m));

  const adopt = (request: SessionRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    const record = bridge.adopt(request.session);
    const err = record?.error;
    if (err === undefined) {
      done();
    } else if (mode === 'proceed' && isUnavailable(err)) {
      unavailable.emit(proceedingLoadFailure(err));
      request.session = undefined;
      done();
    } else if (mode === 'fail') {
      if (isUnavailable(err)) unavailable.emit(failedLoadFailure(err));
      settleDeferredSession(request);
      setRetryAfter(reply, client, err);
      done(toHttpException(err));
    } else {
      unavailable.emit(deferredLoadFailure(err));
      deferSession(request, reply, err, client);
      done();
    }
  };

  const settle = (
    request: SessionRequest,
    _reply: FastifyReply,
    payload: unknown,
    done: (err: null, payload: unknown) => void,
  ) => {
    if (sessionUnavailable(request) !== undefined) settleDeferredSession(request);
    done(null, payload);
  };

  const finish = (
    request: SessionRequest,
    reply: FastifyReply,
    payload: unknown,
    done: (err: null, payload: unknown) => void,
  ) => {
    keepLastCookie(reply, sessionOptions.cookieName);
    const touching = bridge.touchUnsaved(request.session);
    if (touching === undefined) {
      done(null, payload);
      return;
    }
    touching.then(
      () => done(null, payload),
      (err: unknown) => {
        // As with express-session: the answer is ready, a failed refresh can only be logged.
        late.emit(`A session could not be refreshed: ${errorSummary(err)}`);
        done(null, payload);
      },
    );
  };

  const plugin = rootPlugin('nestjs-session-cache', async (fastify) => {
    if (!fastify.hasPlugin('@fastify/cookie')) await fastify.register(cookiePlugin);
    fastify.addHook('onSend', settle);
    await fastify.register(sessionPlugin, { ...sessionOptions, store: bridge });
    fastify.addHook('onRequest', adopt);
    fastify.addHook('onSend', finish);
  });
  await instance.register(plugin);

  if (options.saveBeforeResponse) {
    installSaveBeforeResponse(adapter, {
      store: bridge,
      client,
      changed: (session) => bridge.sessionChanged(session as FastifySession),
    });
  }
}

/**
 * A response sets the session cookie once: when a handler regenerated the session and the module
 * saved it before the response, @fastify/session clears the request's old cookie and then sets
 * the new one, in two headers. Browsers would end with the new one; the old one's removal is
 * dropped here, so that the response reads as on Express.
 */
function keepLastCookie(reply: FastifyReply, name: string): void {
  const header = reply.getHeader('set-cookie');
  if (!Array.isArray(header) || header.length < 2) return;
  const prefix = `${name}=`;
  const ours = header.filter((c) => String(c).startsWith(prefix));
  if (ours.length < 2) return;
  const last = ours[ours.length - 1];
  reply.removeHeader('set-cookie');
  reply.header(
    'set-cookie',
    header.filter((c) => c === last || !String(c).startsWith(prefix)),
  );
}
