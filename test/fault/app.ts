import type { AddressInfo } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { SessionStore } from '../../src';
import type { SessionCacheOptions } from '../../src';
import { CapturingLogger } from '../support/logger';
import { coreModule } from '../e2e/core/core.module';

/**
 * The core scenario app on a real port, for fault tests that drive it with fetch (which keeps
 * connections alive, as browsers and proxies do).
 */
export async function startListeningApp(url: string, options: Partial<SessionCacheOptions> = {}) {
  const moduleRef = await Test.createTestingModule({
    imports: [coreModule(url, options)],
  }).compile();
  const app: INestApplication = moduleRef.createNestApplication({
    logger: new CapturingLogger(),
  });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, base: `http://127.0.0.1:${port}`, store: app.get(SessionStore) };
}
