import type { LoggerService } from '@nestjs/common';

/** A Nest logger that keeps every line, so tests can check warnings and that nothing leaks. */
export class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  log(message: unknown, ...rest: unknown[]) {
    this.keep(message, rest);
  }
  error(message: unknown, ...rest: unknown[]) {
    this.keep(message, rest);
  }
  warn(message: unknown, ...rest: unknown[]) {
    this.keep(message, rest);
  }
  debug(message: unknown, ...rest: unknown[]) {
    this.keep(message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]) {
    this.keep(message, rest);
  }
  private keep(message: unknown, rest: unknown[]) {
    this.lines.push([message, ...rest].map(String).join(' '));
  }
}
