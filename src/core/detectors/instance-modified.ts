import type { Activity } from '../facts.js';
import { z } from 'zod';
import { activityFinding, byWhom } from './activity-finding.js';
import { defineDetector } from './types.js';

const Options = z.strictObject({
  /** event names that do not taint, e.g. [ModifyInstanceAttribute] where only termination protection is toggled */
  ignoreEvents: z.array(z.string().min(1)).default([]),
});

const WHAT: Record<string, string> = {
  ModifyInstanceAttribute: 'instance attribute changed',
  StopInstances: 'instance stopped',
  StartInstances: 'instance started',
  ModifyVolume: 'volume modified',
  AttachNetworkInterface: 'network interface attached',
  ModifyNetworkInterfaceAttribute: 'network interface attribute changed',
  AssociateAddress: 'Elastic IP address associated',
  AttachVolume: 'volume attached',
  DetachVolume: 'volume detached',
  AssociateIamInstanceProfile: 'IAM instance profile associated',
  ReplaceIamInstanceProfileAssociation: 'IAM instance profile replaced',
  DisassociateIamInstanceProfile: 'IAM instance profile removed',
  ModifyInstanceMetadataOptions: 'metadata options changed',
  CreateReplaceRootVolumeTask: 'root volume replaced',
};

const ignoredEvents = new WeakMap<readonly string[], ReadonlySet<string>>();
function concerns(a: Activity, options: z.output<typeof Options>): boolean {
  let ignored = ignoredEvents.get(options.ignoreEvents);
  if (!ignored) {
    ignored = new Set(options.ignoreEvents);
    ignoredEvents.set(options.ignoreEvents, ignored);
  }
  return a.kind === 'instance-modified' && !ignored.has(a.eventName);
}

export const instanceModified = defineDetector({
  id: 'instance-modified',
  description: 'The instance itself was changed: attributes, volumes, IAM role, metadata options, root volume.',
  severity: 'medium',
  sources: ['cloudtrail'],
  onlyInActivities: true,
  options: Options,
  concerns,
  evaluate(ctx, options) {
    return ctx.activities
      .filter((a) => concerns(a, options))
      .map((a) => {
        const what = WHAT[a.eventName] ?? a.eventName;
        const attrs = Array.isArray(a.detail['attributes']) ? ` (${(a.detail['attributes'] as string[]).join(', ')})` : '';
        const volume = typeof a.detail['volumeId'] === 'string' ? ` ${String(a.detail['volumeId'])}` : '';
        const eni = typeof a.detail['networkInterfaceId'] === 'string' && a.eventName !== 'AttachVolume' ? ` ${String(a.detail['networkInterfaceId'])}` : '';
        return activityFinding('instance-modified', 'medium', a, `${what}${attrs}${volume}${eni} ${byWhom(a)}`);
      });
  },
});
