/** What the sample needs to run: its two memcached servers and the cookie secret. */
export interface SampleConfig {
  /** memcached A, the general cache behind CACHE_MANAGER: `memcached://host:port` or `host:port`. */
  generalCacheUrl: string;
  /** memcached B, sessions only: `memcached://host:port` (the library's URL format). */
  sessionCacheUrl: string;
  /** Signs the session cookie. */
  sessionSecret: string;
}

/** Reads the configuration from environment variables (what `npm run sample` sets). */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): SampleConfig {
  const names = ['GENERAL_MEMCACHED_URL', 'SESSION_MEMCACHED_URL', 'SESSION_SECRET'] as const;
  const missing = names.filter((name) => !env[name]);
  if (missing.length > 0) {
    throw new Error(
      `Missing environment variable(s): ${missing.join(', ')}. Start the sample with ` +
        '`npm run sample`, which starts two memcached processes and sets them for you.',
    );
  }
  return {
    generalCacheUrl: env.GENERAL_MEMCACHED_URL!,
    sessionCacheUrl: env.SESSION_MEMCACHED_URL!,
    sessionSecret: env.SESSION_SECRET!,
  };
}

/** `memcached://host:port` → `host:port`: memjs (under @keyv/memcache) does not parse the scheme. */
export function toMemjsAddress(url: string): string {
  return url.replace(/^memcached:\/\//i, '').replace(/\/$/, '');
}
