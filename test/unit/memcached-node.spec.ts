import net from 'node:net';
import { MemcachedCredentials, MemcachedNode, SessionCacheAuthError } from '../../src';
import { freePort } from '../support/memcached.mjs';
import { eventually } from '../support/wait';

/**
 * A fake memcached speaking just enough of the binary protocol: SASL list/auth (refused or
 * accepted) and a miss for every other command.
 */
async function fakeMemcached(port: number, acceptLogin: boolean) {
  const sockets = new Set<net.Socket>();
  /** Opcodes of the commands received after a login (not the SASL ones). */
  const received: number[] = [];
  const control = { hang: false };
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('data', (data) => {
      if (control.hang) return;
      for (let at = 0; at + 24 <= data.length;) {
        const opcode = data[at + 1];
        if (opcode !== 0x20 && opcode !== 0x21) received.push(opcode);
        const bodyLength = data.readUInt32BE(at + 8);
        const reply = Buffer.alloc(24);
        reply[0] = 0x81;
        reply[1] = opcode;
        reply.writeUInt32BE(data.readUInt32BE(at + 12), 12); // opaque
        let body = Buffer.alloc(0);
        if (opcode === 0x20)
          body = Buffer.from('PLAIN'); // SASL list mechanisms
        else if (opcode === 0x21)
          reply.writeUInt16BE(acceptLogin ? 0 : 0x20, 6); // SASL auth
        else reply.writeUInt16BE(0x01, 6); // key not found
        reply.writeUInt32BE(body.length, 8);
        socket.write(Buffer.concat([reply, body]));
        at += 24 + bodyLength;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    received,
    control,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

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
    let server = await fakeMemcached(port, false);
    try {
      await expect(node.get('k')).rejects.toBeInstanceOf(SessionCacheAuthError);
      await server.close(); // the operator restarts it with the right sasldb…
      // …and while it is down, the login retry meets a refused connection.
      await eventually(() => expect(node.get('k')).rejects.toThrow(/ECONNREFUSED|skipped/));
      server = await fakeMemcached(port, true);
      expect(await eventually(() => node.get('k'), { timeout: 5000 })).toBeNull();
    } finally {
      node.close();
      await server.close();
    }
  });

  it('never sends a request that failed while its connection was still logging in', async () => {
    const port = await freePort();
    const server = await fakeMemcached(port, true);
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
    const server = await fakeMemcached(port, true);
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
