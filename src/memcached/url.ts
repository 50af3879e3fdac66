import { inspect } from 'node:util';
import { SessionCacheUrlError } from '../session-cache.errors';

/** One memcached server of the session cluster. */
export interface MemcachedServerAddress {
  readonly host: string;
  readonly port: number;
}

/** Options that may be given in the URL's query string. */
export interface SessionCacheUrlOptions {
  /** Time budget of one operation in milliseconds (`?timeout=300`). */
  timeout?: number;
  /** TCP keep-alive on the memcached connections (`?keepAlive=true`). */
  keepAlive?: boolean;
  /** Copies of every session on distinct nodes (`?replicas=2`). */
  replicas?: number;
  /** How often a node marked down is probed in the background, in ms (`?retryDelay=100`). */
  retryDelay?: number;
}

export const DEFAULT_MEMCACHED_PORT = 11211;

/**
 * SASL credentials. The password lives in a private field: it is not an own property, so it never
 * shows up in `util.inspect`, `console.log` or `JSON.stringify` of this object or its owners.
 */
export class MemcachedCredentials {
  readonly #password: string;
  constructor(
    readonly username: string,
    password: string,
  ) {
    this.#password = password;
  }
  get password(): string {
    return this.#password;
  }
  toJSON(): { username: string; password: string } {
    return { username: this.username, password: '***' };
  }
  [inspect.custom](): string {
    return `MemcachedCredentials { username: ${JSON.stringify(this.username)}, password: '***' }`;
  }
}

/** The result of {@link parseSessionCacheUrl}. */
export interface ParsedSessionCacheUrl {
  readonly servers: readonly MemcachedServerAddress[];
  readonly credentials?: MemcachedCredentials;
  /** True for `memcacheds://`: TLS to every server of the URL. */
  readonly tls: boolean;
  readonly options: SessionCacheUrlOptions;
  /** The URL with its password replaced by `***`, safe to log. */
  readonly redacted: string;
}

const SCHEME = 'memcached://';
const TLS_SCHEME = 'memcacheds://';
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

/**
 * Where the user information of `url` is: from after the scheme (or the start, when an "@" comes
 * before the first "://") to the last "@". The last "@" wins so that an unencoded "@", "?", "/" or
 * "://" in a password still counts as part of it.
 */
function userinfoSpan(url: string): { start: number; at: number } | null {
  const at = url.lastIndexOf('@');
  if (at < 0) return null;
  // A scheme counts only when its "://" comes before every "@" (else it may sit in a password).
  const schemeEnd = url.indexOf('://');
  const start = schemeEnd >= 0 && schemeEnd < url.indexOf('@') ? schemeEnd + 3 : 0;
  return { start, at };
}

/** Replaces the password of a memcached URL (if any) by `***`. Never throws. */
export function redactUrl(url: string): string {
  if (typeof url !== 'string') return String(url);
  const span = userinfoSpan(url);
  if (!span) return url;
  const userinfo = url.slice(span.start, span.at);
  const colon = userinfo.indexOf(':');
  if (colon < 0) return url;
  return `${url.slice(0, span.start)}${userinfo.slice(0, colon)}:***${url.slice(span.at)}`;
}

function fail(url: string, problem: string, fix: string): never {
  throw new SessionCacheUrlError(
    `Invalid session memcached URL "${redactUrl(url)}": ${problem}. ${fix} ` +
      'Expected memcached[s]://[user:password@]host[:port][,host[:port]...][?option=value...].',
  );
}

function decode(url: string, part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return fail(
      url,
      `the ${what} has a malformed percent-encoding`,
      'Encode it with encodeURIComponent().',
    );
  }
}

function parsePort(url: string, server: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    fail(
      url,
      `port "${text}" of server "${server}" is not a number from 1 to 65535`,
      'Fix the port.',
    );
  }
  return Number(text);
}

function parseServer(url: string, raw: string, index: number): MemcachedServerAddress {
  const server = raw.trim();
  if (server === '') {
    fail(
      url,
      `server ${index + 1} of the host list is empty`,
      'Remove the stray comma or add the host.',
    );
  }
  if (server.startsWith('[')) {
    const close = server.indexOf(']');
    const host = close > 0 ? server.slice(1, close) : '';
    const rest = close > 0 ? server.slice(close + 1) : '';
    if (close < 0 || !IPV6.test(host) || (rest !== '' && !rest.startsWith(':'))) {
      fail(url, `"${server}" is not a valid [IPv6]:port address`, 'Write it as [::1]:11211.');
    }
    return {
      host,
      port: rest === '' ? DEFAULT_MEMCACHED_PORT : parsePort(url, server, rest.slice(1)),
    };
  }
  const colon = server.indexOf(':');
  if (colon !== server.lastIndexOf(':')) {
    fail(
      url,
      `"${server}" has more than one ":"`,
      'Put IPv6 addresses in brackets, e.g. [::1]:11211.',
    );
  }
  const host = colon >= 0 ? server.slice(0, colon) : server;
  if (host === '') fail(url, `server "${server}" has an empty host name`, 'Add the host name.');
  if (!HOSTNAME.test(host)) {
    fail(url, `host "${host}" is not a valid host name or IPv4 address`, 'Fix the host name.');
  }
  return {
    host,
    port: colon >= 0 ? parsePort(url, server, server.slice(colon + 1)) : DEFAULT_MEMCACHED_PORT,
  };
}

