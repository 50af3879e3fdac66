import { CanActivate, ExecutionContext, Injectable, UnauthorizedException } from '@nestjs/common';
import type { SessionData } from 'express-session';

/** Name of the sample's session cookie (express-session's default is `connect.sid`). */
export const SESSION_COOKIE = 'sample.sid';

export interface SessionUser {
  username: string;
  loggedInAt: string;
}

/**
 * What the sample keeps in a session. Apps usually add these fields to express-session's
 * `SessionData` with `declare module 'express-session'`; the sample keeps them local so that its
 * types do not leak into the library's own tests, which share one TypeScript program.
 */
export interface SampleSessionData extends SessionData {
  user?: SessionUser;
  visits?: number;
}

/**
 * The session as the sample uses it, on either platform: express-session's and @fastify/session's
 * sessions both take fields, and callback `regenerate()` and `destroy()`.
 */
export type SampleSession = Partial<SampleSessionData> & {
  regenerate(callback: (err?: unknown) => void): void;
  destroy(callback: (err?: unknown) => void): void;
};

/** The request of either platform (Express's, or Fastify's), as far as the sample goes. */
export interface SampleRequest {
  session?: SampleSession | null;
}

/** What the sample does with the response of either platform: clear a cookie. */
export interface SampleResponse {
  clearCookie(name: string, options: { path: string }): unknown;
}

/** The request's session, typed with the sample's fields. */
export function sessionOf(req: SampleRequest): SampleSession {
  return req.session as SampleSession;
}

/** `req.session.regenerate()` as a promise: a new id, the old session deleted from memcached. */
export function regenerate(req: SampleRequest): Promise<SampleSession> {
  return new Promise((resolve, reject) =>
    sessionOf(req).regenerate((err: unknown) => (err ? reject(err) : resolve(sessionOf(req)))),
  );
}

/** `req.session.destroy()` as a promise: the session deleted from memcached. */
export function destroy(req: SampleRequest): Promise<void> {
  return new Promise((resolve, reject) =>
    sessionOf(req).destroy((err: unknown) => (err ? reject(err) : resolve())),
  );
}

/** Lets a request through only when its session has a logged-in user (401 otherwise). */
@Injectable()
export class LoggedInGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<SampleRequest>();
    // `req.session` is missing only when the library runs with `onUnavailable: 'proceed'`.
    const session = req.session;
    if (!session?.user) throw new UnauthorizedException('Not logged in');
    return true;
  }
}
