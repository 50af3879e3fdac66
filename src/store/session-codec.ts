import type { SessionData } from 'express-session';
import type { SessionCacheLogger } from '../memcached/session-cache.client';
import { SessionTooLargeError } from '../session-cache.errors';
import type { SessionCipher } from './session-cipher';
import type { DecodedSession, SessionState } from './session-state';
import { jsonSessionSerializer } from './session.serializer';
import type { SessionSerializer } from './session.serializer';
import {
  decodeValue,
  encodeHeader,
  encodeValue,
  FLAG_ENCRYPTED,
  VALUE_HEADER_BYTES,
} from './value-header';
import type { ValueStamp } from './value-header';

/**
 * A session to bytes and back: the value header (value-header.ts), the serializer's bytes, and,
 * with `encryptionKeys`, AES-256-GCM over them (session-cipher.ts) with the header and the
 * memcached key authenticated along: a value cannot be altered or moved to another session's key.
 *
 * - Fails closed: a stored value that is not encrypted while encryption is on, is encrypted with
 *   no key configured, does not authenticate, cannot be parsed, or is not a session object counts
 *   as no session (a warning that never quotes the session id or the stored data).
 * - A session over `maxSessionSize` is refused ({@link SessionTooLargeError}) before anything is
 *   sent, so the stored one stays intact.
 */
export class SessionCodec {
  constructor(
    readonly serializer: SessionSerializer,
    readonly cipher: SessionCipher | null,
    readonly maxSessionSize: number,
    readonly logger: SessionCacheLogger,
  ) {}

  /**
   * Whether `session` differs from what was loaded for it (`state`): its serialization, cookie
   * included, against the bytes loaded (or last saved); a session that was not loaded (new, or
   * regenerated) has changed once it holds anything besides its cookie. A changed session's
   * serialization is kept on `state` for the save that follows, so it is made once.
   */
  changed(session: SessionData, state: SessionState | undefined): boolean {
    if (state?.loaded === undefined) {
      for (const field in session) if (field !== 'cookie') return true;
      return false;
    }
    const serialized = this.serializer.stringify(session);
    const loaded = state.loaded;
    const same =
      typeof serialized === 'string' && typeof loaded === 'string'
        ? serialized === loaded
        : Buffer.from(serialized).equals(Buffer.from(loaded));
    state.serialized = same ? undefined : serialized;
    return !same;
  }

  /** The serializer's bytes of `session`, refused at once when they alone are over the limit
   * (before anything is sent: the stored session stays intact). The serialization that
   * {@link changed} just made of it is used when there is one. */
  serialize(session: SessionData, state?: SessionState): string | Buffer {
    const serialized = state?.serialized ?? this.serializer.stringify(session);
    if (state) state.serialized = undefined;
    const size =
      VALUE_HEADER_BYTES +
      (typeof serialized === 'string' ? Buffer.byteLength(serialized) : serialized.length);
    if (size > this.maxSessionSize) throw new SessionTooLargeError(size, this.maxSessionSize);
    return serialized;
  }

  /** The stored value for `key`: header, then the serializer's bytes (encrypted if on). Checks
   * the size first, so that nothing is sent for a session that is too large. */
  encode(serialized: string | Buffer, key: string, stamp: ValueStamp): Buffer {
    let value: Buffer;
    if (!this.cipher) value = encodeValue(stamp, serialized);
    else {
      const header = encodeHeader(stamp, FLAG_ENCRYPTED);
      const sealed = this.cipher.encrypt(serialized, Buffer.concat([header, Buffer.from(key)]));
      value = Buffer.concat([header, sealed]);
    }
    if (value.length > this.maxSessionSize) {
      throw new SessionTooLargeError(value.length, this.maxSessionSize);
    }
    return value;
  }

  /** Decodes a value stored under `key`; `null` (with a warning) when it is not a usable session. */
  decode(raw: Buffer, key: string): DecodedSession | null {
    const { flags, header, payload: stored, ...stamp } = decodeValue(raw);
    let payload = stored;
    let reencrypt = false;
    const encrypted = flags !== -1 && (flags & FLAG_ENCRYPTED) !== 0;
    if (this.cipher) {
      if (!encrypted) {
        this.logger.warn(
          'Ignored a stored session that is not encrypted while encryption is on; the request ' +
            'continues without it.',
        );
        return null;
      }
      const plain = this.cipher.decrypt(stored, Buffer.concat([header, Buffer.from(key)]));
      if (typeof plain === 'string') {
        this.logger.warn(
          plain === 'unknown-key'
            ? 'Ignored a stored session encrypted with a key that is not in encryptionKeys; ' +
                'the request continues without it.'
            : 'Ignored a stored session that failed authentication (tampered, truncated or ' +
                'not written for this key); the request continues without it.',
        );
        return null;
      }
      payload = plain;
      reencrypt = !this.cipher.isCurrent(stored);
    } else if (encrypted) {
      this.logger.warn(
        'Ignored a stored session that is encrypted, but no encryptionKeys are configured; the ' +
          'request continues without it.',
      );
      return null;
    }
    let data: unknown;
    let loaded: string | Buffer = payload;
    try {
      if (this.serializer === jsonSessionSerializer) {
        loaded = payload.toString('utf8');
        data = JSON.parse(loaded);
      } else {
        data = this.serializer.parse(payload);
      }
    } catch (err) {
      this.logger.warn(
        `Ignored a stored session that could not be decoded (${describeError(err)}); ` +
          'the request continues without it.',
      );
      return null;
    }
    if (!isSessionData(data)) {
      this.logger.warn(
        'Ignored a stored session that is not a session object (no cookie field); ' +
          'the request continues without it.',
      );
      return null;
    }
    return { session: data, loaded, ...stamp, legacy: flags === -1, reencrypt };
  }
}

/** Only the error's class: a message may quote the stored data. */
export function describeError(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}

function isSessionData(value: unknown): value is SessionData {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { cookie?: unknown }).cookie === 'object' &&
    (value as { cookie?: unknown }).cookie !== null
  );
}
