import { MAX_ABSOLUTE_EXPIRY, MAX_RELATIVE_EXPIRY, toMemcachedExpiry } from '../../src';

describe('toMemcachedExpiry', () => {
  const now = Date.UTC(2026, 10, 26, 12, 0, 0);

  it('passes TTLs up to 30 days through as relative seconds, rounded up', () => {
    expect(toMemcachedExpiry(1, now)).toBe(1);
    expect(toMemcachedExpiry(0.2, now)).toBe(1);
    expect(toMemcachedExpiry(3600, now)).toBe(3600);
    expect(toMemcachedExpiry(MAX_RELATIVE_EXPIRY, now)).toBe(MAX_RELATIVE_EXPIRY);
  });

  it('sends TTLs over 30 days as an absolute Unix time', () => {
    const forty = 40 * 86_400;
    expect(toMemcachedExpiry(forty, now)).toBe(now / 1000 + forty);
    expect(toMemcachedExpiry(MAX_RELATIVE_EXPIRY + 1, now)).toBe(
      now / 1000 + MAX_RELATIVE_EXPIRY + 1,
    );
  });

  it('caps absolute times at what the protocol carries (year 2106)', () => {
    expect(toMemcachedExpiry(200 * 365 * 86_400, now)).toBe(MAX_ABSOLUTE_EXPIRY);
    expect(toMemcachedExpiry(Number.MAX_SAFE_INTEGER, now)).toBe(MAX_ABSOLUTE_EXPIRY);
  });

  it('maps no TTL to 0 (no expiry)', () => {
    expect(toMemcachedExpiry(undefined, now)).toBe(0);
    expect(toMemcachedExpiry(0, now)).toBe(0);
    expect(toMemcachedExpiry(-5, now)).toBe(0);
    expect(toMemcachedExpiry(Number.NaN, now)).toBe(0);
  });
});
