import { afterEach, beforeEach, jest } from '@jest/globals';

/**
 * `Date.now()` under the test's control in every test of the enclosing `describe`: it reads
 * `clock.now`, which starts at `start` (ms) before each test; tests move it (`clock.now += 1000`).
 * The real clock is back after each test.
 */
export function controlledClock(start: number): { now: number } {
  const clock = { now: start };
  beforeEach(() => {
    clock.now = start;
    jest.spyOn(Date, 'now').mockImplementation(() => clock.now);
  });
  afterEach(() => {
    jest.restoreAllMocks();
  });
  return clock;
}
