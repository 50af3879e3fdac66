/** Memcached reads an expiry above 30 days as an absolute Unix time, not as seconds from now. */
export const MAX_RELATIVE_EXPIRY = 60 * 60 * 24 * 30;

/** The largest expiry the protocol carries (a 32-bit unsigned Unix time, in 2106). */
export const MAX_ABSOLUTE_EXPIRY = 0xffff_ffff;

/**
 * Turns a TTL in seconds into the expiry memcached expects: relative up to 30 days, an absolute
 * Unix time beyond (capped at {@link MAX_ABSOLUTE_EXPIRY}). `0` (or less) means "never expires".
 */
export function toMemcachedExpiry(ttlSeconds: number | undefined, nowMs = Date.now()): number {
  if (ttlSeconds === undefined || !(ttlSeconds > 0)) return 0;
  const ttl = Math.ceil(ttlSeconds);
  if (ttl <= MAX_RELATIVE_EXPIRY) return ttl;
  return Math.min(Math.floor(nowMs / 1000) + ttl, MAX_ABSOLUTE_EXPIRY);
}
