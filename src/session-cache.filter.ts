import { ArgumentsHost, Catch, Inject } from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';
import type { Response } from 'express';
import { logger } from './session-cache.providers';
import { SessionCacheConfigError, SessionCacheError } from './session-cache.errors';
import {
  errorSummary,
  SESSION_HTTP_CONTEXT,
  setRetryAfter,
  toHttpException,
} from './session-cache.http';
import type { SessionHttpContext } from './session.middleware';

/**
 * Store errors that a handler meets (`req.session.regenerate()`, `destroy()`, `save()`, or the
 * injected store) answer as HTTP errors instead of a 500: 503 with `Retry-After` when memcached
 * cannot be used, 413 for a session that is too large. Configuration mistakes stay 500s. Registered
 * by the module as a global filter (it costs nothing until such an error is thrown); the answer is
 * written the way Nest's own filter writes an `HttpException`.
 */
@Catch(SessionCacheError)
export class SessionCacheExceptionFilter extends BaseExceptionFilter {
  constructor(@Inject(SESSION_HTTP_CONTEXT) private readonly context: SessionHttpContext) {
    super();
  }

  override catch(exception: SessionCacheError, host: ArgumentsHost): void {
    if (exception instanceof SessionCacheConfigError || host.getType() !== 'http') {
      super.catch(exception, host);
      return;
    }
    logger.warn(`A session operation failed in a handler: ${errorSummary(exception)}`);
    setRetryAfter(
      host.switchToHttp().getResponse<Response>(),
      this.context.store.client,
      exception,
    );
    super.catch(toHttpException(exception), host);
  }
}
