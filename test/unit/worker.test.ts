import { describe, expect, it } from 'vitest';
import { hostname } from 'node:os';
import { deadLocalDriver, driverName } from '../../src/respond/worker.js';

describe('replacement drivers', () => {
  it('are named by host, process and a nonce', () => {
    expect(driverName()).toMatch(new RegExp(`^${hostname()}:${process.pid}:[0-9a-f]{8}$`));
    expect(driverName()).not.toBe(driverName());
  });

  it('are known dead when they ran on this host and their process is gone; never for another host', () => {
    expect(deadLocalDriver(`${hostname()}:${process.pid}:abcd1234`)).toBe(false);
    expect(deadLocalDriver(`${hostname()}:2147483646:abcd1234`)).toBe(true);
    expect(deadLocalDriver('another-host:2147483646:abcd1234')).toBe(false);
    expect(deadLocalDriver(null)).toBe(false);
  });
});
