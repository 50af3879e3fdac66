import type { SessionData } from 'express-session';

/**
 * Turns sessions into bytes and back. The default is JSON. A custom serializer's `parse` may throw
 * on bad input: the store then counts the value as no session and logs a warning.
 */
export interface SessionSerializer {
  stringify(session: SessionData): string | Buffer;
  parse(raw: Buffer): unknown;
}

/** The default serializer: UTF-8 JSON. */
export const jsonSessionSerializer: SessionSerializer = {
  stringify: (session) => JSON.stringify(session),
  parse: (raw) => JSON.parse(raw.toString('utf8')),
};
