import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { SessionCacheConfigError, SessionCacheError } from '../session-cache.errors';

const KEY_BYTES = 32;
const ID_BYTES = 4;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Bytes an encrypted payload adds: key id, IV and authentication tag. */
export const ENCRYPTION_OVERHEAD = ID_BYTES + IV_BYTES + TAG_BYTES;

interface Key {
  id: Buffer;
  secret: Buffer;
}

/** Why a value could not be decrypted. */
export type DecryptFailure = 'unknown-key' | 'not-authentic';

/**
 * AES-256-GCM with a list of keys: the first encrypts, every one decrypts, so keys rotate without
 * logging anyone out. A payload is `key id (4 bytes, from SHA-256 of the key) | IV (12, random) |
 * tag (16) | ciphertext`; the caller's associated data (the value header and the memcached key) is
 * authenticated too, so a value cannot be altered, truncated or moved to another session's key.
 */
export class SessionCipher {
  readonly #keys: Key[];

  constructor(keys: readonly (string | Buffer)[]) {
    if (!Array.isArray(keys) || keys.length === 0) {
      throw new SessionCacheConfigError(
        'encryptionKeys must be a non-empty array of 32-byte keys (Buffers, or base64/hex ' +
          'strings); the first encrypts, all decrypt. Generate one with `openssl rand -base64 32`.',
      );
    }
    this.#keys = keys.map((key, i) => {
      const secret = toKey(key, i);
      return { id: createHash('sha256').update(secret).digest().subarray(0, ID_BYTES), secret };
    });
    const ids = new Set(this.#keys.map((k) => k.id.toString('hex')));
    if (ids.size !== this.#keys.length) {
      throw new SessionCacheConfigError(
        'encryptionKeys lists the same key twice; list each key once (the newest first).',
      );
    }
  }

  /** Encrypts `plain`, authenticating `aad` along with it, with the first key. */
  encrypt(plain: string | Buffer, aad: Buffer): Buffer {
    const key = this.#keys[0];
    try {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key.secret, iv);
      cipher.setAAD(aad);
      const body = Buffer.concat([
        cipher.update(typeof plain === 'string' ? Buffer.from(plain, 'utf8') : plain),
        cipher.final(),
      ]);
      return Buffer.concat([key.id, iv, cipher.getAuthTag(), body]);
    } catch (err) {
      // Never fall back to writing plaintext.
      throw new SessionCacheError('Encrypting a session failed; it was not saved.', { cause: err });
    }
  }

  /** Whether an encrypted payload is under the first (current) key. */
  isCurrent(payload: Buffer): boolean {
    return payload.length >= ID_BYTES && this.#keys[0].id.equals(payload.subarray(0, ID_BYTES));
  }

  /** The plaintext, or why there is none. Never throws. */
  decrypt(payload: Buffer, aad: Buffer): Buffer | DecryptFailure {
    if (payload.length < ENCRYPTION_OVERHEAD) return 'not-authentic';
    const id = payload.subarray(0, ID_BYTES);
    const key = this.#keys.find((k) => k.id.equals(id));
    if (!key) return 'unknown-key';
    try {
      const decipher = createDecipheriv(
        'aes-256-gcm',
        key.secret,
        payload.subarray(ID_BYTES, ID_BYTES + IV_BYTES),
      );
      decipher.setAAD(aad);
      decipher.setAuthTag(payload.subarray(ID_BYTES + IV_BYTES, ENCRYPTION_OVERHEAD));
      return Buffer.concat([
        decipher.update(payload.subarray(ENCRYPTION_OVERHEAD)),
        decipher.final(),
      ]);
    } catch {
      return 'not-authentic';
    }
  }
}

function toKey(key: unknown, index: number): Buffer {
  const what = `encryptionKeys[${index}]`;
  let bytes: Buffer | undefined;
  if (Buffer.isBuffer(key)) bytes = key;
  else if (typeof key === 'string' && /^[0-9a-fA-F]{64}$/.test(key))
    bytes = Buffer.from(key, 'hex');
  else if (typeof key === 'string' && /^[A-Za-z0-9+/_-]{43}=?$/.test(key)) {
    bytes = Buffer.from(key, 'base64');
  } else if (typeof key !== 'string') {
    throw new SessionCacheConfigError(`${what} must be a Buffer or a string, got ${typeof key}.`);
  }
  if (!bytes || bytes.length !== KEY_BYTES) {
    throw new SessionCacheConfigError(
      `${what} is not a 32-byte key (${
        bytes
          ? `${bytes.length} bytes`
          : 'a string that is neither 64 hex digits nor 44 base64 characters'
      }). AES-256-GCM needs exactly 32 bytes; generate one with \`openssl rand -base64 32\`.`,
    );
  }
  return Buffer.from(bytes);
}
