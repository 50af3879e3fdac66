/** Injection token of the default (unnamed) connection's {@link SessionCache}. */
export const SESSION_CACHE = 'nestjs-session-cache:SessionCache';
/** Injection token of the default connection's resolved module options. */
export const SESSION_CACHE_OPTIONS = 'nestjs-session-cache:SessionCacheOptions';
/** Name of the default connection. */
export const DEFAULT_SESSION_CACHE_NAME = 'default';
/** Module-private token: the name of the connection a module instance serves. */
export const SESSION_CACHE_NAME = 'nestjs-session-cache:name';

function isDefault(name?: string): boolean {
  return name === undefined || name === DEFAULT_SESSION_CACHE_NAME;
}

/** Token of the {@link SessionCache} of connection `name` (default: the unnamed one). */
export function getSessionCacheToken(name?: string): string {
  return isDefault(name) ? SESSION_CACHE : `${SESSION_CACHE}:${name}`;
}

/** Token of the resolved options of connection `name`. */
export function getSessionCacheOptionsToken(name?: string): string {
  return isDefault(name) ? SESSION_CACHE_OPTIONS : `${SESSION_CACHE_OPTIONS}:${name}`;
}
