/**
 * A span is proven up to AWS's time minus `settle`, not the local clock's: a local clock ahead of AWS
 * would prove minutes whose events CloudTrail and SSM have not shown yet, and nothing reads a proven
 * span again (but the hourly reconcile). The AWS SDK keeps, on each client, the difference between
 * AWS's Date header and the local clock (`systemClockOffset`, updated on every response).
 */

/** Skew below this is left alone: it is within the Date header's second and a request's latency. */
const CLOCK_SKEW_TOLERATED_MS = 60_000;

/** How far the local clock runs ahead of AWS's by this client's last response; 0 within tolerance. */
export function clockAhead(client: { config?: object }): number {
  const offset = (client.config as { systemClockOffset?: unknown } | undefined)?.systemClockOffset;
  return typeof offset === 'number' && offset < -CLOCK_SKEW_TOLERATED_MS ? -offset : 0;
}
