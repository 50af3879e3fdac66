import { Inject, Injectable, NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import session from 'express-session';
import { logger, ResolvedSessionCacheOptions } from './session-cache.providers';
import {
  errorSummary,
  type HttpResponse,
  isUnavailable,
  SESSION_HTTP_CONTEXT,
  setRetryAfter,
  ThrottledWarning,
  toHttpException,
} from './session-cache.http';
import { SessionCacheConfigError, SessionCacheError } from './session-cache.errors';
import type { SessionStore } from './store/session.store';
import type { SessionCache } from './memcached/session-cache.client';

/** What the middleware and the interceptor of one connection share. */
export interface SessionHttpContext {
  readonly store: SessionStore;
  readonly options: ResolvedSessionCacheOptions;
}

/**
 * Set on a request whose session could not be loaded and is deferred (see
 * {@link deferSessionError}): the error. Its `req.session` throws an HTTP exception on first use.
 */
export const SESSION_UNAVAILABLE = Symbol.for('nestjs-session-cache:session-unavailable');

/** The store error that left this request without its session (lazy mode), if any. */
export function sessionUnavailable(req: object): unknown {
  return (req as { [SESSION_UNAVAILABLE]?: unknown })[SESSION_UNAVAILABLE];
}

/**
 * express-session on the {@link SessionStore}, with this library's error policy, as a plain
 * `(req, res, next)` handler. `fail(err)` receives the errors that must answer the request at once
 * (every load error with `onUnavailable: 'fail'`); without `fail`, those are deferred like the
 * others. Otherwise, when the session cannot be loaded:
 * - memcached unreachable, `'lazy'` (default): the request goes on, and the first use of
 *   `req.session` throws the 503 (see {@link deferSessionError});
 * - memcached unreachable, `'proceed'`: the request goes on with `req.session` undefined;
 * - any other store error (e.g. memcached refused the read): deferred like `'lazy'`, with the
 *   error's own HTTP answer.
 * Failures of express-session's own saves after the response was sent can only be logged.
 */
export function createSessionHandler(
  context: SessionHttpContext,
  fail?: (err: unknown, req: Request, res: Response) => void,
): (req: Request, res: Response, next: NextFunction) => void {
  const handler = session({ ...context.options.session, store: context.store }) as RequestHandler;
  const { store } = context;
  const mode = context.options.onUnavailable;
  const unavailable = new ThrottledWarning((m) => logger.warn(m));
  const late = new ThrottledWarning((m) => logger.warn(m));
  return (req, res, next) => {
    let first = true;
    const done = (err?: unknown) => {
      if (!first) {
        // express-session saves or touches after the response was written and reports a
        // failure through next() a second time: nothing can reach the client any more.
        if (err) {
          late.emit(
            `A session could not be saved or refreshed after its response was sent: ${errorSummary(err)}`,
          );
        }
        return;
      }
      first = false;
      if (!err) {
        next();
      } else if (mode === 'proceed' && isUnavailable(err)) {
        unavailable.emit(proceedingLoadFailure(err));
        next();
      } else if (fail) {
        if (isUnavailable(err)) unavailable.emit(failedLoadFailure(err));
        fail(err, req, res);
      } else if (err instanceof SessionCacheError && !(err instanceof SessionCacheConfigError)) {
        unavailable.emit(deferredLoadFailure(err));
        deferSessionError(req, res, err, store);
        next();
      } else {
        next(err);
      }
    };
    try {
      handler(req, res, done);
    } catch (err) {
      done(err);
    }
  };
}

/**
 * express-session as a Nest middleware, for apps that limit it to some routes (`forRoutes`,
 * `exclude`) or answer 503 at once (`onUnavailable: 'fail'`): errors it must answer become Nest
 * HTTP exceptions (503 with `Retry-After`, 413) that go through the app's exception filters. With
 * the default routes and modes the module mounts {@link createSessionHandler} on the HTTP platform
 * itself instead (no per-request Nest middleware plumbing).
 */
@Injectable()
export class SessionMiddleware implements NestMiddleware {
  readonly #handle: ReturnType<typeof createSessionHandler>;
  /** The rejecter of the promise `use()` returned for a request (only with 'fail'). */
  readonly #rejecters = new WeakMap<Request, (err: unknown) => void>();

  constructor(@Inject(SESSION_HTTP_CONTEXT) context: SessionHttpContext) {
    const { store } = context;
    this.#handle = createSessionHandler(
      context,
      context.options.onUnavailable === 'fail'
        ? (err, req, res) => {
            setRetryAfter(res, store.client, err);
            this.#rejecters.get(req)?.(toHttpException(err));
          }
        : undefined,
    );
  }

  /** Nest answers a rejected promise through the app's exception filters. */
  use(req: Request, res: Response, next: NextFunction): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#rejecters.set(req, reject);
      this.#handle(req, res, (err?: unknown) => {
        if (err) {
          reject(err);
          return;
        }
        resolve();
        next();
      });
    });
  }
}

