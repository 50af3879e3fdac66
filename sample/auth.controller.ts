import {
  BadRequestException,
  Body,
  Controller,
  HttpCode,
  Post,
  Req,
  Res,
  UseGuards,
} from '@nestjs/common';
import { SessionStore } from '../src';
import {
  destroy,
  LoggedInGuard,
  regenerate,
  SESSION_COOKIE,
  sessionOf,
  SessionUser,
} from './session';
import type { SampleRequest, SampleResponse } from './session';

interface LoginBody {
  username?: unknown;
}

@Controller()
export class AuthController {
  constructor(private readonly store: SessionStore) {}

  /**
   * Logs in as `username` (no password: this is a demo). The session id is regenerated first, so
   * an id handed out before login (or planted by an attacker) is worth nothing afterwards.
   */
  @Post('login')
  @HttpCode(200)
  async login(
    @Req() req: SampleRequest,
    @Body() body: LoginBody = {},
  ): Promise<{ user: SessionUser }> {
    const username = typeof body.username === 'string' ? body.username.trim() : '';
    if (username === '' || username.length > 64) {
      throw new BadRequestException('username must be a non-empty string of at most 64 characters');
    }
    const session = await regenerate(req);
    session.user = { username, loggedInAt: new Date().toISOString() };
    // The library saves the modified session before this response is sent.
    return { user: session.user };
  }

  /** Deletes the session from memcached B and tells the browser to drop the cookie. */
  @Post('logout')
  @HttpCode(200)
  async logout(
    @Req() req: SampleRequest,
    @Res({ passthrough: true }) res: SampleResponse,
  ): Promise<{ loggedOut: true }> {
    await destroy(req);
    res.clearCookie(SESSION_COOKIE, { path: '/' });
    return { loggedOut: true };
  }

  /**
   * Logs the current user out on every device: destroys every session whose `userId` (see the
   * module options) is this user's, this one included.
   */
  @Post('logout-everywhere')
  @HttpCode(200)
  @UseGuards(LoggedInGuard)
  async logoutEverywhere(
    @Req() req: SampleRequest,
    @Res({ passthrough: true }) res: SampleResponse,
  ): Promise<{ sessions: number }> {
    const sessions = await this.store.destroyUserSessions(sessionOf(req).user!.username);
    res.clearCookie(SESSION_COOKIE, { path: '/' });
    return { sessions };
  }
}
