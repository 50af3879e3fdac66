import { Inject } from '@nestjs/common';
import { getSessionCacheToken } from './session-cache.constants';
import { getSessionStoreToken } from './session-cache.providers';

/** Injects the {@link SessionCache} (memcached client) of the session cluster. */
export const InjectSessionCache = (name?: string) => Inject(getSessionCacheToken(name));

/** Injects the {@link SessionStore} of connection `name` (the default one can be injected by class). */
export const InjectSessionStore = (name?: string) => Inject(getSessionStoreToken(name));