/**
 * Deferred session errors (lazy unavailability): the request goes on without its session, and
 * the first read or write of `req.session` (a guard, a pipe, `@Session()`, the handler) throws
 * the error's HTTP exception (503 with `Retry-After`), which the app's exception filters answer.
 * Before the response is written, `req.session` becomes plain `undefined` again, so
 * express-session's own end-of-request code (which reads it) neither throws nor saves anything
 * nor sets a cookie.
 */
export function deferSessionError(
  req: Request,
  res: Response,
  err: unknown,
  store: SessionStore,
): void {
  deferSession(req, res, err, store.client);
  // Wrapped after express-session wrapped them, so these run first.
  const { end, writeHead } = res;
  res.end = function (this: Response, ...args: unknown[]) {
    settleDeferredSession(req);
    return (end as (...a: unknown[]) => Response).apply(this, args);
  } as Response['end'];
  res.writeHead = function (this: Response, ...args: unknown[]) {
    settleDeferredSession(req);
    return (writeHead as (...a: unknown[]) => Response).apply(this, args);
  } as Response['writeHead'];
}

/**
 * The platform-neutral half of {@link deferSessionError}: marks `req` (see
 * {@link sessionUnavailable}) and makes `req.session` throw `err`'s HTTP exception on first use
 * (setting `Retry-After` on `res` for a 503); assigning it replaces the getter. The caller must
 * call {@link settleDeferredSession} before the session layer's end-of-request code reads it.
 */
export function deferSession(
  req: object,
  res: HttpResponse,
  err: unknown,
  client: SessionCache,
): void {
  Object.defineProperty(req, SESSION_UNAVAILABLE, { value: err, configurable: true });
  // Not enumerable: spreading or inspecting the request does not count as using the session.
  Object.defineProperty(req, 'session', {
    enumerable: false,
    configurable: true,
    get() {
      setRetryAfter(res, client, err);
      throw toHttpException(err);
    },
    set(value: unknown) {
      setRequestSession(req, value);
    },
  });
}

/** The warnings of a session that could not be loaded, by what the request gets (both platforms). */
export const proceedingLoadFailure = (err: unknown) =>
  `Serving a request without its session: ${errorSummary(err)}`;
export const failedLoadFailure = (err: unknown) => `Answering 503: ${errorSummary(err)}`;
export const deferredLoadFailure = (err: unknown) =>
  isUnavailable(err)
    ? `Sessions are unavailable; requests that use req.session are answered 503: ${errorSummary(err)}`
    : `A session could not be loaded; requests that use it get an error: ${errorSummary(err)}`;

/** Makes `req.session` plain `undefined` (no session, nothing to save, no cookie to set). */
export function settleDeferredSession(req: object): void {
  setRequestSession(req, undefined);
}

/** `req.session = value` as a plain property again, whatever getter was defined there. */
export function setRequestSession(req: object, value: unknown): void {
  Object.defineProperty(req, 'session', {
    value,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}
