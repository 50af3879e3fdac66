// What an attacker who reaches the session memcached's port sees (issue 4, "Prove it"): a key dump
// (`lru_crawler metadump all`) after several logins holds no session id, and with encryption on no
// value holds a user name or a session field in clear text. The same dump without encryption, and
// without hashed keys, shows that these checks can fail.
import { randomBytes } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { SessionStore } from '../../../src';
import type { SessionCacheOptions } from '../../../src';
import { cookieFrom, sessionIdOf } from '../../support/http';
import { CapturingLogger } from '../../support/logger';
import { MemcachedProcess } from '../../support/memcached.mjs';
import { dumpKeys } from '../../support/metadump';
import { createApp, type Platform, PLATFORMS } from '../../support/platform';
import { coreModule } from '../core/core.module';

/** Field names the core app keeps in every session. */
const FIELDS = ['user', 'visits', 'cookie'];

interface Dump {
  /** Session ids of the logged-in users, and of their anonymous sessions before login. */
  sessionIds: string[];
  preLoginIds: string[];
  userNames: string[];
  keys: string[];
  values: Map<string, Buffer>;
  store: SessionStore;
  logs: string;
}

/**
 * Boots the core app on a fresh memcached, logs users in (each one first with an anonymous session
 * that the login replaces), counts visits, then dumps every key and value of that memcached.
 */
async function loginAndDump(
  platform: Platform,
  options: Partial<SessionCacheOptions>,
): Promise<Dump> {
  const memcached = await MemcachedProcess.start();
  const logger = new CapturingLogger();
  let app: INestApplication | undefined;
  try {
    const moduleRef = await Test.createTestingModule({
      imports: [coreModule(memcached.url, options)],
    }).compile();
    app = await createApp(moduleRef, platform, { logger });
    const server = app.getHttpServer();
    const userNames = ['ada-lovelace', 'grace-hopper', 'alan-turing', 'barbara-liskov'].map(
      (name) => `${name}-${randomBytes(4).toString('hex')}`,
    );
    const sessionIds: string[] = [];
    const preLoginIds: string[] = [];
    for (const user of userNames) {
      // An anonymous session (POST /big writes to it), then the login over it.
      const anonymous = cookieFrom(
        await request(server).post('/big').send({ size: 8 }).expect(200),
      );
      preLoginIds.push(sessionIdOf(anonymous));
      const cookie = cookieFrom(
        await request(server).post('/login').set('Cookie', anonymous).send({ user }).expect(200),
      );
      sessionIds.push(sessionIdOf(cookie));
      await request(server).post('/visits').set('Cookie', cookie).expect(200, { visits: 1 });
      await request(server).post('/visits').set('Cookie', cookie).expect(200, { visits: 2 });
    }
    const keys = await dumpKeys(memcached.port);
    const values = new Map<string, Buffer>();
    for (const key of keys) {
      const value = await memcached.getRaw(key);
      if (value !== null) values.set(key, value);
    }
    return {
      sessionIds,
      preLoginIds,
      userNames,
      keys,
      values,
      store: app.get(SessionStore),
      logs: logger.lines.join('\n'),
    };
  } finally {
    await app?.close();
    await memcached.kill();
  }
}

/** Whether any key contains any of the session ids. */
function keysWithSessionIds(dump: Dump): string[] {
  const ids = [...dump.sessionIds, ...dump.preLoginIds];
  return dump.keys.filter((key) => ids.some((id) => key.includes(id)));
}

/** The clear-text words (user names, field names) found in the dumped values. */
function clearTextInValues(dump: Dump): string[] {
  const found = new Set<string>();
  for (const value of dump.values.values()) {
    const text = value.toString('latin1');
    for (const word of [...dump.userNames, ...FIELDS]) if (text.includes(word)) found.add(word);
  }
  return [...found];
}

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('key dump of the session memcached after logins', () => {
    it('encryption on: no key holds a session id, no value holds a user name or field name', async () => {
      const dump = await loginAndDump(platform, { encryptionKeys: [randomBytes(32)] });
      // Every logged-in session is in the dump, under its hashed key.
      for (const id of dump.sessionIds) expect(dump.values.has(dump.store.key(id))).toBe(true);
      // The anonymous sessions the logins replaced are gone (no fixation).
      for (const id of dump.preLoginIds) expect(dump.keys).not.toContain(dump.store.key(id));
      expect(keysWithSessionIds(dump)).toEqual([]);
      expect(clearTextInValues(dump)).toEqual([]);
      for (const id of [...dump.sessionIds, ...dump.preLoginIds])
        expect(dump.logs).not.toContain(id);
    });

    it('encryption off (control): the values show every user name and field in clear text', async () => {
      const dump = await loginAndDump(platform, {});
      for (const id of dump.sessionIds) expect(dump.values.has(dump.store.key(id))).toBe(true);
      // Keys are still hashed by default.
      expect(keysWithSessionIds(dump)).toEqual([]);
      expect(clearTextInValues(dump).sort()).toEqual([...dump.userNames, ...FIELDS].sort());
    });

    it('hashKeys: false (control): the keys show the session ids', async () => {
      const dump = await loginAndDump(platform, {
        hashKeys: false,
        encryptionKeys: [randomBytes(32)],
      });
      expect(keysWithSessionIds(dump).length).toBe(dump.sessionIds.length);
      expect(clearTextInValues(dump)).toEqual([]);
    });
  });
});
