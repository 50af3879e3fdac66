/**
 * The stored form of a session: a 28-byte header, then the serializer's bytes (encrypted when
 * encryption is on).
 *
 *   byte 0      0xF6 (never the first byte of UTF-8 text, so JSON written by 0.1 is told apart)
 *   byte 1      flags: bit 0 set = the payload is encrypted (see session-cipher.ts)
 *   bytes 2-7   version, unsigned 48-bit big-endian: a logical counter, the loaded version's
 *               plus one at every save; never a clock (the order of versions: replication.ts)
 *   bytes 8-9   tag, unsigned 16-bit: random, breaks ties between saves of the same counter
 *   bytes 10-13 generation, unsigned 32-bit: the store's namespace generation when the session
 *               was created; `clear()` raises the generation, older sessions are void
 *               (namespace.ts)
 *   bytes 14-17 expires at, unsigned 32-bit Unix seconds: memcached keeps the value at least
 *               until then. Only ever a lower bound: a TOUCH may move it later, never earlier (a
 *               shorter TTL is written as a new value). Lazy touch reads it to know when a TOUCH
 *               is due (lazy-touch.ts).
 *   bytes 18-21 index until, unsigned 32-bit Unix seconds (0: none): the index of the session's
 *               user (`indexClass` names which) lives at least until then; the session is never
 *               given a TTL past it (user-index.ts)
 *   byte 22     index class (0xFF: none): which of the user's indexes lists the session
 *   byte 23     reserved (0)
 *   bytes 24-27 longest, unsigned 32-bit seconds: the longest TTL this session was ever given (in
 *               this version or the ones it was saved from), so a logout's tombstone outlives it
 *               (replication.ts)
 *
 * Older forms are still read: 0xF5 (16 bytes: flags, 48-bit version, generation, expires at) as
 * version `v`, tag 0, no index, longest 0; a value without a header (written by 0.1) as version 0,
 * generation 0, expiring now, not encrypted.
 */
export const VALUE_MAGIC = 0xf6;
export const VALUE_HEADER_BYTES = 28;
/** The 16-byte header of the previous release (clock-based versions), still read. */
export const VALUE_MAGIC_V1 = 0xf5;
export const VALUE_HEADER_BYTES_V1 = 16;
export const FLAG_ENCRYPTED = 0x01;
/** `indexClass` of a value that is listed in no user index. */
export const NO_INDEX = 0xff;
/** The highest version the header holds (48 bits). */
export const MAX_VERSION = 2 ** 48 - 1;
const MAX_UINT32 = 2 ** 32 - 1;

/** What a value's header says about the session. */
export interface ValueStamp {
  /** The logical counter (see the order of versions above). */
  version: number;
  /** Tie-break between saves of the same version (0 for older forms). */
  tag?: number;
  generation: number;
  /** Unix seconds until which memcached keeps the value at least (0: unknown). */
  expiresAt: number;
  /** Unix seconds until which the user index `indexClass` lives at least (0: none). */
  indexUntil?: number;
  /** Which user index lists the session ({@link NO_INDEX}: none). */
  indexClass?: number;
  /** The longest TTL in seconds the session was ever given (0: unknown). */
  longest?: number;
}

export interface StoredValue extends Required<ValueStamp> {
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
  out.writeUInt16BE(stamp.tag ?? 0, 8);
  out.writeUInt32BE(Math.min(stamp.generation, MAX_UINT32), 10);
  out.writeUInt32BE(Math.min(stamp.expiresAt, MAX_UINT32), 14);
  out.writeUInt32BE(Math.min(stamp.indexUntil ?? 0, MAX_UINT32), 18);
  out[22] = stamp.indexClass ?? NO_INDEX;
  out[23] = 0;
  out.writeUInt32BE(Math.min(stamp.longest ?? 0, MAX_UINT32), 24);
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
      tag: raw.readUInt16BE(8),
      generation: raw.readUInt32BE(10),
      expiresAt: raw.readUInt32BE(14),
      indexUntil: raw.readUInt32BE(18),
      indexClass: raw[22],
      longest: raw.readUInt32BE(24),
      flags: raw[1],
      header: raw.subarray(0, VALUE_HEADER_BYTES),
      payload: raw.subarray(VALUE_HEADER_BYTES),
    };
  }
  if (raw.length >= VALUE_HEADER_BYTES_V1 && raw[0] === VALUE_MAGIC_V1) {
    return {
      version: raw.readUIntBE(2, 6),
      tag: 0,
      generation: raw.readUInt32BE(8),
      expiresAt: raw.readUInt32BE(12),
      indexUntil: 0,
      indexClass: NO_INDEX,
      longest: 0,
      flags: raw[1],
      header: raw.subarray(0, VALUE_HEADER_BYTES_V1),
      payload: raw.subarray(VALUE_HEADER_BYTES_V1),
    };
  }
  return {
    version: 0,
    tag: 0,
    generation: 0,
    expiresAt: 0,
    indexUntil: 0,
    indexClass: NO_INDEX,
    longest: 0,
    flags: -1,
    header: raw.subarray(0, 0),
    payload: raw,
  };
}
