import { randomBytes } from 'node:crypto';
import type { SessionData } from 'express-session';
import { SessionTooLargeError } from '../../src';
import { SessionCipher } from '../../src/store/session-cipher';
import { SessionCodec } from '../../src/store/session-codec';
import type { SessionState } from '../../src/store/session-state';
import { jsonSessionSerializer } from '../../src/store/session.serializer';
import type { SessionSerializer } from '../../src/store/session.serializer';
import { decodeValue, encodeValue, VALUE_HEADER_BYTES } from '../../src/store/value-header';
import { RecordingLogger } from '../support/store';

const KEY_A = randomBytes(32);
const KEY_B = randomBytes(32);
const KEY = 'sess:victim-key';
const STAMP = {
  version: 7,
  tag: 0x1234,
  generation: 3,
  expiresAt: 1_800_000_000,
  indexUntil: 1_802_000_000,
  indexClass: 12,
  longest: 3600,
};

const session = (fields: Record<string, unknown> = {}) =>
  ({ cookie: { originalMaxAge: 60_000, httpOnly: true }, ...fields }) as unknown as SessionData;

function codec(options: { keys?: Buffer[]; serializer?: SessionSerializer; max?: number } = {}) {
  const logger = new RecordingLogger();
  const cipher = options.keys ? new SessionCipher(options.keys) : null;
  const c = new SessionCodec(
    options.serializer ?? jsonSessionSerializer,
    cipher,
    options.max ?? 1024 * 1024,
    logger,
  );
  return { codec: c, logger };
}

/** Encodes `fields` as a session stored under `key`. */
function stored(c: SessionCodec, fields: Record<string, unknown>, key = KEY): Buffer {
  return c.encode(c.serialize(session(fields)), key, STAMP);
}

