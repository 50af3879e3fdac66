import { Inject, Injectable, NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import session from 'express-session';
import { logger, ResolvedSessionCacheOptions } from './session-cache.providers';
import {
  errorSummary,
  isUnavailable,
  SESSION_HTTP_CONTEXT,
  setRetryAfter,
  ThrottledWarning,
  toHttpException,
} from './session-cache.http';
import type { SessionStore } from './session.store';

/** What the middleware and the interceptor of one connection share. */
export interface SessionHttpContext {
  readonly store: SessionStore;
  readonly options: ResolvedSessionCacheOptions;
}

/**
 * Set on a request whose session could not be loaded under `onUnavailable: 'lazy'`: the error.
 * Its `req.session` throws a 503 on first use (see {@link deferUnavailable}).
 */
export const SESSION_UNAVAILABLE = Symbol.for('nestjs-session-cache:session-unavailable');

/** The store error that left this request without its session (lazy mode), if any. */
export function sessionUnavailable(req: object): unknown {
  return (req as { [SESSION_UNAVAILABLE]?: unknown })[SESSION_UNAVAILABLE];
}

/**
 * express-session on the {@link SessionStore}, as a Nest middleware. Store errors become Nest
 * HTTP exceptions (503 unavailable with `Retry-After`, 413 too large) that go through the app's
 * exception filters. When memcached cannot be reached, `onUnavailable` decides: `'lazy'` (default)
 * serves the request and answers 503 only if something reads or writes `req.session`; `'fail'`
 * answers 503 at once; `'proceed'` runs the handler without `req.session`.
 */
@Injectable()
export class SessionMiddleware implements NestMiddleware {
  readonly #handler: RequestHandler;
  readonly #store: SessionStore;
  readonly #mode: ResolvedSessionCacheOptions['onUnavailable'];
  readonly #unavailable = new ThrottledWarning((m) => logger.warn(m));
  readonly #late = new ThrottledWarning((m) => logger.warn(m));

  constructor(@Inject(SESSION_HTTP_CONTEXT) context: SessionHttpContext) {
    this.#handler = session({ ...context.options.session, store: context.store }) as RequestHandler;
    this.#store = context.store;
    this.#mode = context.options.onUnavailable;
  }

  use(req: Request, res: Response, next: NextFunction): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let first = true;
      const done = (err?: unknown) => {
        if (!first) {
          // express-session saves or touches after the response was written and reports a
          // failure through next() a second time: nothing can reach the client any more.
          if (err) {
            this.#late.emit(
              `A session could not be saved or refreshed after its response was sent: ${errorSummary(err)}`,
            );
          }
          return;
        }
        first = false;
        if (!err) {
          resolve();
          next();
        } else if (this.#mode === 'proceed' && isUnavailable(err)) {
          this.#unavailable.emit(`Serving a request without its session: ${errorSummary(err)}`);
          resolve();
          next();
        } else if (this.#mode === 'lazy' && isUnavailable(err)) {
          this.#unavailable.emit(
            `Sessions are unavailable; requests that use req.session are answered 503: ${errorSummary(err)}`,
          );
          deferUnavailable(req, res, err, this.#store);
          resolve();
          next();
        } else {
          if (isUnavailable(err)) this.#unavailable.emit(`Answering 503: ${errorSummary(err)}`);
          setRetryAfter(res, this.#store.client, err);
          reject(toHttpException(err));
        }
      };
      try {
        this.#handler(req, res, done);
      } catch (err) {
        done(err);
      }
    });
  }
}

/**
 * Lazy unavailability: the request goes on without its session, and the first read or write of
 * `req.session` (a guard, a pipe, `@Session()`, the handler) throws a 503 `HttpException` with
 * `Retry-After`, which the app's exception filters answer. Before the response is written,
 * `req.session` becomes plain `undefined` again, so express-session's own end-of-request code
 * (which reads it) neither throws nor saves anything nor sets a cookie.
 */
function deferUnavailable(req: Request, res: Response, err: unknown, store: SessionStore): void {
  const settle = () => {
    Object.defineProperty(req, 'session', {
      value: undefined,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  };
  Object.defineProperty(req, SESSION_UNAVAILABLE, { value: err, configurable: true });
  // Not enumerable: spreading or inspecting the request does not count as using the session.
  Object.defineProperty(req, 'session', {
    enumerable: false,
    configurable: true,
    get() {
      setRetryAfter(res, store.client, err);
      throw toHttpException(err);
    },
    set(value: unknown) {
      Object.defineProperty(req, 'session', {
        value,
        writable: true,
        enumerable: true,
        configurable: true,
      });
    },
  });
  // Wrapped after express-session wrapped them, so these run first.
  const { end, writeHead } = res;
  res.end = function (this: Response, ...args: unknown[]) {
    settle();
    return (end as (...a: unknown[]) => Response).apply(this, args);
  } as Response['end'];
  res.writeHead = function (this: Response, ...args: unknown[]) {
    settle();
    return (writeHead as (...a: unknown[]) => Response).apply(this, args);
  } as Response['writeHead'];
}
