import { describe, expect, it } from 'vitest';
import { normalizeVersion } from '../../src/core/package-version.js';

describe('normalizeVersion', () => {
  it('keeps a dpkg version with its epoch as one string', () => {
    expect(normalizeVersion('1:2.38.1-5+deb12u3')).toBe('1:2.38.1-5+deb12u3');
  });

  it('drops an empty or zero epoch so it equals no epoch', () => {
    expect(normalizeVersion('0:1.2.3-1')).toBe('1.2.3-1');
    expect(normalizeVersion({ version: '1.2.3-1', epoch: '0' })).toBe('1.2.3-1');
    expect(normalizeVersion({ version: '1.2.3-1', epoch: '' })).toBe('1.2.3-1');
    expect(normalizeVersion({ version: '1.2.3-1', epoch: '00' })).toBe('1.2.3-1');
  });

  it("joins rpm's Version and Release as SSM Inventory splits them", () => {
    expect(normalizeVersion({ version: '6.1.115', release: '126.197.amzn2023', epoch: '' })).toBe('6.1.115-126.197.amzn2023');
    expect(normalizeVersion({ version: '3.0.8', release: '1.amzn2023.0.18', epoch: '1' })).toBe('1:3.0.8-1.amzn2023.0.18');
  });

  it('makes an rpm list row and the same package from SSM Inventory compare equal', () => {
    const fromList = normalizeVersion('1:1.24.0-1.amzn2023.0.4');
    const fromInventory = normalizeVersion({ version: '1.24.0', release: '1.amzn2023.0.4', epoch: '1' });
    expect(fromInventory).toBe(fromList);
  });

  it('reads an epoch SSM left inside the version when the Epoch field is empty', () => {
    expect(normalizeVersion({ version: '4:12.2.0-3', release: '', epoch: '' })).toBe('4:12.2.0-3');
  });

  it('does not append a release the version already ends with', () => {
    expect(normalizeVersion({ version: '2.34-52.amzn2023.0.11', release: '52.amzn2023.0.11' })).toBe('2.34-52.amzn2023.0.11');
  });

  it('tells apart versions that differ only in their epoch', () => {
    expect(normalizeVersion('1:5.44-3')).not.toBe(normalizeVersion('5.44-3'));
  });
});
