import {
  compareCopies,
  decodeValue,
  encodeValue,
  nextStamp,
  NO_INDEX,
  VALUE_HEADER_BYTES,
  VALUE_HEADER_BYTES_V1,
} from '../../src/store/value-header';

describe('stored session values', () => {
  it('round-trips every header field, flags and payload from a string or a buffer', () => {
    for (const payload of ['{"cookie":{}}', Buffer.from([0, 1, 2, 255])]) {
      const stamp = {
        version: 2 ** 47 + 5,
        tag: 0xbeef,
        generation: 1_795_000_000,
        expiresAt: 1_795_003_600,
        indexUntil: 1_797_600_000,
        indexClass: 22,
        longest: 5_200_000,
      };
      const raw = encodeValue(stamp, payload, 3);
      expect(raw).toHaveLength(VALUE_HEADER_BYTES + Buffer.byteLength(payload));
      expect(decodeValue(raw)).toEqual({
        ...stamp,
        flags: 3,
        header: raw.subarray(0, VALUE_HEADER_BYTES),
        payload: Buffer.from(payload),
      });
    }
  });

  it('writes multi-byte text at its byte length', () => {
    const raw = encodeValue({ version: 1, generation: 0, expiresAt: 0 }, '{"name":"Zoë 🎉"}');
    expect(decodeValue(raw).payload.toString('utf8')).toBe('{"name":"Zoë 🎉"}');
  });

  it('reads a value without a header (written by 0.1) as version 0', () => {
    const legacy = Buffer.from('{"cookie":{}}');
    expect(decodeValue(legacy)).toEqual({
      version: 0,
      tag: 0,
      generation: 0,
      expiresAt: 0,
      indexUntil: 0,
      indexClass: NO_INDEX,
      longest: 0,
      flags: -1,
      header: Buffer.alloc(0),
      payload: legacy,
    });
  });

  it('reads the 16-byte 0xF5 header of the previous release (clock-based versions)', () => {
    const v1 = Buffer.alloc(VALUE_HEADER_BYTES_V1 + 2);
    v1[0] = 0xf5;
    v1[1] = 1;
    v1.writeUIntBE(1_764_000_000_123, 2, 6);
    v1.writeUInt32BE(7, 8);
    v1.writeUInt32BE(1_764_003_600, 12);
    v1.write('{}', VALUE_HEADER_BYTES_V1);
    expect(decodeValue(v1)).toMatchObject({
      version: 1_764_000_000_123,
      tag: 0,
      generation: 7,
      expiresAt: 1_764_003_600,
      indexClass: NO_INDEX,
      flags: 1,
      header: v1.subarray(0, VALUE_HEADER_BYTES_V1),
      payload: Buffer.from('{}'),
    });
  });

  it('counts versions from the loaded one, never from a clock', () => {
    expect(nextStamp(undefined).version).toBe(1);
    expect(nextStamp({ version: 41 }).version).toBe(42);
    // An old clock-based version (ms since 1970) is counted on from, so it never wins over the
    // saves made from it.
    expect(nextStamp({ version: 1_764_000_000_123 }).version).toBe(1_764_000_000_124);
    const tags = new Set(Array.from({ length: 50 }, () => nextStamp({ version: 1 }).tag));
    expect(tags.size).toBeGreaterThan(40);
  });

  it('orders copies by version, then tag, then bytes: every reader picks the same one', () => {
    const copy = (version: number, tag: number, text: string) => ({
      version,
      tag,
      raw: encodeValue({ version, tag, generation: 0, expiresAt: 0 }, text),
    });
    const a = copy(5, 9, '{"a":1}');
    const b = copy(6, 0, '{"b":1}');
    const c = copy(6, 1, '{"c":1}');
    const d = copy(6, 1, '{"d":1}'); // same version and tag as c, other data
    expect(compareCopies(a, b)).toBeLessThan(0);
    expect(compareCopies(b, c)).toBeLessThan(0);
    expect(Math.sign(compareCopies(c, d))).toBe(-Math.sign(compareCopies(d, c)));
    expect(compareCopies(c, d)).not.toBe(0);
    expect(compareCopies(c, { ...c, raw: Buffer.from(c.raw) })).toBe(0);
    const winner = (copies: (typeof a)[]) =>
      copies.reduce((best, x) => (compareCopies(x, best) > 0 ? x : best));
    expect(winner([a, b, c, d]).raw).toEqual(winner([d, c, b, a]).raw);
  });
});
