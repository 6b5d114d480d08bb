// The V8 flags pristine sets for itself, unless the user set them.
import { describe, expect, it } from 'vitest';
import { flagsToSet, TUNED_V8_FLAGS } from '../../src/runtime-tuning.js';

describe('flagsToSet', () => {
  it('sets the tuned flags when node was given none of them', () => {
    expect(flagsToSet([], undefined)).toEqual([...TUNED_V8_FLAGS]);
    expect(flagsToSet(['--enable-source-maps'], '--max-old-space-size=4096')).toEqual([...TUNED_V8_FLAGS]);
  });

  it("leaves a flag the user gave node, in either spelling, as the user set it", () => {
    expect(flagsToSet(['--interrupt-budget=65536'], undefined)).toEqual(['--no-concurrent-marking', '--no-parallel-scavenge']);
    expect(flagsToSet(['--interrupt_budget=65536'], undefined)).toEqual(['--no-concurrent-marking', '--no-parallel-scavenge']);
    expect(flagsToSet([], '--interrupt-budget=65536')).toEqual(['--no-concurrent-marking', '--no-parallel-scavenge']);
  });

  it('takes --X and --no-X for the same flag, so a user can turn a tuned one back on', () => {
    expect(flagsToSet(['--concurrent-marking', '--parallel-scavenge'], undefined)).toEqual(['--interrupt-budget=2162688']);
    expect(flagsToSet([], '--no_concurrent_marking --interrupt-budget=1 --parallel_scavenge')).toEqual([]);
    // A flag whose name merely ends like a tuned one's is another flag.
    expect(flagsToSet(['--no-interrupt-budget-scale'], undefined)).toEqual([...TUNED_V8_FLAGS]);
  });
});
