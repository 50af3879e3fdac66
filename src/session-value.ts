/**
 * The stored form of a session: an 8-byte header, then the serializer's bytes.
 *
 *   byte 0     0xF5 (never the first byte of UTF-8 text, so JSON written by 0.1 is told apart)
 *   byte 1     flags (0: the payload is the serializer's output as is)
 *   bytes 2-7  version, unsigned 48-bit big-endian: a newer save has a higher version, so
 *              replicas that missed a write are recognised and repaired
 *
 * A value without the header (written by 0.1) reads as version 0 with the whole value as payload.
 */
export const VALUE_MAGIC = 0xf5;
export const VALUE_HEADER_BYTES = 8;
const MAX_VERSION = 2 ** 48 - 1;

export interface StoredValue {
  version: number;
  flags: number;
  payload: Buffer;
}

/** Frames `payload` with a header; writes a string payload straight into the buffer. */
export function encodeValue(version: number, payload: string | Buffer, flags = 0): Buffer {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  const out = Buffer.allocUnsafe(VALUE_HEADER_BYTES + size);
  out[0] = VALUE_MAGIC;
  out[1] = flags;
  out.writeUIntBE(Math.min(version, MAX_VERSION), 2, 6);
  if (typeof payload === 'string') out.write(payload, VALUE_HEADER_BYTES, 'utf8');
  else payload.copy(out, VALUE_HEADER_BYTES);
  return out;
}

/** Reads the header; a value without one is a version-0 legacy value. */
export function decodeValue(raw: Buffer): StoredValue {
  if (raw.length >= VALUE_HEADER_BYTES && raw[0] === VALUE_MAGIC) {
    return {
      version: raw.readUIntBE(2, 6),
      flags: raw[1],
      payload: raw.subarray(VALUE_HEADER_BYTES),
    };
  }
  return { version: 0, flags: -1, payload: raw };
}

/** The version of the next save of a session loaded at `loaded`: newer than it, and than now. */
export function nextVersion(loaded: number | undefined): number {
  return Math.max((loaded ?? 0) + 1, Date.now());
}
