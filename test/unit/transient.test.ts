import { describe, expect, it } from 'vitest';
import { isTransient } from '../../src/respond/transient.js';

const awsError = (name: string, status: number) => Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });

describe('isTransient', () => {
  it('is true for throttling, 5xx and timeouts', () => {
    expect(isTransient(awsError('ThrottlingException', 400))).toBe(true);
    expect(isTransient(awsError('RequestLimitExceeded', 503))).toBe(true);
    expect(isTransient(awsError('InternalError', 500))).toBe(true);
    expect(isTransient(awsError('TimeoutError', 0))).toBe(true);
  });

  it('is false for an error that will not go away: bad input, missing resource, no permission', () => {
    expect(isTransient(awsError('InvalidInstanceID.NotFound', 400))).toBe(false);
    expect(isTransient(awsError('UnauthorizedOperation', 403))).toBe(false);
    expect(isTransient(new Error('step failed'))).toBe(false);
    expect(isTransient(null)).toBe(false);
  });
});
