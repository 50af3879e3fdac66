// Property-based fuzzing of the memcached URL parser (issue 4, "Prove it"): any input parses or
// throws a SessionCacheUrlError; no error message or redacted URL ever shows the password; and
// well-formed URLs parse back to the parts they were built from.
import { inspect } from 'node:util';
import * as fc from 'fast-check';
import { parseSessionCacheUrl, redactUrl, SessionCacheUrlError } from '../../src';
import type { ParsedSessionCacheUrl } from '../../src';

const RUNS = 1000;

/** The result of parsing, or the error it threw. */
function attempt(url: unknown): { ok: ParsedSessionCacheUrl } | { error: unknown } {
  try {
    return { ok: parseSessionCacheUrl(url as string) };
  } catch (error) {
    return { error };
  }
}

/** Parses or throws a SessionCacheUrlError; a successful parse is internally consistent. */
function checkOutcome(url: unknown): void {
  const outcome = attempt(url);
  if ('error' in outcome) {
    expect(outcome.error).toBeInstanceOf(SessionCacheUrlError);
    expect((outcome.error as Error).name).toBe('SessionCacheUrlError');
    expect((outcome.error as Error).message).not.toBe('');
    return;
  }
  const { servers, options } = outcome.ok;
  expect(servers.length).toBeGreaterThan(0);
  for (const { host, port } of servers) {
    expect(host).not.toBe('');
    expect(Number.isInteger(port) && port >= 1 && port <= 65535).toBe(true);
  }
  for (const value of [options.timeout, options.replicas, options.retryDelay]) {
    if (value !== undefined) expect(Number.isSafeInteger(value) && value >= 0).toBe(true);
  }
  if (options.replicas !== undefined) {
    expect(options.replicas).toBeLessThanOrEqual(servers.length);
  }
}

// --- URL-ish fragments --------------------------------------------------------------------------

/** Characters with a meaning in URLs, to be mixed into everything. */
const RESERVED = [...":/?#[]@!$&'()*+,;=%. \t\r\n\u0000"];
const reservedChar = fc.constantFrom(...RESERVED);
/** Short text made of letters, digits, reserved characters and any unicode. */
const messy = fc.string({
  unit: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...'abcxyzAZ019-_') },
    { weight: 2, arbitrary: reservedChar },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  ),
  maxLength: 12,
});

const scheme = fc.oneof(
  { weight: 6, arbitrary: fc.constant('memcached://') },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'MEMCACHED://',
      'Memcached://',
      'memcache://',
      'memcacheds://',
      'redis://',
      'memcached:/',
      'memcached:',
      'memcached:///',
      ' memcached://',
      '://',
      '',
    ),
  },
  { weight: 1, arbitrary: messy.map((s) => `${s}://`) },
);

const percentJunk = fc.constantFrom(
  '%',
  '%z',
  '%zz',
  '%4',
  '%41',
  '%C3',
  '%C3%A9',
  '%E0%A4%A',
  '%00',
);
const userinfo = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  {
    weight: 4,
    arbitrary: fc
      .tuple(messy, fc.option(fc.oneof(messy, percentJunk), { nil: undefined }))
      .map(([user, password]) => (password === undefined ? `${user}@` : `${user}:${password}@`)),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }))
      .map(([user, password]) => `${encodeURIComponent(user)}:${encodeURIComponent(password)}@`),
  },
  { weight: 1, arbitrary: fc.constantFrom('@', ':@', 'user:@', ':pw@', 'a:b@c@', 'u:p:q@') },
);

