import { CallHandler, ExecutionContext, Inject, Injectable, NestInterceptor } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { Session, SessionData } from 'express-session';
import { catchError, concatMap, Observable, throwError } from 'rxjs';
import { logger } from './session-cache.providers';
import { SessionCacheConfigError, SessionCacheError } from './session-cache.errors';
import {
  errorSummary,
  SESSION_HTTP_CONTEXT,
  setRetryAfter,
  toHttpException,
} from './session-cache.http';
import { sessionUnavailable } from './session.middleware';
import type { SessionHttpContext } from './session.middleware';
import type { SessionCache } from './memcached/session-cache.client';

type RequestWithSession = Request & { session?: Session & Partial<SessionData> };

/** JSON of the session without its cookie, as express-session hashes it. */
function snapshot(session: object): string {
  return JSON.stringify(session, function (this: unknown, key, value) {
    return this === session && key === 'cookie' ? undefined : value;
  });
}

const EMPTY = '{}';

function mapStoreError(err: unknown, res: Response, client: SessionCache): unknown {
  // Configuration mistakes stay what they are (a 500 that names the problem in the log).
  if (!(err instanceof SessionCacheError) || err instanceof SessionCacheConfigError) return err;
  logger.warn(`A session operation failed in a handler: ${errorSummary(err)}`);
  setRetryAfter(res, client, err);
  return toHttpException(err);
}

/**
 * @deprecated The module no longer registers this interceptor: it saves before the response by
 * wrapping the HTTP adapter's `reply()` (see `installSaveBeforeResponse`), and maps store errors
 * met in handlers with a global exception filter, both without a per-request rxjs pipeline.
 * Kept for apps that applied it themselves; it will be removed in the next major version.
 *
 * Two jobs, for HTTP handlers:
 * - saves a modified session after the handler returns and before Nest writes the response, so a
 *   failed save turns into an HTTP error (413 or 503) instead of a 200 whose data is lost;
 *   express-session then sees the session as saved and does not write it again;
 * - turns session store errors that a handler meets (`req.session.regenerate()`, `destroy()`,
 *   `save()`…) into the same HTTP errors instead of a 500.
 */
@Injectable()
export class SessionSaveInterceptor implements NestInterceptor {
  readonly #saveFirst: boolean;
  readonly #saveUninitialized: boolean;
  readonly #client: SessionCache;

  constructor(@Inject(SESSION_HTTP_CONTEXT) context: SessionHttpContext) {
    this.#client = context.store.client;
    this.#saveFirst = context.options.installMiddleware && context.options.saveBeforeResponse;
    this.#saveUninitialized = context.options.session.saveUninitialized ?? false;
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const http = context.switchToHttp();
    const req = http.getRequest<RequestWithSession>();
    const res = http.getResponse<Response>();
    const handled = next
      .handle()
      .pipe(catchError((err) => throwError(() => mapStoreError(err, res, this.#client))));
    // Lazy unavailability: the session is not there, and only reading it may answer 503.
    if (!this.#saveFirst || sessionUnavailable(req) !== undefined || !req.session) return handled;
    const state = { id: req.session.id, data: snapshot(req.session) };
    return handled.pipe(
      concatMap(async (value) => {
        await this.#saveIfChanged(req, res, state);
        return value;
      }),
    );
  }

  async #saveIfChanged(
    req: RequestWithSession,
    res: Response,
    state: { id: string; data: string },
  ) {
    const current = req.session;
    if (!current) return; // destroyed by the handler
    const data = snapshot(current);
    const regenerated = current.id !== state.id;
    if (regenerated ? data === EMPTY && !this.#saveUninitialized : data === state.data) return;
    try {
      await new Promise<void>((resolve, reject) =>
        current.save((err?: unknown) => (err ? reject(err) : resolve())),
      );
      state.id = current.id;
      state.data = data;
    } catch (err) {
      logger.warn(`A session could not be saved; answering with an error: ${errorSummary(err)}`);
      setRetryAfter(res, this.#client, err);
      throw toHttpException(err);
    }
  }
}
