import { Controller, Get, HttpCode, Post, Req, UseGuards } from '@nestjs/common';
import { LoggedInGuard, sessionOf, SessionUser } from './session';
import type { SampleRequest } from './session';

@Controller()
export class MeController {
  /** The logged-in user and the rest of the session's data; 401 when not logged in. */
  @Get('me')
  @UseGuards(LoggedInGuard)
  me(@Req() req: SampleRequest): { user: SessionUser; visits: number } {
    const session = sessionOf(req);
    return { user: session.user!, visits: session.visits ?? 0 };
  }

  /**
   * Counts visits in the session, logged in or not. Before login this creates an anonymous
   * session (and its cookie), like a shopping cart would; login then replaces its id.
   */
  @Post('visits')
  @HttpCode(200)
  visit(@Req() req: SampleRequest): { visits: number } {
    const session = sessionOf(req);
    session.visits = (session.visits ?? 0) + 1;
    return { visits: session.visits };
  }
}
