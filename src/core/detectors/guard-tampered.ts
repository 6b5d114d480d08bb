import { z } from 'zod';
import { isServiceLinked } from '../actor.js';
import type { Activity } from '../facts.js';
import { activityFinding, byWhom } from './activity-finding.js';
import { defineDetector } from './types.js';

const Options = z.strictObject({});

export const guardTampered = defineDetector({
  id: 'guard-tampered',
  description: "Someone added or removed one of pristine's own tags (pristine:*, the policy's exemption tags, or a tag a policy's scope selects by) after launch.",
  severity: 'high',
  sources: ['cloudtrail'],
  onlyInActivities: true,
  options: Options,
  // Which tags are guard tags is the policy's: every tag change concerns it.
  concerns: (a) => a.kind === 'tag-change' && a.tagChanges !== undefined,
  evaluate(ctx) {
    const findings = [];
    const { activities } = ctx;
    for (let n = 0; n < activities.length; n++) {
      const a = activities[n] as Activity;
      // AWS's service-linked roles tag what they launched as the owner configured them: not tampering.
      if (a.kind !== 'tag-change' || !a.tagChanges || isServiceLinked(a.actor)) continue;
      const touched = a.tagChanges.filter((t) => ctx.isGuardTag(t.key));
      if (touched.length === 0) continue;
      const what = touched
        .map((t) => (t.op === 'add' ? `added ${t.key}=${t.value ?? ''}` : `removed ${t.key}`))
        .join(', ');
      const f = activityFinding('guard-tampered', 'high', a, `guard tag ${what} ${byWhom(a)}`);
      f.evidence['tags'] = touched;
      findings.push(f);
    }
    return findings;
  },
});
