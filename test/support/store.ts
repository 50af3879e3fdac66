import { Cookie, Session } from 'express-session';
import type { SessionData } from 'express-session';
import type { Request } from 'express';
import type { SessionStore } from '../../src';
import { decodeValue } from '../../src/store/value-header';

/** The serializer's bytes of a stored session value (its header stripped), as text. */
export function storedPayload(raw: Buffer | null): string | null {
  return raw === null ? null : decodeValue(raw).payload.toString('utf8');
}

/** A logger that keeps what it was told, for assertions. */
export class RecordingLogger {
  readonly warnings: string[] = [];
  readonly debugs: string[] = [];
  warn(message: string): void {
    this.warnings.push(message);
  }
  debug(message: string): void {
    this.debugs.push(message);
  }
}

/** A request-like object, enough for express-session's Session and Store.createSession. */
export function fakeRequest(store: SessionStore, sid: string): Request {
  return { sessionID: sid, sessionStore: store } as unknown as Request;
}

/** A session with free-form test fields. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- test data of any shape
export type TestSession = Session & SessionData & { [field: string]: any };

/** express-session's Session class; its constructor is public at run time, private in the types. */
const SessionClass = Session as unknown as new (req: Request) => TestSession;
const CookieClass = Cookie as unknown as new (options: object) => Cookie;

/** A new session (as express-session's generate() makes one) with the given cookie options. */
export function newSession(
  store: SessionStore,
  sid: string,
  data: Record<string, unknown> = {},
  cookie: { maxAge?: number; expires?: Date } = {},
): TestSession {
  const req = fakeRequest(store, sid);
  const session = new SessionClass(req);
  session.cookie = new CookieClass(cookie);
  Object.assign(session, data);
  return session;
}

/** Promise forms of the callback API. */
export function storeGet(
  store: SessionStore,
  sid: string,
): Promise<SessionData | null | undefined> {
  return new Promise((resolve, reject) =>
    store.get(sid, (err, session) => (err ? reject(err) : resolve(session as TestSession))),
  );
}
export function storeSet(store: SessionStore, sid: string, session: SessionData): Promise<void> {
  return new Promise((resolve, reject) =>
    store.set(sid, session, (err) => (err ? reject(err) : resolve())),
  );
}
export function storeTouch(store: SessionStore, sid: string, session: SessionData): Promise<void> {
  return new Promise((resolve, reject) =>
    store.touch(sid, session, (err) => (err ? reject(err) : resolve())),
  );
}
export function storeDestroy(store: SessionStore, sid: string): Promise<void> {
  return new Promise((resolve, reject) =>
    store.destroy(sid, (err) => (err ? reject(err) : resolve())),
  );
}

/** Loads a session the way express-session does: get, then createSession. */
export async function loadSession(store: SessionStore, sid: string): Promise<TestSession | null> {
  const data = await storeGet(store, sid);
  if (!data) return null;
  return store.createSession(fakeRequest(store, sid), data) as TestSession;
}
