import type { HttpServer } from '@nestjs/common';
import type { Request, Response } from 'express';
import { logger } from './session-cache.providers';
import { errorSummary, setRetryAfter, toHttpException } from './session-cache.http';
import { sessionUnavailable } from './session.middleware';
import type { SessionStore } from './session.store';

type Reply = HttpServer['reply'];

/**
 * Save before the response: express-session writes the response before its own save has
 * finished, so a failed save would reach the client as a 200 whose data is lost. This wraps the
 * HTTP adapter's `reply()` (what Nest calls with a handler's result): when the request's session
 * (of `store`) changed, it is saved first, and only then is the response written. A failed save
 * rejects the promise `reply()` returns; Nest awaits it, so the 413/503 goes through the route's
 * exception filters, and the session is dropped from the request (nothing is saved later, no
 * cookie is set).
 *
 * Cost: nothing for requests without a session of this store; one serialization of the session
 * for the others (compared with what was loaded, and reused by the save when it changed). No
 * interceptor, no snapshot before the handler. Error answers (status >= 400) and handlers that
 * write the response themselves (`@Res()`) are not held: express-session saves after them.
 */
export function installSaveBeforeResponse(adapter: HttpServer, store: SessionStore): void {
  const reply: Reply = adapter.reply;
  adapter.reply = function (this: HttpServer, response: Response, body: unknown, status?: number) {
    const req = (response as { req?: Request }).req;
    if (
      req === undefined ||
      (req as { sessionStore?: unknown }).sessionStore !== store ||
      response.headersSent ||
      (status ?? response.statusCode) >= 400 ||
      sessionUnavailable(req) !== undefined
    ) {
      return reply.call(this, response, body, status);
    }
    const session = req.session as (Request['session'] & { id?: string }) | undefined;
    if (!session || !store.sessionChanged(session)) return reply.call(this, response, body, status);
    const answered = new Promise<void>((resolve, reject) =>
      session.save((err?: unknown) => (err ? reject(err) : resolve())),
    ).then(
      () => reply.call(this, response, body, status),
      (err: unknown) => {
        logger.warn(`A session could not be saved; answering with an error: ${errorSummary(err)}`);
        Object.defineProperty(req, 'session', {
          value: undefined,
          writable: true,
          enumerable: true,
          configurable: true,
        });
        setRetryAfter(response, store.client, err);
        const exception = toHttpException(err);
        // Nest awaits reply(), and its exception filters answer. Should a caller not await it,
        // the request must not hang: answer it here once the filters had their turn.
        setImmediate(() => {
          if (!response.headersSent) {
            reply.call(this, response, exception.getResponse(), exception.getStatus());
          }
        });
        throw exception;
      },
    );
    answered.catch(() => undefined); // handled by whoever awaits it (see above), never unhandled
    return answered;
  } as Reply;
}
