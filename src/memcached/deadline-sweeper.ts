/** A deadline timer this late means the event loop was stalled, not the server (ms). */
const STALL_MS = 50;

/** A call in flight: when it runs out of time, and how to fail it then. */
export interface Deadline {
  at: number;
  settled: boolean;
  /** Given a new budget after an event-loop stall (at most once). */
  extended?: boolean;
  expire(): void;
}

/**
 * The time budget of a node's calls. Every call's deadline is kept in the order the calls started
 * (all calls have the same budget, so the order is also that of the deadlines); one timer per node,
 * armed for the oldest unsettled call, instead of one timer per call. The timer never keeps the
 * process alive.
 */
export class DeadlineSweeper {
  readonly #queue: Deadline[] = [];
  #timer: NodeJS.Timeout | null = null;
  #dueAt = 0;

  constructor(
    /** The budget of one call, in milliseconds. */
    readonly timeout: number,
  ) {}

  /** Starts the clock of a call: `expire` runs once its budget is spent, unless it settled first. */
  start(expire: () => void): Deadline {
    const deadline: Deadline = { at: performance.now() + this.timeout, settled: false, expire };
    this.#queue.push(deadline);
    if (this.#timer === null) this.#arm(this.timeout);
    return deadline;
  }

  #arm(ms: number): void {
    this.#dueAt = performance.now() + ms;
    this.#timer = setTimeout(() => this.#sweep(), ms);
    this.#timer.unref();
  }

  #sweep(): void {
    this.#timer = null;
    const now = performance.now();
    const queue = this.#queue;
    // The timer fired late: the event loop itself was stalled (long GC, synchronous work), and
    // the calls could not even be sent or their answers read. That time is not the server's:
    // give every call in flight a full budget from now, once, instead of taking the stall for
    // an outage (such a call is bounded by the stall plus twice the timeout).
    if (now - this.#dueAt > STALL_MS) {
      for (const d of queue) {
        if (d.settled || d.extended) continue; // once per call: a slow loop cannot hide a hung server
        d.extended = true;
        d.at = Math.max(d.at, now + this.timeout);
      }
    }
    let head = 0;
    while (head < queue.length && (queue[head].settled || queue[head].at <= now)) {
      if (!queue[head].settled) queue[head].expire();
      head++;
    }
    queue.splice(0, head);
    if (queue.length > 0) this.#arm(Math.max(1, queue[0].at - now));
  }
}
