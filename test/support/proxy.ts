import net from 'node:net';
import { once } from 'node:events';

/**
 * A TCP proxy in front of one memcached, for ordering tests: while `hold()` is on, what clients
 * send is kept (in order) instead of forwarded; `release()` forwards it. Answers always flow.
 * Everything runs in the test's own event loop, so holding right after an awaited call catches
 * the requests that call queued for its next socket write.
 */
export class HoldingProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #held: { upstream: net.Socket; chunk: Buffer }[] = [];
  #holding = false;
  port = 0;

  private constructor(targetPort: number, host: string) {
    this.#server = net.createServer((client) => {
      const upstream = net.connect({ port: targetPort, host });
      this.#sockets.add(client).add(upstream);
      client.on('data', (chunk: Buffer) => {
        if (this.#holding) this.#held.push({ upstream, chunk });
        else upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => client.write(chunk));
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('close', close).on('error', close);
      upstream.on('close', close).on('error', close);
    });
  }

  static async start(targetPort: number, host = '127.0.0.1'): Promise<HoldingProxy> {
    const proxy = new HoldingProxy(targetPort, host);
    proxy.#server.listen(0, '127.0.0.1');
    await once(proxy.#server, 'listening');
    proxy.port = (proxy.#server.address() as net.AddressInfo).port;
    return proxy;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** How many chunks are held. */
  get heldChunks(): number {
    return this.#held.length;
  }

  hold(): void {
    this.#holding = true;
  }

  release(): void {
    this.#holding = false;
    for (const { upstream, chunk } of this.#held.splice(0)) upstream.write(chunk);
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#server.close();
    await once(this.#server, 'close');
  }
}