const hostName = fc.oneof(
  { weight: 3, arbitrary: fc.domain() },
  { weight: 2, arbitrary: fc.ipV4() },
  { weight: 1, arbitrary: fc.ipV4Extended() },
  { weight: 2, arbitrary: fc.ipV6().map((ip) => `[${ip}]`) },
  { weight: 1, arbitrary: fc.ipV6() },
  { weight: 1, arbitrary: messy },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', ' ', '[', ']', '[::1', '[]', '[zz::1]', 'localhost', 'h://x'),
  },
);
const port = fc.oneof(
  { weight: 4, arbitrary: fc.constant('') },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 65535 }).map((p) => `:${p}`) },
  {
    weight: 2,
    arbitrary: fc
      .oneof(
        fc.integer({ min: -100, max: 0 }),
        fc.integer({ min: 65536, max: 10_000_000 }),
        fc.constant(Number.MAX_SAFE_INTEGER),
      )
      .map((p) => `:${p}`),
  },
  { weight: 1, arbitrary: fc.constantFrom(':', '::', ':011211', ':1e3', ':0x10', ': 80', ':+1') },
  { weight: 1, arbitrary: messy.map((s) => `:${s}`) },
);
const hostList = fc
  .array(
    fc.tuple(hostName, port).map(([h, p]) => h + p),
    { minLength: 0, maxLength: 3 },
  )
  .chain((servers) =>
    fc.constantFrom(',', ', ', ',,', ' ,').map((separator) => servers.join(separator)),
  );

const optionName = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('timeout', 'keepAlive', 'replicas', 'retryDelay') },
  { weight: 1, arbitrary: fc.constantFrom('TIMEOUT', 'keepalive', 'ttl', '', '%74imeout', '%') },
  { weight: 1, arbitrary: messy },
);
const optionValue = fc.oneof(
  fc.nat().map(String),
  fc.integer({ min: -1_000, max: 1_000 }).map(String),
  fc.constantFrom('0', '1', 'true', 'false', 'yes', '', '1.5', '1e3', '0x10', '9999999999'),
  fc.constant(String(Number.MAX_SAFE_INTEGER)),
  percentJunk,
  messy,
);
const query = fc.oneof(
  { weight: 2, arbitrary: fc.constant('') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '?',
      '/',
      '/?',
      '/db',
      '#frag',
      '?&&',
      '?=',
      '?x=http://y',
      '/a://b',
    ),
  },
  {
    weight: 4,
    arbitrary: fc
      .array(
        fc.oneof(
          fc.tuple(optionName, optionValue).map(([n, v]) => `${n}=${v}`),
          optionName,
          fc.tuple(optionName, optionValue, optionValue).map(([n, a, b]) => `${n}=${a}=${b}`),
        ),
        { maxLength: 5 },
      )
      .map((pairs) => `?${pairs.join('&')}`),
  },
);

const urlish = fc.tuple(scheme, userinfo, hostList, query).map(([s, u, h, q]) => s + u + h + q);

/** A URL-ish string with some random characters inserted anywhere. */
const noisyUrl = fc
  .tuple(urlish, fc.array(fc.tuple(fc.nat(), fc.oneof(reservedChar, messy)), { maxLength: 3 }))
  .map(([url, inserts]) =>
    inserts.reduce((u, [at, text]) => {
      const i = at % (u.length + 1);
      return u.slice(0, i) + text + u.slice(i);
    }, url),
  );

describe('parseSessionCacheUrl: fuzzing', () => {
  it('arbitrary strings parse or throw SessionCacheUrlError', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: 'binary' }),
          fc.string({ unit: 'grapheme' }),
          fc.string().map((s) => `memcached://${s}`),
          fc.string({ unit: 'binary' }).map((s) => `memcached://${s}`),
        ),
        (url) => {
          checkOutcome(url);
          expect(typeof redactUrl(url)).toBe('string');
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('URL-ish strings (schemes, userinfo, host lists, ports, options) parse or throw SessionCacheUrlError', () => {
    let parsed = 0;
    fc.assert(
      fc.property(fc.oneof(urlish, noisyUrl), (url) => {
        checkOutcome(url);
        if ('ok' in attempt(url)) parsed += 1;
        expect(typeof redactUrl(url)).toBe('string');
      }),
      { numRuns: RUNS * 3 },
    );
    // The fragments are close enough to valid URLs that some of them parse (about 3 %).
    expect(parsed).toBeGreaterThan(RUNS / 100);
  });

  it('values of any type other than a string throw SessionCacheUrlError', () => {
    fc.assert(
      fc.property(
        fc.anything().filter((v) => typeof v !== 'string'),
        (value) => {
          expect(() => parseSessionCacheUrl(value as string)).toThrow(SessionCacheUrlError);
        },
      ),
      { numRuns: RUNS / 5 },
    );
  });
});

