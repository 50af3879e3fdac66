import { rawCommand } from './memcached.mjs';

/**
 * Every key memcached holds, as an attacker who can reach its port would list them
 * (`lru_crawler metadump all` over a raw socket), decoded.
 */
export async function dumpKeys(port: number, host = '127.0.0.1'): Promise<string[]> {
  const reply = await rawCommand(port, 'lru_crawler metadump all', {
    until: /(END|BUSY.*)\r\n$/,
    host,
  });
  if (reply.startsWith('BUSY')) throw new Error(`memcached is busy: ${reply.trim()}`);
  return reply
    .split('\n')
    .filter((line) => line.startsWith('key='))
    .map((line) => decodeURIComponent(line.slice(4, line.indexOf(' '))));
}
