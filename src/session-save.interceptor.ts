import { CallHandler, ExecutionContext, Inject, Injectable, NestInterceptor } from '@nestjs/common';
import type { Request } from 'express';
import type { Session, SessionData } from 'express-session';
import { concatMap, Observable } from 'rxjs';
import { logger } from './session-cache.providers';
import { errorSummary, SESSION_HTTP_CONTEXT, toHttpException } from './session-cache.http';
import type { SessionHttpContext } from './session.middleware';

type RequestWithSession = Request & { session?: Session & Partial<SessionData> };

/** JSON of the session without its cookie, as express-session hashes it. */
function snapshot(session: object): string {
  return JSON.stringify(session, function (this: unknown, key, value) {
    return this === session && key === 'cookie' ? undefined : value;
  });
}

const EMPTY = '{}';

/**
 * Saves a modified session after the handler returns and before Nest writes the response, so a
 * failed save turns into an HTTP error (413 or 503) instead of a 200 whose data is lost.
 * express-session then sees the session as saved and does not write it again.
 */
@Injectable()
export class SessionSaveInterceptor implements NestInterceptor {
  readonly #enabled: boolean;
  readonly #saveUninitialized: boolean;

  constructor(@Inject(SESSION_HTTP_CONTEXT) context: SessionHttpContext) {
    this.#enabled = context.options.installMiddleware && context.options.saveBeforeResponse;
    this.#saveUninitialized = context.options.session.saveUninitialized ?? false;
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (!this.#enabled || context.getType() !== 'http') return next.handle();
    const req = context.switchToHttp().getRequest<RequestWithSession>();
    if (!req.session) return next.handle();
    const state = { id: req.session.id, data: snapshot(req.session) };
    return next.handle().pipe(
      concatMap(async (value) => {
        await this.#saveIfChanged(req, state);
        return value;
      }),
    );
  }

  async #saveIfChanged(req: RequestWithSession, state: { id: string; data: string }) {
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
      throw toHttpException(err);
    }
  }
}
