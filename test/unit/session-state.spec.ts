import type { SessionData } from 'express-session';
import { SessionStates } from '../../src/store/session-state';
import type { DecodedSession, SessionState } from '../../src/store/session-state';

const stamp = {
  version: 4,
  tag: 9,
  generation: 1,
  expiresAt: 1_800_000_000,
  indexUntil: 0,
  indexClass: 0xff,
  longest: 60,
};

const stateFor = (key: string): SessionState => ({
  key,
  stamp,
  life: 60_000,
  cas: [Buffer.from([1]), null],
});

describe('what the store knows of a session object (session-state.ts)', () => {
  it('rides on the object unseen: not enumerable, not in JSON, not in a spread copy', () => {
    const states = new SessionStates();
    const session = { cookie: {}, a: 1 };
    states.set(session, stateFor('sess:k'));
    expect(Object.keys(session)).toEqual(['cookie', 'a']);
    expect(JSON.stringify(session)).toBe('{"cookie":{},"a":1}');
    expect(states.of({ ...session })).toBeUndefined();
    expect(states.of(session)?.key).toBe('sess:k');
  });

  it('is about one key: a session saved under another id is a plain upsert there', () => {
    const states = new SessionStates();
    const session = {};
    states.set(session, stateFor('sess:a'));
    expect(states.of(session, 'sess:a')).toBeDefined();
    expect(states.of(session, 'sess:b')).toBeUndefined();
  });

  it('is private to one store: another store does not see it', () => {
    const mine = new SessionStates();
    const session = {};
    mine.set(session, stateFor('sess:a'));
    expect(new SessionStates().of(session)).toBeUndefined();
  });

  it("copies onto express-session's Session with its own CAS list", () => {
    const states = new SessionStates();
    const data = {};
    const created = {};
    states.set(data, stateFor('sess:a'));
    states.copy(data, created);
    const copied = states.of(created)!;
    expect(copied).toEqual(states.of(data));
    copied.cas[1] = Buffer.from([2]);
    expect(states.of(data)!.cas[1]).toBeNull();
    const nothing = {};
    states.copy({}, nothing);
    expect(states.of(nothing)).toBeUndefined();
  });

  it('records a loaded session: header, CAS tokens, user, cookie lifetime, bytes', () => {
    const states = new SessionStates();
    const session = { cookie: { originalMaxAge: 60_000 }, userId: 'u1' } as unknown as SessionData;
    const found: DecodedSession = { session, loaded: '{"x":1}', ...stamp, legacy: false };
    expect(states.loaded(found, 'sess:a', [Buffer.from([7])], 'u1')).toBe(session);
    expect(states.of(session, 'sess:a')).toEqual({
      key: 'sess:a',
      stamp: { ...stamp, legacy: false },
      cas: [Buffer.from([7])],
      life: 60_000,
      user: 'u1',
      loaded: '{"x":1}',
    });
  });
});