function parseBoolean(url: string, name: string, value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  return fail(url, `option ${name}="${value}" is not a boolean`, 'Use true or false.');
}

/** The shortest `retryDelay`: a shorter probe interval would only spin on a dead server. */
export const MIN_RETRY_DELAY_MS = 10;

function parseWhole(
  url: string,
  name: string,
  value: string,
  min: number,
  unit: string,
  example: number,
): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) < min) {
    fail(
      url,
      `option ${name}="${value}" is not a whole number of ${unit} >= ${min}`,
      `Use e.g. ${name}=${example}.`,
    );
  }
  return Number(value);
}

function parseQuery(url: string, query: string): SessionCacheUrlOptions {
  const options: SessionCacheUrlOptions = {};
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = decode(url, eq >= 0 ? pair.slice(0, eq) : pair, 'option name');
    const value = decode(url, eq >= 0 ? pair.slice(eq + 1) : '', `value of option "${name}"`);
    switch (name) {
      case 'timeout':
        options.timeout = parseWhole(url, name, value, 1, 'milliseconds', 500);
        break;
      case 'keepAlive':
        options.keepAlive = parseBoolean(url, name, value);
        break;
      case 'replicas':
        options.replicas = parseWhole(url, name, value, 1, 'copies', 2);
        break;
      case 'retryDelay':
        options.retryDelay = parseWhole(url, name, value, MIN_RETRY_DELAY_MS, 'milliseconds', 100);
        break;
      default:
        fail(
          url,
          `unknown option "${name}"`,
          'Known options: timeout, keepAlive, replicas, retryDelay.',
        );
    }
  }
  return options;
}

/**
 * Parses `memcached://[user:password@]host[:port][,host[:port]…][?option=value…]`, or the same
 * with `memcacheds://` for TLS to every server (`tls` in the result).
 * User and password are percent-decoded; the port defaults to 11211. Throws a
 * {@link SessionCacheUrlError} naming the bad part; the password never appears in it.
 */
export function parseSessionCacheUrl(url: string): ParsedSessionCacheUrl {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new SessionCacheUrlError(
      'The session memcached URL is missing or empty. Pass one such as memcached://127.0.0.1:11211 ' +
        "to SessionCacheModule.forRoot() (or return `url` from forRootAsync's factory).",
    );
  }
  const trimmed = url.trim();
  const lower = trimmed.toLowerCase();
  const tls = lower.startsWith(TLS_SCHEME);
  if (!tls && !lower.startsWith(SCHEME)) {
    const redacted = redactUrl(trimmed);
    const scheme = redacted.includes('://')
      ? `"${redacted.slice(0, redacted.indexOf('://'))}"`
      : 'missing';
    fail(
      url,
      `the scheme is ${scheme}, not "memcached" or "memcacheds"`,
      'Start the URL with memcached:// (or memcacheds:// for TLS).',
    );
  }
  let rest = trimmed.slice(tls ? TLS_SCHEME.length : SCHEME.length);
  // User information first (up to the last "@"), so that reserved characters a password should
  // have percent-encoded never spill into the host list or the query (and into error messages).
  const at = rest.lastIndexOf('@');
  const userinfo = at >= 0 ? rest.slice(0, at) : null;
  if (at >= 0) rest = rest.slice(at + 1);
  const queryStart = rest.indexOf('?');
  let authority = queryStart >= 0 ? rest.slice(0, queryStart) : rest;
  const query = queryStart >= 0 ? rest.slice(queryStart + 1) : '';
  if (authority.endsWith('/')) authority = authority.slice(0, -1);
  if (authority.includes('/')) {
    fail(
      url,
      'it has a path',
      'Memcached has no databases or paths; remove everything after the host list.',
    );
  }

  let credentials: MemcachedCredentials | undefined;
  if (userinfo !== null) {
    const colon = userinfo.indexOf(':');
    const username = decode(url, colon >= 0 ? userinfo.slice(0, colon) : userinfo, 'user name');
    const password = colon >= 0 ? decode(url, userinfo.slice(colon + 1), 'password') : '';
    if (username === '')
      fail(url, 'the user name is empty', 'Write user:password@ or leave out the credentials.');
    if (password === '') {
      fail(url, `user "${username}" has no password`, 'SASL needs both: write user:password@host.');
    }
    credentials = new MemcachedCredentials(username, password);
  }
  if (authority.trim() === '') fail(url, 'the host list is empty', 'Add at least one host.');

  const servers = authority.split(',').map((raw, i) => parseServer(url, raw, i));
  const seen = new Set<string>();
  for (const s of servers) {
    const id = `${s.host}:${s.port}`;
    if (seen.has(id)) fail(url, `server ${id} is listed twice`, 'List each server once.');
    seen.add(id);
  }
  const options = parseQuery(url, query);
  if (options.replicas !== undefined && options.replicas > servers.length) {
    fail(
      url,
      `replicas=${options.replicas} but it lists ${servers.length} server(s)`,
      'Each copy needs its own server: list more servers or lower replicas.',
    );
  }
  return { servers, credentials, tls, options, redacted: redactUrl(trimmed) };
}

/** `host:port` (IPv6 hosts in brackets), as used in logs and errors. */
export function formatServer(server: MemcachedServerAddress): string {
  return server.host.includes(':')
    ? `[${server.host}]:${server.port}`
    : `${server.host}:${server.port}`;
}
