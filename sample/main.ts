import { Logger } from '@nestjs/common';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AddressInfo } from 'node:net';
import { AppModule } from './app.module';

/**
 * The app on Nest's Express platform (the default), or on its Fastify platform with
 * SAMPLE_PLATFORM=fastify (`npm run sample -- --fastify`): the same module, the same controllers;
 * SessionCacheModule wires express-session or @fastify/session to the same store.
 */
async function create(platform: string): Promise<INestApplication> {
  if (platform === 'express') return NestFactory.create(AppModule.fromEnv());
  if (platform !== 'fastify') {
    throw new Error(`SAMPLE_PLATFORM must be express or fastify, got "${platform}".`);
  }
  // Loaded only here: the Express sample needs none of the Fastify packages.
  const { FastifyAdapter } = await import('@nestjs/platform-fastify');
  return NestFactory.create(AppModule.fromEnv(), new FastifyAdapter());
}

async function bootstrap(): Promise<void> {
  const platform = process.env.SAMPLE_PLATFORM ?? 'express';
  const app = await create(platform);
  // Closes both memcached connections on SIGINT/SIGTERM.
  app.enableShutdownHooks();
  await app.listen(Number(process.env.PORT ?? 3000));
  const { port } = app.getHttpServer().address() as AddressInfo;
  new Logger('Sample').log(`Listening on http://localhost:${port} (Nest on ${platform})`);
  // Started by `npm run sample`: tell it the port (for its walkthrough), then let go of the channel.
  if (process.send) {
    process.send({ listening: port });
    process.disconnect();
  }
}

bootstrap().catch((err: unknown) => {
  new Logger('Sample').error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
