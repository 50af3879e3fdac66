import { MemcachedCredentials, MemcachedNode, SessionCacheAuthError } from '../../src';
import { fakeMemcached } from '../support/fake-memcached';
import { freePort } from '../support/memcached.mjs';
import { eventually } from '../support/wait';

describe('MemcachedNode', () => {
  it('recovers once a server that refused the login is fixed, even if it was down in between', async () => {
    const port = await freePort();
    const node = new MemcachedNode(`127.0.0.1:${port}`, '127.0.0.1', port, {
      timeout: 200,
      keepAlive: false,
      retryDelay: 50,
      maxRetryDelay: 200,
      credentials: new MemcachedCredentials('app', 'wrong'),
    });
    let server = await fakeMemcached(port, { acceptLogin: false });
    try {
      await expect(node.get('k')).rejects.toBeInstanceOf(SessionCacheAuthError);
      await server.close(); // the operator restarts it with the right sasldb…
      // …and while it is down, the login retry meets a refused connection.
      await eventually(() => expect(node.get('k')).rejects.toThrow(/ECONNREFUSED|skipped/));
      server = await fakeMemcached(port);
      expect(await eventually(() => node.get('k'), { timeout: 5000 })).toBeNull();
    } finally {
      node.close();
      await server.close();
    }
  });

  it('never sends a request that failed while its connection was still logging in', async () => {
    const port = await freePort();
    const server = await fakeMemcached(port);
    const node = new MemcachedNode(`127.0.0.1:${port}`, '127.0.0.1', port, {
      timeout: 100,
      keepAlive: false,
      retryDelay: 0,
      maxRetryDelay: 0,
      credentials: new MemcachedCredentials('app', 'right'),
    });
    try {
      server.control.hang = true; // connects, but the login never completes
      await expect(node.replace('k', 'stale', 60)).rejects.toThrow(/no answer/);
      server.control.hang = false;
      expect(await eventually(() => node.get('k'))).toBeNull();
      // Only the get reached the server; the failed replace (0x03) was not sent late.
      expect(server.received).not.toContain(0x03);
    } finally {
      node.close();
      await server.close();
    }
  });

  it('does not take a stalled event loop for an outage', async () => {
    const port = await freePort();
    const server = await fakeMemcached(port);
    const node = new MemcachedNode(`127.0.0.1:${port}`, '127.0.0.1', port, {
      timeout: 200,
      keepAlive: false,
      retryDelay: 1000,
      maxRetryDelay: 1000,
    });
    try {
      await node.get('warm-up'); // connected
      const calls = Array.from({ length: 5 }, (_, i) => node.get(`k${i}`));
      const until = Date.now() + 400; // longer than the timeout, with the answers on their way
      while (Date.now() < until) {
        // busy: the event loop stalls, as under a long GC or synchronous work
      }
      expect(await Promise.all(calls)).toEqual([null, null, null, null, null]);
      expect(node.up).toBe(true);
    } finally {
      node.close();
      await server.close();
    }
  });
});
