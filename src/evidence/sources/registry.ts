import { z } from 'zod';
import { eventQueue } from './event-queue/index.js';
import { lookupEvents } from './lookup-events/index.js';
import { ssmInventory } from './ssm-inventory/index.js';
import { ssmSessions } from './ssm-sessions/index.js';
import { trailDigests } from './trail-digests/index.js';

/**
 * Every evidence source, pull and push. Adding one: its folder, and a line here (its options appear
 * under `sources:` in pristine.yaml, its IAM actions in `pristine policy iam`).
 */
export const PULL_SOURCES = [lookupEvents, trailDigests, ssmSessions, ssmInventory] as const;
export const PUSH_SOURCES = [eventQueue] as const;
export const SOURCES = [...PULL_SOURCES, ...PUSH_SOURCES] as const;

/** `sources:` in pristine.yaml: each source's options under its key, with their defaults. */
export const SourcesConfig = z
  .strictObject({
    lookupEvents: lookupEvents.config,
    s3: trailDigests.config,
    ssmSessions: ssmSessions.config,
    ssmInventory: ssmInventory.config,
    queues: eventQueue.config,
  })
  .prefault({});
export type SourcesConfig = z.output<typeof SourcesConfig>;
