import {
  decodeValue,
  encodeValue,
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
});
