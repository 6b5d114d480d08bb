import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Spaces calls at least `intervalMs` apart, whoever makes them. CloudTrail's LookupEvents allows
 * 2 requests per second per account and region, a limit that cannot be raised: spacing calls just
 * over 500 ms apart keeps any one-second window at two calls, so the SDK's retries are for bad luck,
 * not the norm.
 */
export class Pacer {
  private next = 0;
  constructor(private readonly intervalMs: number) {}

  async wait(): Promise<void> {
    const now = Date.now();
    const at = Math.max(now, this.next);
    this.next = at + this.intervalMs;
    if (at > now) await sleep(at - now);
  }
}
