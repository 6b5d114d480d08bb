import { z } from 'zod';
import { defineDetector } from './types.js';

const Options = z.strictObject({});

/** Always on: without a record of the image there is nothing to call the instance pristine against. */
export const unrecordedImage = defineDetector({
  id: 'unrecorded-image',
  description: 'The instance runs an image with no manifest: pristine cannot vouch for it (verdict unknown).',
  severity: 'medium',
  sources: ['manifest'],
  options: Options,
  concerns: () => false,
  evaluate(ctx) {
    if (ctx.manifest) return [];
    return [
      {
        detector: 'unrecorded-image',
        key: 'unrecorded-image:no-manifest',
        severity: 'medium',
        effect: 'unknown',
        summary: `image ${ctx.instance.imageId} has no manifest in ${ctx.instance.region}: record it with \`pristine manifest record\``,
        at: null,
        actor: null,
        evidence: { imageId: ctx.instance.imageId, region: ctx.instance.region },
      },
    ];
  },
});
