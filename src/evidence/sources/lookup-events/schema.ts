import { z } from 'zod';
import { Duration } from '../../../core/schema-types.js';

/** `sources.lookupEvents` in pristine.yaml. */
export const LookupEventsConfig = z
  .strictObject({
    /** off: CloudTrail is proven only by S3 digests (sources.s3) */
    enabled: z.boolean().default(true),
    /**
     * CloudTrail delivers most events within 15 minutes but does not promise it: a span is proven
     * only up to `now - settle`, and what is newer is read again next cycle. Instances are vouched for
     * up to the same point.
     */
    settle: Duration.prefault('15m'),
    /** re-read the last `window` every `every`, and take in what arrived late */
    reconcile: z.strictObject({ every: Duration.prefault('1h'), window: Duration.prefault('24h') }).prefault({}),
  })
  .prefault({});
export type LookupEventsConfig = z.output<typeof LookupEventsConfig>;