describe('the session codec (session-codec.ts)', () => {
  describe('round trip', () => {
    it('plain: header, then the JSON text; decodes to the same session and its bytes', () => {
      const { codec: c, logger } = codec();
      const raw = stored(c, { user: 'zoë', n: 1 });
      expect(decodeValue(raw)).toMatchObject({ ...STAMP, flags: 0 });
      const text = JSON.stringify(session({ user: 'zoë', n: 1 }));
      expect(raw.subarray(VALUE_HEADER_BYTES).toString('utf8')).toBe(text);
      expect(c.decode(raw, KEY)).toEqual({
        session: session({ user: 'zoë', n: 1 }),
        loaded: text,
        ...STAMP,
        legacy: false,
        reencrypt: false,
      });
      expect(logger.warnings).toEqual([]);
    });

    it('encrypted: no field in clear text; decodes under the same key', () => {
      const { codec: c, logger } = codec({ keys: [KEY_A] });
      const raw = stored(c, { user: 'grace-hopper' });
      expect(decodeValue(raw).flags).toBe(1);
      for (const clear of ['grace-hopper', 'user', 'cookie'])
        expect(raw.includes(clear)).toBe(false);
      expect(c.decode(raw, KEY)).toMatchObject({
        session: session({ user: 'grace-hopper' }),
        ...STAMP,
        reencrypt: false,
      });
      expect(logger.warnings).toEqual([]);
    });

    it('a custom serializer: its bytes both ways, kept as the loaded bytes', () => {
      const serializer: SessionSerializer = {
        stringify: (s) => Buffer.from(`X${JSON.stringify(s)}`),
        parse: (raw) => JSON.parse(raw.subarray(1).toString('utf8')),
      };
      for (const keys of [undefined, [KEY_A]]) {
        const { codec: c } = codec({ serializer, keys });
        const found = c.decode(stored(c, { a: 1 }), KEY)!;
        expect(found.session).toEqual(session({ a: 1 }));
        expect(Buffer.isBuffer(found.loaded)).toBe(true);
        expect(found.loaded.toString()).toBe(`X${JSON.stringify(session({ a: 1 }))}`);
      }
    });

    it('reads a value without a header (written by 0.1) as a legacy session', () => {
      const { codec: c } = codec();
      const found = c.decode(Buffer.from(JSON.stringify(session({ old: true }))), KEY)!;
      expect(found).toMatchObject({ session: { old: true }, legacy: true, version: 0 });
    });
  });

  describe('fails closed: anything but an authentic session is no session, with a warning', () => {
    const flip = (raw: Buffer, at: number) =>
      Buffer.from(raw.map((b, i) => (i === (at < 0 ? raw.length + at : at) ? b ^ 1 : b)));
    const cases: [string, (raw: Buffer, other: Buffer) => Buffer, RegExp][] = [
      ['a flipped ciphertext byte', (raw) => flip(raw, -3), /failed authentication/],
      ['a flipped header byte (version)', (raw) => flip(raw, 7), /failed authentication/],
      ['a flipped header byte (expiry)', (raw) => flip(raw, 16), /failed authentication/],
      ['a truncated value', (raw) => raw.subarray(0, raw.length - 5), /failed authentication/],
      ['a header alone', (raw) => raw.subarray(0, VALUE_HEADER_BYTES), /failed authentication/],
      ["another session's value", (_raw, other) => other, /failed authentication/],
      [
        'a plaintext value',
        () => encodeValue(STAMP, JSON.stringify(session({ user: 'mallory' }))),
        /not encrypted while encryption is on/,
      ],
      [
        'a legacy JSON value',
        () => Buffer.from(JSON.stringify(session({ user: 'mallory' }))),
        /not encrypted/,
      ],
    ];
    it.each(cases)('%s', (_what, tamper, warning) => {
      const { codec: c, logger } = codec({ keys: [KEY_A] });
      const victim = stored(c, { user: 'victim' });
      const other = stored(c, { user: 'other' }, 'sess:other-key');
      expect(c.decode(tamper(victim, other), KEY)).toBeNull();
      expect(logger.warnings).toHaveLength(1);
      expect(logger.warnings[0]).toMatch(warning);
      expect(logger.warnings[0]).not.toContain(KEY);
      expect(logger.warnings[0]).not.toContain('victim');
    });

    it('the same value moved under another key does not authenticate', () => {
      const { codec: c, logger } = codec({ keys: [KEY_A] });
      expect(c.decode(stored(c, { user: 'victim' }), 'sess:attacker')).toBeNull();
      expect(logger.warnings[0]).toMatch(/failed authentication/);
    });

    it('a key that is not configured, or no keys at all', () => {
      const written = codec({ keys: [KEY_B] }).codec;
      const { codec: other, logger } = codec({ keys: [KEY_A] });
      expect(other.decode(stored(written, { a: 1 }), KEY)).toBeNull();
      expect(logger.warnings[0]).toMatch(/key that is not in encryptionKeys/);
      const { codec: plain, logger: plainLogger } = codec();
      expect(plain.decode(stored(written, { a: 1 }), KEY)).toBeNull();
      expect(plainLogger.warnings[0]).toMatch(/encrypted, but no encryptionKeys are configured/);
    });

    it('bytes that do not parse, or parse to something that is not a session', () => {
      const { codec: c, logger } = codec();
      expect(c.decode(encodeValue(STAMP, '{"cookie":{},"secret":"s3cr3t"'), KEY)).toBeNull();
      expect(logger.warnings[0]).toMatch(/could not be decoded \(SyntaxError\)/);
      for (const notASession of ['[]', '"text"', 'null', '{"user":1}', '{"cookie":null}']) {
        expect(c.decode(encodeValue(STAMP, notASession), KEY)).toBeNull();
      }
      expect(logger.warnings.slice(1)).toHaveLength(5);
      for (const w of logger.warnings) expect(w).not.toContain('s3cr3t');
    });
  });

  it('rotation: a value under an older key decodes and asks to be re-encrypted', () => {
    const old = codec({ keys: [KEY_B] }).codec;
    const { codec: c } = codec({ keys: [KEY_A, KEY_B] });
    expect(c.decode(stored(old, { a: 1 }), KEY)).toMatchObject({
      session: { a: 1 },
      reencrypt: true,
    });
    expect(c.decode(stored(c, { a: 1 }), KEY)).toMatchObject({ reencrypt: false });
  });

  describe('size limit: refused before anything is sent', () => {
    it('the serialized session alone over the limit', () => {
      const text = JSON.stringify(session({ blob: 'x'.repeat(100) }));
      const { codec: c } = codec({ max: VALUE_HEADER_BYTES + text.length - 1 });
      expect(() => c.serialize(session({ blob: 'x'.repeat(100) }))).toThrow(SessionTooLargeError);
      const { codec: fits } = codec({ max: VALUE_HEADER_BYTES + text.length });
      expect(
        fits.encode(fits.serialize(session({ blob: 'x'.repeat(100) })), KEY, STAMP),
      ).toHaveLength(VALUE_HEADER_BYTES + text.length);
    });

    it('the encrypted value over the limit (the cipher adds bytes)', () => {
      const text = JSON.stringify(session({ blob: 'x'.repeat(100) }));
      const { codec: c } = codec({ keys: [KEY_A], max: VALUE_HEADER_BYTES + text.length });
      const serialized = c.serialize(session({ blob: 'x'.repeat(100) }));
      expect(() => c.encode(serialized, KEY, STAMP)).toThrow(SessionTooLargeError);
    });
  });

  describe('changed (what save-before-response asks)', () => {
    const state = (loaded?: string | Buffer): SessionState => ({
      key: KEY,
      stamp: { ...STAMP, legacy: false },
      life: 60_000,
      cas: [null],
      loaded,
    });

    it('a session not loaded has changed once it holds more than its cookie', () => {
      const { codec: c } = codec();
      expect(c.changed(session(), undefined)).toBe(false);
      expect(c.changed(session({ a: 1 }), undefined)).toBe(true);
      expect(c.changed(session({ a: 1 }), state())).toBe(true);
    });

    it('a loaded session, by its bytes; a changed one is serialized once for its save', () => {
      let stringified = 0;
      const serializer: SessionSerializer = {
        stringify: (s) => (stringified++, JSON.stringify(s)),
        parse: (raw) => JSON.parse(raw.toString('utf8')),
      };
      const { codec: c } = codec({ serializer });
      const loaded = state(JSON.stringify(session({ a: 1 })));
      expect(c.changed(session({ a: 1 }), loaded)).toBe(false);
      expect(loaded.serialized).toBeUndefined();
      expect(c.changed(session({ a: 2 }), loaded)).toBe(true);
      expect(loaded.serialized).toBe(JSON.stringify(session({ a: 2 })));
      stringified = 0;
      expect(c.serialize(session({ a: 2 }), loaded)).toBe(JSON.stringify(session({ a: 2 })));
      expect(stringified).toBe(0);
      expect(loaded.serialized).toBeUndefined();
    });

    it('compares Buffers from a custom serializer', () => {
      const serializer: SessionSerializer = {
        stringify: (s) => Buffer.from(JSON.stringify(s)),
        parse: (raw) => JSON.parse(raw.toString('utf8')),
      };
      const { codec: c } = codec({ serializer });
      const loaded = state(Buffer.from(JSON.stringify(session({ a: 1 }))));
      expect(c.changed(session({ a: 1 }), loaded)).toBe(false);
      expect(c.changed(session({ a: 3 }), loaded)).toBe(true);
    });
  });
});
