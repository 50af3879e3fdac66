import { Inject, Injectable, NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import session from 'express-session';
import { logger, ResolvedSessionCacheOptions } from './session-cache.providers';
import {
  errorSummary,
  isUnavailable,
  SESSION_HTTP_CONTEXT,
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
 * express-session on the {@link SessionStore}, as a Nest middleware. Store errors become Nest
 * HTTP exceptions (503 unavailable, 413 too large) that go through the app's exception filters;
 * with `onUnavailable: 'proceed'` an unreachable memcached only costs the request its session.
 */
@Injectable()
export class SessionMiddleware implements NestMiddleware {
  readonly #handler: RequestHandler;
  readonly #proceed: boolean;
  readonly #unavailable = new ThrottledWarning((m) => logger.warn(m));
  readonly #late = new ThrottledWarning((m) => logger.warn(m));

  constructor(@Inject(SESSION_HTTP_CONTEXT) context: SessionHttpContext) {
    this.#handler = session({ ...context.options.session, store: context.store }) as RequestHandler;
    this.#proceed = context.options.onUnavailable === 'proceed';
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
        } else if (this.#proceed && isUnavailable(err)) {
          this.#unavailable.emit(`Serving a request without its session: ${errorSummary(err)}`);
          resolve();
          next();
        } else {
          if (isUnavailable(err)) this.#unavailable.emit(`Answering 503: ${errorSummary(err)}`);
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
