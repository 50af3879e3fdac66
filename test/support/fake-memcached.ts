import net from 'node:net';

export interface FakeMemcachedOptions {
  /** Answer the SASL login with success (else "auth error"). Default true. */
  acceptLogin?: boolean;
  /** Keep a connection half-open when the client ends it (as a hung server does). */
  allowHalfOpen?: boolean;
  /** The status of the answer to a request with this opcode (default 0x01, key not found). */
  status?: (opcode: number) => number;
}

/**
 * A fake memcached speaking just enough of the binary protocol: SASL list/auth (refused or
 * accepted) and, for every other command, an empty answer (by default "key not found").
 */
export async function fakeMemcached(port: number, options: FakeMemcachedOptions = {}) {
  const { acceptLogin = true, allowHalfOpen = false, status = () => 0x01 } = options;
  const sockets = new Set<net.Socket>();
  /** Opcodes of the commands received after a login (not the SASL ones). */
  const received: number[] = [];
  /** Opcodes of the SASL requests received (0x20 list mechanisms, 0x21 auth). */
  const sasl: number[] = [];
  const control = { hang: false, connections: 0 };
  const server = net.createServer({ allowHalfOpen }, (socket) => {
    sockets.add(socket);
    control.connections++;
    socket.on('error', () => undefined);
    socket.on('data', (data) => {
      if (control.hang) return;
      for (let at = 0; at + 24 <= data.length;) {
        const opcode = data[at + 1];
        if (opcode !== 0x20 && opcode !== 0x21) received.push(opcode);
        else sasl.push(opcode);
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
        else reply.writeUInt16BE(status(opcode), 6);
        reply.writeUInt32BE(body.length, 8);
        socket.write(Buffer.concat([reply, body]));
        at += 24 + bodyLength;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    received,
    sasl,
    control,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
