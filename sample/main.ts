import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AddressInfo } from 'node:net';
import { AppModule } from './app.module';

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(AppModule.fromEnv());
  // Closes both memcached connections on SIGINT/SIGTERM.
  app.enableShutdownHooks();
  await app.listen(Number(process.env.PORT ?? 3000));
  const { port } = app.getHttpServer().address() as AddressInfo;
  new Logger('Sample').log(`Listening on http://localhost:${port}`);
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
