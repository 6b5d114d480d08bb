// What `pristine replace` asks before it acts on an instance.
import { describe, expect, it } from 'vitest';
import { replaceQuestion } from '../../src/commands/replace.js';
import { evaluateScope } from '../../src/core/evaluate.js';
import { FIXTURE_INSTANCE, FIXTURE_NOW, cleanInventory, facts, manifest, manifests, policies, trailActivity, WEB_POLICY } from '../support/facts.js';

const baked = manifest();
const judged = (over: Parameters<typeof facts>[0], index = manifests(baked)) => {
  const r = evaluateScope(facts(over), policies(WEB_POLICY), index, FIXTURE_NOW).results.find((x) => x.instance.instanceId === FIXTURE_INSTANCE);
  if (!r) throw new Error('not judged');
  return r;
};

describe('replaceQuestion', () => {
  it('names the instance, its verdict and the image it would launch', () => {
    const r = judged({ activities: [trailActivity('ssm-start-session')], inventory: new Map([[FIXTURE_INSTANCE, cleanInventory(baked)]]) });
    expect(replaceQuestion(r, ' behind 1 target group(s)')).toBe(`Replace ${FIXTURE_INSTANCE} (web-1), verdict tainted, with a fresh instance of ${r.instance.imageId} behind 1 target group(s)?`);
  });

  it('says first what pristine cannot vouch for in what it would launch: the reason a cycle leaves it to a human', () => {
    // Its image was never recorded: no manifest says what a fresh copy would hold.
    const r = judged({ activities: [trailActivity('ssm-start-session')] }, manifests());
    const question = replaceQuestion(r, '');
    expect(question).toMatch(new RegExp(`^pristine cannot vouch for what it would launch: image ${r.instance.imageId} has no manifest in us-east-1: record it with \`pristine manifest record\`\\.\\nReplace ${FIXTURE_INSTANCE} \\(web-1\\), verdict tainted, `));
  });
});
