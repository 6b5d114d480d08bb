import { z } from 'zod';

/** `sources.s3` in pristine.yaml: the trail bucket, and whether its digest files prove coverage. */
export const TrailDigestsConfig = z
  .strictObject({
    /**
     * read CloudTrail's hourly digest files: an hour of an account and region is proven when its digest
     * was read and every log file it lists was read with a matching SHA-256
     */
    requireDigests: z.boolean().default(false),
    /** the trail bucket; default: learned from the log files the event queues announce */
    bucket: z.string().min(3).optional(),
    /** the trail's key prefix, before `AWSLogs/` */
    prefix: z.string().default(''),
    /** an organisation trail's id (`o-…`), the segment after `AWSLogs/` */
    organizationId: z.string().regex(/^o-[a-z0-9]{10,32}$/, 'expected an organisation id such as o-a1b2c3d4e5').optional(),
    /** the bucket's region; default: the SDK's region */
    region: z.string().optional(),
  })
  .prefault({});
export type TrailDigestsConfig = z.output<typeof TrailDigestsConfig>;
