import type { Request } from 'express';
import { SessionCacheConfigError } from '../../src';
import { resolveSessionCacheOptions } from '../../src/session-cache.providers';

const url = 'memcached://127.0.0.1:11211?timeout=250';

describe('resolveSessionCacheOptions', () => {
  it('applies the documented defaults', () => {
    const resolved = resolveSessionCacheOptions({ url, session: { secret: 's' } });
    expect(resolved.session).toEqual({
      secret: 's',
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: 'lax' },
    });
    expect(resolved).toMatchObject({
      name: 'default',
      onUnavailable: 'lazy',
      installMiddleware: true,
      saveBeforeResponse: true,
      timeout: 250, // from the URL
    });
    expect(resolved.url.servers).toEqual([{ host: '127.0.0.1', port: 11211 }]);
  });

  it('lets the app override every default', () => {
    const resolved = resolveSessionCacheOptions({
      url,
      timeout: 900,
      session: {
        secret: ['new', 'old'],
        resave: true,
        saveUninitialized: true,
        cookie: { httpOnly: false, sameSite: 'strict', secure: true, maxAge: 1000 },
      },
    });
    expect(resolved.timeout).toBe(900);
    expect(resolved.session).toMatchObject({
      resave: true,
      saveUninitialized: true,
      cookie: { httpOnly: false, sameSite: 'strict', secure: true, maxAge: 1000 },
    });
  });

  it('keeps a per-request cookie function, with the defaults under what it returns', () => {
    const resolved = resolveSessionCacheOptions({
      url,
      session: {
        secret: 's',
        cookie: (req: Request) => ({ secure: req.secure, sameSite: 'none' }),
      },
    });
    const cookie = resolved.session.cookie as (req: Request) => object;
    expect(typeof cookie).toBe('function');
    expect(cookie({ secure: true } as Request)).toEqual({
      httpOnly: true,
      sameSite: 'none',
      secure: true,
    });
  });

  it('never puts the secret in its errors', () => {
    try {
      resolveSessionCacheOptions({ url, session: { secret: 'x' }, onUnavailable: 'nope' as never });
      throw new Error('expected an error');
    } catch (err) {
      expect(err).toBeInstanceOf(SessionCacheConfigError);
      expect((err as Error).message).not.toContain("'x'");
    }
  });

  it('derives the key HMAC secret from the session secret unless given', () => {
    const keyOf = (secret: string | string[], keySecret?: string) =>
      resolveSessionCacheOptions({ url, keySecret, session: { secret } }).keySecret;
    expect(keyOf('s')).toBe('s');
    // The oldest of a rotation list: adding a new secret in front keeps every session's key.
    expect(keyOf(['new', 'old'])).toBe('old');
    expect(keyOf(['new', 'old'], 'mine')).toBe('mine');
  });
});