// --- passwords never leak ----------------------------------------------------------------------

/** A password of >= 6 characters of any kind, reserved characters and unicode included. */
const password = fc.string({
  unit: fc.oneof(
    { weight: 3, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
    { weight: 2, arbitrary: reservedChar },
    { weight: 3, arbitrary: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789') },
  ),
  minLength: 6,
  maxLength: 40,
});
const userName = fc.string({ minLength: 1, maxLength: 12 });
/** Everything of a URL around `user:password@`, valid or not. */
const aroundCredentials = fc.record({
  scheme,
  hosts: hostList,
  query,
});

/** The message of the error parsing `url` throws, or null when it parses. */
function errorMessage(url: string): string | null {
  const outcome = attempt(url);
  if ('ok' in outcome) return null;
  expect(outcome.error).toBeInstanceOf(SessionCacheUrlError);
  return (outcome.error as Error).message;
}

/** Every text about `url` that could reach a log: error message, redacted URL, the parse result. */
function loggableTexts(url: string): string[] {
  const outcome = attempt(url);
  const texts = [redactUrl(url)];
  if ('error' in outcome) {
    const error = outcome.error as Error;
    texts.push(error.message, String(error), inspect(error), error.stack ?? '');
  } else {
    texts.push(outcome.ok.redacted, JSON.stringify(outcome.ok), inspect(outcome.ok, { depth: 5 }));
  }
  return texts;
}

describe('parseSessionCacheUrl: the password never leaks', () => {
  it('no error message, redactUrl output or parse result shows a percent-encoded password', () => {
    fc.assert(
      fc.property(
        userName,
        password,
        aroundCredentials,
        (user, pw, { scheme: s, hosts, query: q }) => {
          const encoded = encodeURIComponent(pw);
          const url = `${s}${encodeURIComponent(user)}:${encoded}@${hosts}${q}`;
          // The same URL with another password: what is said about it must not depend on the password.
          const other = `${s}${encodeURIComponent(user)}:placeholder-password@${hosts}${q}`;
          expect(errorMessage(url)).toBe(errorMessage(other));
          expect(redactUrl(url)).toBe(redactUrl(other));
          const outcome = attempt(url);
          // (An "@" after the password, in the host list or the query, makes the URL ambiguous: the
          // parser then reads up to the last "@" as credentials.)
          if ('ok' in outcome && !hosts.includes('@') && !q.includes('@')) {
            expect(outcome.ok.credentials?.password).toBe(pw);
            expect(outcome.ok.redacted).toBe(
              (attempt(other) as { ok: ParsedSessionCacheUrl }).ok.redacted,
            );
          }
          // And directly: neither form of the password appears (unless the text around it, which does
          // not depend on the password, happens to contain it).
          const context = loggableTexts(other).join('\n');
          for (const text of loggableTexts(url)) {
            for (const secret of [pw, encoded]) {
              if (!context.includes(secret)) expect(text).not.toContain(secret);
            }
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('a password written without percent-encoding (reserved characters too) does not leak', () => {
    // The user information ends at the last "@", so even an unencoded "?", "/" or "@" in a
    // password stays in it.
    const rawPassword = password;
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z][a-z0-9._-]{0,11}$/),
        rawPassword,
        aroundCredentials,
        (user, pw, { scheme: s, hosts, query: q }) => {
          const url = `${s}${user}:${pw}@${hosts}${q}`;
          const other = `${s}${user}:placeholder-password@${hosts}${q}`;
          const context = loggableTexts(other).join('\n');
          for (const text of loggableTexts(url)) {
            if (!context.includes(pw)) expect(text).not.toContain(pw);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('parseSessionCacheUrl: password leaks found by fuzzing stay fixed', () => {
  const secret = 'S3cretPassw0rd';
  it('an "@" before the first "://": neither the scheme error nor redactUrl shows the password', () => {
    for (const url of [
      `user:${secret}@memcached://host`,
      `memcached:user:${secret}@host://x`,
      `user:${secret}@host?x=http://y`,
    ]) {
      for (const text of loggableTexts(url)) expect(text).not.toContain(secret);
    }
  });
  it('an unencoded "?" in the password: neither errors nor redactUrl show it', () => {
    const url = `memcached://user:${secret}?more@host`;
    for (const text of loggableTexts(url)) expect(text).not.toContain(secret);
  });
});

// --- round trip --------------------------------------------------------------------------------

/** A host as the parser returns it, and as it is written in the URL. */
const validHost = fc.oneof(
  { weight: 3, arbitrary: fc.domain().map((h) => ({ host: h, written: h })) },
  { weight: 2, arbitrary: fc.ipV4().map((h) => ({ host: h, written: h })) },
  {
    weight: 1,
    arbitrary: fc
      .stringMatching(/^[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?$/)
      .map((h) => ({ host: h, written: h })),
  },
  { weight: 2, arbitrary: fc.ipV6().map((h) => ({ host: h, written: `[${h}]` })) },
);
const validServer = fc
  .tuple(validHost, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
  .map(([{ host, written }, p]) => ({
    expected: { host, port: p ?? 11211 },
    written: p === undefined ? written : `${written}:${p}`,
  }));
const validServers = fc.uniqueArray(validServer, {
  minLength: 1,
  maxLength: 5,
  selector: (s) => `${s.expected.host}:${s.expected.port}`,
});

type Option = { name: string; written: string; value: number | boolean };
function validOptions(serverCount: number): fc.Arbitrary<Option[]> {
  const whole = (min: number) => fc.integer({ min, max: 999_999_999 });
  return fc
    .shuffledSubarray([
      whole(1).map((v) => ({ name: 'timeout', written: String(v), value: v })),
      fc
        .constantFrom(['true', true], ['false', false], ['1', true], ['0', false])
        .map(([w, v]) => ({ name: 'keepAlive', written: w as string, value: v as boolean })),
      fc
        .integer({ min: 1, max: serverCount })
        .map((v) => ({ name: 'replicas', written: String(v), value: v })),
      whole(10).map((v) => ({ name: 'retryDelay', written: String(v), value: v })),
    ])
    .chain((arbitraries) =>
      arbitraries.length === 0 ? fc.constant([]) : fc.tuple(...arbitraries),
    );
}

const wellFormed = validServers.chain((servers) =>
  fc.record({
    servers: fc.constant(servers),
    credentials: fc.option(
      fc.record({ username: fc.string({ minLength: 1 }), password: fc.string({ minLength: 1 }) }),
      {
        nil: undefined,
      },
    ),
    options: validOptions(servers.length),
    scheme: fc.constantFrom('memcached://', 'MEMCACHED://', 'Memcached://'),
    trailingSlash: fc.boolean(),
    padding: fc.constantFrom('', ' ', '\t', '\n '),
  }),
);

describe('parseSessionCacheUrl: round trip', () => {
  it('URLs built from valid parts parse back to the same servers, credentials and options', () => {
    fc.assert(
      fc.property(
        wellFormed,
        ({ servers, credentials, options, scheme: s, trailingSlash, padding }) => {
          const hosts = servers.map((x) => x.written).join(',');
          const userinfo = credentials
            ? `${encodeURIComponent(credentials.username)}:${encodeURIComponent(credentials.password)}@`
            : '';
          const redactedUserinfo = credentials
            ? `${encodeURIComponent(credentials.username)}:***@`
            : '';
          const q =
            options.length === 0
              ? ''
              : `?${options.map((o) => `${o.name}=${o.written}`).join('&')}`;
          const tail = `${hosts}${trailingSlash ? '/' : ''}${q}`;
          const parsed = parseSessionCacheUrl(`${padding}${s}${userinfo}${tail}${padding}`);

          expect(parsed.servers).toEqual(servers.map((x) => x.expected));
          if (credentials) {
            expect(parsed.credentials?.username).toBe(credentials.username);
            expect(parsed.credentials?.password).toBe(credentials.password);
          } else {
            expect(parsed.credentials).toBeUndefined();
          }
          expect(parsed.options).toEqual(Object.fromEntries(options.map((o) => [o.name, o.value])));
          expect(parsed.redacted).toBe(`${s}${redactedUserinfo}${tail}`);
        },
      ),
      { numRuns: RUNS },
    );
  });
});
