// The two HTTP platforms the e2e scenarios run on: the same Nest module tree, booted on Nest's
// Express adapter (the default) or on its Fastify adapter.
import type { INestApplication, NestApplicationOptions } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { TestingModule } from '@nestjs/testing';

export type Platform = 'express' | 'fastify';

/** Both platforms, for `describe.each(PLATFORMS)`. */
export const PLATFORMS: Platform[] = ['express', 'fastify'];

/**
 * A session secret long enough for both platforms (@fastify/session needs at least 32
 * characters; express-session takes any).
 */
export const SECRET = 'e2e-session-secret-of-at-least-32-characters';

/**
 * Creates and initializes the app of `moduleRef` on `platform`. On Fastify, also waits until the
 * instance is ready (its plugins loaded), as Nest's own Fastify tests do before using supertest
 * on `app.getHttpServer()`.
 */
export async function createApp(
  moduleRef: TestingModule,
  platform: Platform,
  options: NestApplicationOptions = {},
): Promise<INestApplication> {
  if (platform === 'express') {
    const app = moduleRef.createNestApplication(options);
    await app.init();
    return app;
  }
  const app = moduleRef.createNestApplication(new FastifyAdapter(), options);
  await app.init();
  await (app.getHttpAdapter().getInstance() as { ready(): Promise<unknown> }).ready();
  return app;
}
