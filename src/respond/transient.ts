import type { SdkError } from '@smithy/types';
import { aws } from '../collect/aws-sdk.js';

/**
 * An AWS error that says "not now" rather than "no": throttling, a 5xx, a timeout or a dropped
 * connection. The SDK already retried it a few times; a replacement step retries it again, within its
 * deadline, rather than rolling back on one unlucky call.
 */
export function isTransient(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as SdkError;
  try {
    return aws.SmithyRetry.isThrottlingError(e) || aws.SmithyRetry.isTransientError(e) || aws.SmithyRetry.isServerError(e);
  } catch {
    return false;
  }
}
