import { setTimeout as sleep } from 'node:timers/promises';

interface Mark {
  /** when the call stops counting against the limit: Infinity while it is in flight */
  until: number;
}

/**
 * At most `limit` calls in any `windowMs`, whoever makes them. CloudTrail's LookupEvents allows 2
 * requests per second per account and region, a limit that cannot be raised, and counts them when
 * they arrive. Spacing the sends is not enough: a request delayed on its way (a busy event loop, the
 * network) arrives closer to the next one than it was sent. So a call counts from its send until
 * `windowMs` after its answer came back: the server saw it before that answer, so the call that takes
 * its place arrives more than `windowMs` after it, whatever the delays. The SDK's retries stay for
 * bad luck, not the norm.
 */
export class Pacer {
  private readonly marks: Mark[] = [];
  private turn: Promise<unknown> = Promise.resolve();
  private released: (() => void) | null = null;

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  /** Waits for a free place (callers in the order they asked); call the function returned when the answer is in. */
  acquire(): Promise<() => void> {
    const mine = this.turn.then(() => this.take());
    this.turn = mine.catch(() => undefined);
    return mine;
  }

  private async take(): Promise<() => void> {
    for (;;) {
      const now = Date.now();
      for (let i = this.marks.length - 1; i >= 0; i--) if ((this.marks[i] as Mark).until <= now) this.marks.splice(i, 1);
      if (this.marks.length < this.limit) break;
      const soonest = this.marks.reduce((t, m) => Math.min(t, m.until), Infinity);
      if (soonest === Infinity) await new Promise<void>((resolve) => (this.released = resolve));
      else await sleep(soonest - now);
    }
    const mark: Mark = { until: Infinity };
    this.marks.push(mark);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      mark.until = Date.now() + this.windowMs;
      const wake = this.released;
      this.released = null;
      wake?.();
    };
  }
}
