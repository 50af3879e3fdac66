import type { SessionData } from 'express-session';

/**
 * Seconds added to every TTL the store sends: memcached's clock ticks in whole seconds, and an item
 * stored with TTL n lives between n − 1 and n seconds (measured: a 3 s TTL lived 2.1 to 2.9 s).
 */
export const CLOCK_MARGIN = 1;

/**
 * The TTL rule: how long memcached must keep a session, from its cookie. Every TTL the store sends
 * (sessions, touches, read-repairs, tombstones, user indexes) comes from {@link withSlack}, so a
 * session never expires from memcached before its cookie does.
 */
export class SessionTtl {
  constructor(
    /** Seconds for a browser-session cookie (no `expires`): the store's `ttl` option. */
    readonly ttl: number,
    /** The fraction of a lifetime added as slack: the store's `lazyTouch` option. */
    readonly lazyTouch: number,
  ) {}

  /**
   * The TTL to send for something that must live `seconds` from now: that lifetime plus the
   * lazy-touch slack, rounded up to whole seconds (ignoring floating-point dust: 3600 × 1.1 is
   * 3960.0000000000005), at least 1, plus {@link CLOCK_MARGIN}.
   */
  withSlack(seconds: number): number {
    return Math.max(1, Math.ceil(seconds * (1 + this.lazyTouch) - 1e-6)) + CLOCK_MARGIN;
  }

  /**
   * Seconds the session should live in memcached from now: until its cookie expires (`ttl` for a
   * browser-session cookie), with slack; `null` when the cookie has already expired.
   */
  ttlOf(session: SessionData): number | null {
    const ms = remainingMs(session);
    if (ms !== undefined && ms <= 0) return null;
    return this.withSlack(ms === undefined ? this.ttl : ms / 1000);
  }

  /** The TTL a touch at this moment would give: the cookie's full maxAge (or `ttl`), with slack. */
  fullTtl(session: SessionData): number {
    const life = lifeOf(session);
    return this.withSlack(life === null ? this.ttl : life / 1000);
  }

  /** The Unix second until which the session's cookie needs it (now + `ttl` for a browser-session
   * cookie), rounded up. */
  neededUntil(session: SessionData): number {
    return Math.ceil((Date.now() + (remainingMs(session) ?? this.ttl * 1000)) / 1000);
  }
}

/** The current Unix second. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** The Unix second until which memcached surely keeps a value written now with `ttl`. */
export function expiresAt(ttl: number): number {
  // memcached's clock may run a second behind ours: stay on the safe side.
  return Math.floor(Date.now() / 1000) + ttl - 1;
}

/** Whether the session's cookie has expired (never, for a browser-session cookie). */
export function isExpired(session: Partial<SessionData>): boolean {
  const left = remainingMs(session);
  return left !== undefined && left <= 0;
}

/** Milliseconds until the session's cookie expires; undefined for a browser-session cookie. */
export function remainingMs(session: Partial<SessionData>): number | undefined {
  const cookie = session.cookie as { expires?: unknown } | undefined;
  if (!cookie) return undefined;
  const expires = cookie.expires;
  if (expires instanceof Date || typeof expires === 'string' || typeof expires === 'number') {
    const at = new Date(expires).getTime();
    if (!Number.isNaN(at)) return at - Date.now();
  }
  return undefined;
}

/** The cookie's lifetime (`originalMaxAge`, ms) as the session states it; null for none. */
export function lifeOf(session: Partial<SessionData>): number | null {
  const maxAge = (session.cookie as { originalMaxAge?: unknown } | undefined)?.originalMaxAge;
  return typeof maxAge === 'number' && maxAge > 0 ? maxAge : null;
}
