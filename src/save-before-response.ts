import type { HttpServer } from '@nestjs/common';
import { logger } from './session-cache.providers';
import {
  errorSummary,
  type HttpResponse,
  setRetryAfter,
  toHttpException,
} from './session-cache.http';
import { sessionUnavailable, setRequestSession } from './session.middleware';
import type { SessionCache } from './memcached/session-cache.client';

type Reply = HttpServer['reply'];

/** A session object of either platform, as far as saving it goes. */
interface SavableSession {
  save(callback: (err?: unknown) => void): unknown;
}

/**
 * What save-before-response needs to know of the platform's session layer: `store` is what
 * `req.sessionStore` is for requests whose sessions it manages (the `SessionStore` for
 * express-session, the bridge @fastify/session sees as its store on Fastify), `changed` whether a
 * session differs from what was loaded (see `SessionStore.sessionChanged`).
 */
export interface SessionsToSave {
  readonly store: object;
  readonly client: SessionCache;
  changed(session: SavableSession): boolean;
}

/**
 * Save before the response: the session layer (express-session, @fastify/session) writes the
 * response before its own save has finished, so a failed save would reach the client as a 200
 * whose data is lost. This wraps the HTTP adapter's `reply()` (what Nest calls with a handler's
 * result; the response is Express's, or a Fastify reply whose `request` is the request): when the
 * request's session changed, it is saved first, and only then is the response written. A failed
 * save rejects the promise `reply()` returns; Nest awaits it, so the 413/503 goes through the
 * route's exception filters, and the session is dropped from the request (nothing is saved later,
 * no cookie is set).
 *
 * Cost: nothing for requests without a session of this store; one serialization of the session
 * for the others (compared with what was loaded, and reused by the save when it changed). No
 * interceptor, no snapshot before the handler. Error answers (status >= 400) and handlers that
 * write the response themselves (`@Res()`) are not held: the session layer saves after them.
 */
export function installSaveBeforeResponse(adapter: HttpServer, sessions: SessionsToSave): void {
  const reply: Reply = adapter.reply;
  const { store, client } = sessions;
  adapter.reply = function (
    this: HttpServer,
    response: HttpResponse & { statusCode: number },
    body: unknown,
    status?: number,
  ) {
    const req = requestOf(response);
    if (
      req === undefined ||
      req.sessionStore !== store ||
      adapter.isHeadersSent(response) ||
      (status ?? response.statusCode) >= 400 ||
      sessionUnavailable(req) !== undefined
    ) {
      return reply.call(this, response, body, status);
    }
    const session = req.session as SavableSession | null | undefined;
    if (
      !session ||
      // (@fastify/session leaves a plain object on requests outside the cookie's path.)
      typeof session.save !== 'function' ||
      !sessions.changed(session)
    ) {
      return reply.call(this, response, body, status);
    }
    const answered = new Promise<void>((resolve, reject) =>
      session.save((err?: unknown) => (err ? reject(err) : resolve())),
    ).then(
      () => reply.call(this, response, body, status),
      (err: unknown) => {
        logger.warn(`A session could not be saved; answering with an error: ${errorSummary(err)}`);
        setRequestSession(req, undefined);
        setRetryAfter(response, client, err);
        const exception = toHttpException(err);
        // Nest awaits reply(), and its exception filters answer. Should a caller not await it,
        // the request must not hang: answer it here once the filters had their turn.
        setImmediate(() => {
          if (!adapter.isHeadersSent(response)) {
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

interface SessionRequest {
  sessionStore?: unknown;
  session?: unknown;
}

/** The request of a response: Express's `res.req`, a Fastify reply's `reply.request`. */
function requestOf(response: object): SessionRequest | undefined {
  return (
    (response as { req?: SessionRequest }).req ?? (response as { request?: SessionRequest }).request
  );
}
