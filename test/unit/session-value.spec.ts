import { decodeValue, encodeValue, nextVersion, VALUE_HEADER_BYTES } from '../../src/session-value';

describe('stored session values', () => {
  it('round-trips version, generation, expiry, flags and payload from a string or a buffer', () => {
    for (const payload of ['{"cookie":{}}', Buffer.from([0, 1, 2, 255])]) {
      const stamp = {
        version: 1_795_000_000_123,
        generation: 1_795_000_000,
        expiresAt: 1_795_003_600,
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
      generation: 0,
      expiresAt: 0,
      flags: -1,
      header: Buffer.alloc(0),
      payload: legacy,
    });
  });

  it('makes each save newer than the one it loaded, and than the clock', () => {
    const now = Date.now();
    expect(nextVersion(undefined)).toBeGreaterThanOrEqual(now);
    expect(nextVersion(now + 10_000)).toBe(now + 10_001);
  });
});
