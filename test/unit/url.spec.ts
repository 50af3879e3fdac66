import { inspect } from 'node:util';
import { parseSessionCacheUrl, redactUrl, SessionCacheUrlError } from '../../src';

describe('parseSessionCacheUrl', () => {
  it('parses one host with the default port', () => {
    const parsed = parseSessionCacheUrl('memcached://10.0.0.5');
    expect(parsed.servers).toEqual([{ host: '10.0.0.5', port: 11211 }]);
    expect(parsed.credentials).toBeUndefined();
    expect(parsed.options).toEqual({});
  });

  it('parses several hosts, ports, IPv6 and options', () => {
    const parsed = parseSessionCacheUrl(
      'memcached://h1,h2:11212,[::1]:11213,cache-3.internal?timeout=250&keepAlive=true&replicas=2&retryDelay=10',
    );
    expect(parsed.servers).toEqual([
      { host: 'h1', port: 11211 },
      { host: 'h2', port: 11212 },
      { host: '::1', port: 11213 },
      { host: 'cache-3.internal', port: 11211 },
    ]);
    expect(parsed.options).toEqual({ timeout: 250, keepAlive: true, replicas: 2, retryDelay: 10 });
  });

  it('accepts an upper-case scheme, a trailing slash and surrounding blanks', () => {
    expect(parseSessionCacheUrl('  MEMCACHED://h:1/ ').servers).toEqual([{ host: 'h', port: 1 }]);
  });

  it('percent-decodes user and password', () => {
    const parsed = parseSessionCacheUrl('memcached://app%40eu:p%3Aw%40rd%2F1@h:11212');
    expect(parsed.credentials?.username).toBe('app@eu');
    expect(parsed.credentials?.password).toBe('p:w@rd/1');
  });

  it('takes an unencoded reserved character in a password as part of it (up to the last "@")', () => {
    const parsed = parseSessionCacheUrl('memcached://app:pa?ss/w@rd@cache:11212?timeout=5');
    expect(parsed.credentials?.username).toBe('app');
    expect(parsed.credentials?.password).toBe('pa?ss/w@rd');
    expect(parsed.servers).toEqual([{ host: 'cache', port: 11212 }]);
    expect(parsed.options).toEqual({ timeout: 5 });
    expect(parsed.redacted).toBe('memcached://app:***@cache:11212?timeout=5');
  });

  it('never shows the password when inspected, stringified or redacted', () => {
    const parsed = parseSessionCacheUrl('memcached://user:s3cr3t-pw@h:11212');
    expect(inspect(parsed, { depth: 10 })).not.toContain('s3cr3t-pw');
    expect(JSON.stringify(parsed)).not.toContain('s3cr3t-pw');
    expect(`${parsed.credentials}`).not.toContain('s3cr3t-pw');
    expect(parsed.redacted).toBe('memcached://user:***@h:11212');
    expect(redactUrl('memcached://u:p@h,i?timeout=1')).toBe('memcached://u:***@h,i?timeout=1');
    expect(redactUrl('memcached://h:11211')).toBe('memcached://h:11211');
  });

  it('memcacheds:// means TLS to every server; memcached:// means plaintext', () => {
    const parsed = parseSessionCacheUrl('memcacheds://u:p%40ss@h1,h2:11212?replicas=2');
    expect(parsed.tls).toBe(true);
    expect(parsed.servers).toEqual([
      { host: 'h1', port: 11211 },
      { host: 'h2', port: 11212 },
    ]);
    expect(parsed.credentials?.password).toBe('p@ss');
    expect(parsed.options).toEqual({ replicas: 2 });
    expect(parsed.redacted).toBe('memcacheds://u:***@h1,h2:11212?replicas=2');
    expect(parseSessionCacheUrl(' MemcacheDS://[::1]:11213/ ')).toMatchObject({
      tls: true,
      servers: [{ host: '::1', port: 11213 }],
    });
    expect(parseSessionCacheUrl('memcached://h').tls).toBe(false);
    expect(redactUrl('memcacheds://u:secret@h')).toBe('memcacheds://u:***@h');
  });

  it('names both schemes when the scheme is wrong, and keeps the password out', () => {
    for (const url of [
      'rediss://u:hunter2@h',
      'memcachedss://u:hunter2@h',
      'memcache://u:hunter2@h',
    ]) {
      expect(() => parseSessionCacheUrl(url)).toThrow(
        /not "memcached" or "memcacheds"\. Start the URL with memcached:\/\/ \(or memcacheds:\/\/ for TLS\)/,
      );
      expect(() => parseSessionCacheUrl(url)).not.toThrow(/hunter2/);
    }
    expect(() => parseSessionCacheUrl('memcacheds://u:hunter2@h:x')).toThrow(
      'Invalid session memcached URL "memcacheds://u:***@h:x": port "x" of server "h:x"',
    );
  });

  const bad: Array<[string, RegExp]> = [
    ['', /missing or empty/],
    ['redis://h:6379', /scheme is "redis", not "memcached"/],
    ['h:11211', /scheme is missing/],
    ['memcached://', /host list is empty/],
    ['memcached://h:abc', /port "abc" of server "h:abc"/],
    ['memcached://h:0', /port "0" of server "h:0" is not a number from 1 to 65535/],
    ['memcached://h:70000', /port "70000"/],
    ['memcached://h:', /port "" of server "h:"/],
    ['memcached://h1,,h2', /server 2 of the host list is empty/],
    ['memcached://h1,', /server 2 of the host list is empty/],
    ['memcached://:11211', /empty host name/],
    ['memcached://bad_host!:1', /host "bad_host!" is not a valid host name/],
    ['memcached://::1', /more than one ":"/],
    ['memcached://[::1', /not a valid \[IPv6\]:port/],
    ['memcached://h?foo=1', /unknown option "foo"/],
    ['memcached://h?timeout=fast', /option timeout="fast"/],
    ['memcached://h?timeout=0', /option timeout="0"/],
    ['memcached://h?keepAlive=maybe', /option keepAlive="maybe" is not a boolean/],
    ['memcached://h/db', /it has a path/],
    ['memcached://h1,h2?replicas=0', /option replicas="0" is not a whole number of copies >= 1/],
    ['memcached://h1,h2?replicas=two', /option replicas="two"/],
    ['memcached://h1,h2?replicas=3', /replicas=3 but it lists 2 server\(s\)/],
    ['memcached://h?retryDelay=-1', /option retryDelay="-1" is not a whole number/],
    [
      'memcached://h?retryDelay=5',
      /option retryDelay="5" is not a whole number of milliseconds >= 10/,
    ],
    ['memcached://h?timeout=99999999999', /option timeout="99999999999"/],
    ['memcached://h,h:11211', /server h:11211 is listed twice/],
    ['memcached://user@h', /user "user" has no password/],
    ['memcached://:pw@h', /user name is empty/],
    ['memcached://u:%E0%A4%A@h', /password has a malformed percent-encoding/],
  ];

  it.each(bad)('rejects %j with a message naming the bad part', (url, message) => {
    let error: unknown;
    try {
      parseSessionCacheUrl(url);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SessionCacheUrlError);
    expect((error as Error).name).toBe('SessionCacheUrlError');
    expect((error as Error).message).toMatch(message);
  });

  it('keeps the password out of error messages', () => {
    for (const url of [
      'memcached://user:hunter2@h:notaport',
      'memcached://user:hunter2@h?bogus=1',
      'memcached://user:hunter2@,',
      'memcached://user:hunter2@h/path',
    ]) {
      expect(() => parseSessionCacheUrl(url)).toThrow(SessionCacheUrlError);
      try {
        parseSessionCacheUrl(url);
      } catch (err) {
        expect((err as Error).message).not.toContain('hunter2');
        expect((err as Error).message).toContain('user:***@');
      }
    }
  });

  it('rejects non-string input clearly', () => {
    expect(() => parseSessionCacheUrl(undefined as unknown as string)).toThrow(/missing or empty/);
  });
});
