import { describe, expect, it } from 'vitest';
import { cachedCredentials } from '../../src/collect/clients.js';

describe('credentials of an assumed role', () => {
  const creds = (expiresAt: number) => ({ accessKeyId: `AK${expiresAt}`, secretAccessKey: 's', expiration: new Date(expiresAt) });

  it('are assumed once for every client of the account, and again five minutes before they expire', async () => {
    let now = 0;
    let calls = 0;
    const provider = cachedCredentials(async () => creds(now + 60 * 60_000 + calls++ * 0), () => now);
    const first = await Promise.all([provider(), provider(), provider()]);
    expect(calls).toBe(1);
    expect(new Set(first.map((c) => c.accessKeyId)).size).toBe(1);
    now = 54 * 60_000;
    await provider();
    expect(calls).toBe(1);
    now = 55 * 60_000;
    await provider();
    expect(calls).toBe(2);
  });

  it('are asked again after a failure: a role that could not be assumed is not remembered as such', async () => {
    let fail = true;
    let calls = 0;
    const provider = cachedCredentials(async () => {
      calls++;
      if (fail) throw new Error('AccessDenied');
      return creds(Date.now() + 3_600_000);
    });
    await expect(provider()).rejects.toThrow('AccessDenied');
    fail = false;
    await expect(provider()).resolves.toMatchObject({ secretAccessKey: 's' });
    expect(calls).toBe(2);
  });
});
