import {
  BadRequestException,
  Body,
  CanActivate,
  Controller,
  ExecutionContext,
  Get,
  HttpCode,
  Injectable,
  Post,
  Req,
  Session,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { CacheModule } from '@nestjs/cache-manager';
import { InjectSessionCache, SessionCache, SessionCacheModule, SessionStore } from '../../../src';
import type { SessionCacheOptions } from '../../../src';
import { SECRET } from '../../support/platform';

/** The fields this scenario keeps in the session. */
type Fields = { user?: string; visits?: number; blob?: string };

/**
 * The request as the handlers use it, on either platform: express-session's and
 * @fastify/session's sessions both have callback `regenerate()` and `destroy()`, and fields set
 * on them are saved.
 */
interface SessionRequest {
  session: Fields & {
    regenerate(callback: (err?: unknown) => void): void;
    destroy(callback: (err?: unknown) => void): void;
  };
}

/** Lets a test hold a request inside its handler and release it later. */
@Injectable()
export class Gate {
  private release!: () => void;
  private entered!: () => void;
  readonly opened: Promise<void>;
  readonly reached: Promise<void>;
  constructor() {
    this.opened = new Promise((r) => (this.release = r));
    this.reached = new Promise((r) => (this.entered = r));
  }
  async pass(): Promise<void> {
    this.entered();
    await this.opened;
  }
  open(): void {
    this.release();
  }
}

function promisify(fn: (cb: (err?: unknown) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

@Injectable()
export class SessionInfo {
  constructor(
    @InjectSessionCache() readonly cache: SessionCache,
    readonly store: SessionStore,
  ) {}
}

/** A guard that needs a logged-in session, as apps write them. */
@Injectable()
export class LoggedIn implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<SessionRequest>();
    if (!req.session?.user) throw new UnauthorizedException();
    return true;
  }
}

@Controller()
export class CoreController {
  constructor(private readonly gate: Gate) {}

  @Post('login')
  @HttpCode(200)
  async login(@Req() req: SessionRequest, @Body() body: { user?: string }) {
    if (!body?.user) throw new BadRequestException('user is required');
    await promisify((cb) => req.session.regenerate(cb));
    req.session.user = body.user;
    req.session.visits = 0;
    return { user: body.user };
  }

  @Get('me')
  me(@Req() req: SessionRequest) {
    if (!req.session?.user) throw new UnauthorizedException();
    return { user: req.session.user, visits: req.session.visits, blob: req.session.blob?.length };
  }

  @Post('visits')
  @HttpCode(200)
  visit(@Req() req: SessionRequest) {
    if (!req.session?.user) throw new UnauthorizedException();
    req.session.visits = (req.session.visits ?? 0) + 1;
    return { visits: req.session.visits };
  }

  @Post('slow/visits')
  @HttpCode(200)
  async slowVisit(@Req() req: SessionRequest) {
    if (!req.session?.user) throw new UnauthorizedException();
    await this.gate.pass();
    req.session.visits = (req.session.visits ?? 0) + 1;
    return { visits: req.session.visits };
  }

  @Post('big')
  @HttpCode(200)
  big(@Req() req: SessionRequest, @Body() body: { size: number }) {
    req.session.blob = 'x'.repeat(body.size);
    return { size: body.size };
  }

  @Post('logout')
  @HttpCode(204)
  async logout(@Req() req: SessionRequest) {
    if (req.session) await promisify((cb) => req.session.destroy(cb));
  }

  @Get('public')
  open(@Req() req: SessionRequest) {
    return { hasSession: req.session !== undefined };
  }

  /** Counts requests in the session, creating one when there is none (no login needed). */
  @Post('count')
  @HttpCode(200)
  count(@Req() req: SessionRequest) {
    req.session.visits = (req.session.visits ?? 0) + 1;
    return { visits: req.session.visits };
  }

  @Get('count')
  counted(@Req() req: SessionRequest) {
    return { visits: req.session.visits ?? 0 };
  }

  /** Never touches the session. */
  @Get('ping')
  ping() {
    return { pong: true };
  }

  @Get('guarded')
  @UseGuards(LoggedIn)
  guarded() {
    return { ok: true };
  }

  @Get('decorated')
  decorated(@Session() session: Fields) {
    return { user: session.user };
  }
}

/** Logout everywhere and clear, through the injected store. */
@Controller('admin')
export class AdminController {
  constructor(private readonly store: SessionStore) {}

  /** Destroys every session of the logged-in user (needs the `userId` option). */
  @Post('logout-everywhere')
  @HttpCode(200)
  @UseGuards(LoggedIn)
  async logoutEverywhere(@Req() req: SessionRequest) {
    return { sessions: await this.store.destroyUserSessions(req.session.user!) };
  }

  /** Ends every session of this store, without flush_all. */
  @Post('clear')
  @HttpCode(204)
  async clear() {
    await this.store.clearSessions();
  }
}

/** The scenario app: the general cache (in memory here) next to the session memcached. */
export function coreModule(url: string, options: Partial<SessionCacheOptions> = {}): DynamicModule {
  return {
    module: class CoreAppModule {},
    imports: [
      CacheModule.register(),
      SessionCacheModule.forRoot(url, {
        ...options,
        session: { secret: SECRET, ...options.session },
      }),
    ],
    controllers: [CoreController, AdminController],
    providers: [Gate, SessionInfo],
  };
}
