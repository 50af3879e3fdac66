/** Memcached reads an expiry above 30 days as an absolute Unix time, not as seconds from now. */
export const MAX_RELATIVE_EXPIRY = 60 * 60 * 24 * 30;

/**
 * Turns a TTL in seconds into the expiry memcached expects: relative up to 30 days, an absolute
 * Unix time beyond. `0` (or less) means "never expires".
 */
export function toMemcachedExpiry(ttlSeconds: number | undefined, nowMs = Date.now()): number {
  if (ttlSeconds === undefined || !(ttlSeconds > 0)) return 0;
  const ttl = Math.ceil(ttlSeconds);
  return ttl <= MAX_RELATIVE_EXPIRY ? ttl : Math.floor(nowMs / 1000) + ttl;
}
