/**
 * Polls `probe` until it resolves (not throws), and returns its value. Fails with the last error
 * after `timeout` ms. For conditions that have no event to wait for.
 */
export async function eventually<T>(
  probe: () => Promise<T> | T,
  { timeout = 5000, interval = 20 }: { timeout?: number; interval?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await probe();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, interval));
    }
  }
}
