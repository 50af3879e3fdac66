import type { SessionCache, SessionCacheLogger } from '../memcached/session-cache.client';
import { LazyTouch } from './lazy-touch';
import { SessionNamespace } from './namespace';
import { Replication } from './replication';
import type { ReadRepairEvent } from './replication';
import { SessionCodec } from './session-codec';
import { SessionKeys } from './session-keys';
import { SessionStates } from './session-state';
import type { ResolvedStoreOptions } from './session-store.options';
import { SessionWriter } from './session-writer';
import { SessionTtl } from './ttl';
import { UserIndex } from './user-index';

/** The parts a `SessionStore` is an adapter over, one concern each. */
export interface SessionStoreParts {
  /** Session keys and the internal keys beside them (session-keys.ts). */
  readonly keys: SessionKeys;
  /** The TTL rule (ttl.ts). */
  readonly ttl: SessionTtl;
  /** Sessions to bytes and back: header, serializer, cipher (session-codec.ts). */
  readonly codec: SessionCodec;
  /** What the store knows of each session object (session-state.ts). */
  readonly states: SessionStates;
  /** The generation behind `clear()` (namespace.ts). */
  readonly namespace: SessionNamespace;
  /** Logout everywhere (user-index.ts). */
  readonly users: UserIndex;
  /** Copies on replicas: versions, read-repair, tombstones (replication.ts). */
  readonly replicas: Replication;
  /** Saves (session-writer.ts). */
  readonly writer: SessionWriter;
  /** Touches (lazy-touch.ts). */
  readonly touches: LazyTouch;
}

/** Builds the parts of a store on `client` from its resolved options `o`. */
export function buildStoreParts(
  client: SessionCache,
  o: ResolvedStoreOptions,
  logger: SessionCacheLogger,
  onRepair: (event: ReadRepairEvent) => void,
): SessionStoreParts {
  const keys = new SessionKeys(o.prefix, o.hasher);
  const ttl = new SessionTtl(o.ttl, o.lazyTouch);
  const codec = new SessionCodec(o.serializer, o.cipher, o.maxSessionSize, logger);
  const states = new SessionStates();
  const namespace = new SessionNamespace(
    client,
    keys.generation,
    o.generationCheckInterval,
    logger,
  );
  const users = new UserIndex(client, keys, o.userIndexMinTtl, o.userId);
  const replicas = new Replication(client, codec, keys, ttl, o.tombstoneTtl, logger, onRepair);
  const writer = new SessionWriter(codec, states, ttl, namespace, users, replicas, logger);
  const touches = new LazyTouch(client, ttl, users, writer);
  return { keys, ttl, codec, states, namespace, users, replicas, writer, touches };
}
