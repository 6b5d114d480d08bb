import type { SdkError } from '@smithy/types';
import { SmithyRetry } from '../collect/aws-sdk.js';
const { isServerError, isThrottlingError, isTransientError } = SmithyRetry;

/**
 * An AWS error that says "not now" rather than "no": throttling, a 5xx, a timeout or a dropped
 * connection. The SDK already retried it a few times; a replacement step retries it again, within its
 * deadline, rather than rolling back on one unlucky call.
 */
export function isTransient(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as SdkError;
  try {
    return isThrottlingError(e) || isTransientError(e) || isServerError(e);
  } catch {
    return false;
  }
}
