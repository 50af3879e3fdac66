import { CanActivate, ExecutionContext, Injectable, UnauthorizedException } from '@nestjs/common';
import type { Request } from 'express';
import type { Session, SessionData } from 'express-session';

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

export type SampleSession = Session & Partial<SampleSessionData>;

/** The request's session, typed with the sample's fields. */
export function sessionOf(req: Request): SampleSession {
  return req.session as SampleSession;
}

/** `req.session.regenerate()` as a promise: a new id, the old session deleted from memcached. */
export function regenerate(req: Request): Promise<SampleSession> {
  return new Promise((resolve, reject) =>
    req.session.regenerate((err: unknown) => (err ? reject(err) : resolve(sessionOf(req)))),
  );
}

/** `req.session.destroy()` as a promise: the session deleted from memcached. */
export function destroy(req: Request): Promise<void> {
  return new Promise((resolve, reject) =>
    req.session.destroy((err: unknown) => (err ? reject(err) : resolve())),
  );
}

/** Lets a request through only when its session has a logged-in user (401 otherwise). */
@Injectable()
export class LoggedInGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<Request>();
    // `req.session` is missing only when the library runs with `onUnavailable: 'proceed'`.
    const session = req.session as SampleSession | undefined;
    if (!session?.user) throw new UnauthorizedException('Not logged in');
    return true;
  }
}
