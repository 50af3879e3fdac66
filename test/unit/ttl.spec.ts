import { jest } from '@jest/globals';
import * as fc from 'fast-check';
import type { SessionData } from 'express-session';
import {
  CLOCK_MARGIN,
  expiresAt,
  isExpired,
  lifeOf,
  remainingMs,
  SessionTtl,
} from '../../src/store/ttl';

/** A fixed "now" (ms) with a fraction of a second, so roundings show. */
const NOW = 1_800_000_000_400;

/** A session whose cookie expires `inMs` from NOW (none: a browser-session cookie). */
function session(inMs?: number, originalMaxAge?: number): SessionData {
  const cookie: Record<string, unknown> = { originalMaxAge: originalMaxAge ?? null };
  if (inMs !== undefined) cookie.expires = new Date(NOW + inMs);
  return { cookie } as unknown as SessionData;
}

describe('the TTL rule (ttl.ts)', () => {
  beforeEach(() => {
    jest.spyOn(Date, 'now').mockReturnValue(NOW);
  });
  afterEach(() => {
    jest.restoreAllMocks();
  });

  it("adds the lazy-touch slack, rounds up, and adds a second for memcached's clock", () => {
    expect(CLOCK_MARGIN).toBe(1);
    expect(new SessionTtl(3600, 0).withSlack(90.5)).toBe(92);
    // 3600 × 1.1 is 3960.0000000000005 in floating point: not 3961 before the margin.
    expect(new SessionTtl(3600, 0.1).withSlack(3600)).toBe(3961);
    expect(new SessionTtl(3600, 1).withSlack(10)).toBe(21);
  });

  it('gives at least 1 s (plus the margin), however short the lifetime', () => {
    const rule = new SessionTtl(3600, 0);
    expect(rule.withSlack(0.3)).toBe(2);
    expect(rule.withSlack(0)).toBe(2);
  });

  it('never lets memcached drop a value before the lifetime it was given (property)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 400 * 86_400, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (seconds, lazyTouch) => {
          const ttl = new SessionTtl(3600, lazyTouch).withSlack(seconds);
          expect(Number.isInteger(ttl)).toBe(true);
          // An item stored with TTL n lives at least n − 1 s: that covers the lifetime and the
          // slack (but for floating-point dust below a microsecond).
          expect(ttl - 1).toBeGreaterThanOrEqual(seconds * (1 + lazyTouch) - 1e-6);
          expect(ttl - 1).toBeGreaterThanOrEqual(1);
        },
      ),
    );
  });

  it('takes the TTL from the cookie as it is now, else `ttl`; null once it has expired', () => {
    const rule = new SessionTtl(3600, 0);
    expect(rule.ttlOf(session(90_500))).toBe(92);
    expect(rule.ttlOf(session())).toBe(3601);
    expect(rule.ttlOf(session(0))).toBeNull();
    expect(rule.ttlOf(session(-1000))).toBeNull();
    // 40 days: the store sends it as is (the client turns it into an absolute time).
    expect(rule.ttlOf(session(40 * 86_400_000))).toBe(40 * 86_400 + 1);
  });

  it("a touch's full TTL is the cookie's whole lifetime (originalMaxAge), else `ttl`", () => {
    const rule = new SessionTtl(3600, 0.1);
    expect(rule.fullTtl(session(5_000, 60_000))).toBe(67);
    expect(rule.fullTtl(session(5_000))).toBe(3961);
    expect(rule.fullTtl(session(undefined, 0))).toBe(3961);
  });

  it('says until when the cookie needs the session (whole seconds, rounded up)', () => {
    const rule = new SessionTtl(3600, 0.5);
    expect(rule.neededUntil(session(10_000))).toBe(Math.ceil((NOW + 10_000) / 1000));
    expect(rule.neededUntil(session())).toBe(Math.ceil((NOW + 3_600_000) / 1000));
  });

  it('counts a value written now with TTL n as kept until the second before now + n', () => {
    expect(expiresAt(60)).toBe(Math.floor(NOW / 1000) + 59);
  });

  it('reads the cookie: remaining time, expiry and lifetime', () => {
    expect(remainingMs(session(1234))).toBe(1234);
    expect(remainingMs(session())).toBeUndefined();
    expect(remainingMs({})).toBeUndefined();
    expect(remainingMs({ cookie: { expires: 'not a date' } } as never)).toBeUndefined();
    expect(remainingMs({ cookie: { expires: new Date(NOW + 5).toISOString() } } as never)).toBe(5);
    expect(isExpired(session(-1))).toBe(true);
    expect(isExpired(session(1))).toBe(false);
    expect(isExpired(session())).toBe(false);
    expect(lifeOf(session(1, 60_000))).toBe(60_000);
    expect(lifeOf(session(1))).toBeNull();
    expect(lifeOf(session(1, -5))).toBeNull();
  });
});
