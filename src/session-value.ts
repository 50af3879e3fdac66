/**
 * The stored form of a session: a 16-byte header, then the serializer's bytes (encrypted when
 * encryption is on).
 *
 *   byte 0      0xF5 (never the first byte of UTF-8 text, so JSON written by 0.1 is told apart)
 *   byte 1      flags: bit 0 set = the payload is encrypted (see session-cipher.ts)
 *   bytes 2-7   version, unsigned 48-bit big-endian: a newer save has a higher version, so
 *               replicas that missed a write are recognised and repaired
 *   bytes 8-11  generation, unsigned 32-bit big-endian: the store's namespace generation when the
 *               session was created; `clear()` raises the generation, older sessions are void
 *   bytes 12-15 expires at, unsigned 32-bit big-endian Unix seconds: memcached keeps the value at
 *               least until then (the TTL of this write); touches only move it later. Lazy touch
 *               reads it to know when a TOUCH is due.
 *
 * A value without the header (written by 0.1) reads as version 0, generation 0, expiring now,
 * not encrypted.
 */
export const VALUE_MAGIC = 0xf5;
export const VALUE_HEADER_BYTES = 16;
export const FLAG_ENCRYPTED = 0x01;
const MAX_VERSION = 2 ** 48 - 1;
const MAX_UINT32 = 2 ** 32 - 1;

/** What a value's header says about the session. */
export interface ValueStamp {
  version: number;
  generation: number;
  /** Unix seconds until which memcached keeps the value at least (0: unknown). */
  expiresAt: number;
}

export interface StoredValue extends ValueStamp {
  /** -1 for a legacy value without a header. */
  flags: number;
  /** The header bytes (empty for a legacy value): authenticated along with encrypted payloads. */
  header: Buffer;
  payload: Buffer;
}

/** The header bytes. */
export function encodeHeader(stamp: ValueStamp, flags: number): Buffer {
  const header = Buffer.allocUnsafe(VALUE_HEADER_BYTES);
  writeHeader(header, stamp, flags);
  return header;
}

function writeHeader(out: Buffer, stamp: ValueStamp, flags: number): void {
  out[0] = VALUE_MAGIC;
  out[1] = flags;
  out.writeUIntBE(Math.min(stamp.version, MAX_VERSION), 2, 6);
  out.writeUInt32BE(Math.min(stamp.generation, MAX_UINT32), 8);
  out.writeUInt32BE(Math.min(stamp.expiresAt, MAX_UINT32), 12);
}

/** Frames `payload` with a header; writes a string payload straight into the buffer. */
export function encodeValue(stamp: ValueStamp, payload: string | Buffer, flags = 0): Buffer {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  const out = Buffer.allocUnsafe(VALUE_HEADER_BYTES + size);
  writeHeader(out, stamp, flags);
  if (typeof payload === 'string') out.write(payload, VALUE_HEADER_BYTES, 'utf8');
  else payload.copy(out, VALUE_HEADER_BYTES);
  return out;
}

/** Reads the header; a value without one is a legacy value (`flags` -1, all stamps 0). */
export function decodeValue(raw: Buffer): StoredValue {
  if (raw.length >= VALUE_HEADER_BYTES && raw[0] === VALUE_MAGIC) {
    return {
      version: raw.readUIntBE(2, 6),
      generation: raw.readUInt32BE(8),
      expiresAt: raw.readUInt32BE(12),
      flags: raw[1],
      header: raw.subarray(0, VALUE_HEADER_BYTES),
      payload: raw.subarray(VALUE_HEADER_BYTES),
    };
  }
  return {
    version: 0,
    generation: 0,
    expiresAt: 0,
    flags: -1,
    header: raw.subarray(0, 0),
    payload: raw,
  };
}

/** The version of the next save of a session loaded at `loaded`: newer than it, and than now. */
export function nextVersion(loaded: number | undefined): number {
  return Math.max((loaded ?? 0) + 1, Date.now());
}
