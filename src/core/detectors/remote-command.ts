import type { Activity } from '../facts.js';
import { z } from 'zod';
import { Glob } from '../schema-types.js';
import { anyGlob, cachedAnyGlob, memoized } from '../glob.js';
import { byWhom, sharedActivityFinding } from './activity-finding.js';
import { defineDetector } from './types.js';

/** SSM's own inventory gathering reads the instance; it never changes it. */
export const ALWAYS_IGNORED_DOCUMENTS = ['AWS-GatherSoftwareInventory'];
const always = memoized(anyGlob(ALWAYS_IGNORED_DOCUMENTS));

const Options = z.strictObject({
  /** more documents that do not taint (globs over the document name) */
  ignoreDocuments: z.array(Glob).default([]),
});

function describe(eventName: string, doc: string, association: unknown): string {
  const name = Array.isArray(association) ? association.join(', ') : typeof association === 'string' ? association : '';
  switch (eventName) {
    case 'StartAutomationExecution':
      return `automation ${doc} started`;
    case 'CreateAssociation':
      return `State Manager association ${name} created to run ${doc}`;
    case 'UpdateAssociation':
      return `State Manager association ${name} updated to run ${doc}`;
    case 'StartAssociationsOnce':
      return `State Manager association ${name} run on demand`;
    case 'CreateAssociationBatch':
      return `State Manager associations ${name} created to run ${doc}`;
    case 'UpdateDocument':
      return `document ${doc} changed (a new version), which State Manager association ${name} runs here`;
    case 'UpdateDocumentDefaultVersion':
      return `document ${doc} given another default version, which State Manager association ${name} runs here`;
    default:
      return `command ${doc} sent`;
  }
}

function summary(a: Activity): string {
  const doc = typeof a.detail['documentName'] === 'string' ? String(a.detail['documentName']) : 'an unnamed document';
  const what = describe(a.eventName, doc, a.detail['associationName'] ?? a.detail['associationId'] ?? a.detail['associationIds']);
  const via = a.detail['resolvedBy'] === 'targets' ? ' (matched by its targets)' : '';
  return `${what}${via} ${byWhom(a)}`;
}

function concerns(a: Activity, options: z.output<typeof Options>): boolean {
  if (a.kind !== 'remote-command') return false;
  const doc = a.detail['documentName'];
  return !(typeof doc === 'string' && (always(doc) || cachedAnyGlob(options.ignoreDocuments)(doc)));
}

export const remoteCommand = defineDetector({
  id: 'remote-command',
  description: 'A command, automation or State Manager association ran on the instance (SSM Run Command, Automation, State Manager).',
  severity: 'high',
  sources: ['cloudtrail', 'ssm-commands'],
  onlyInActivities: true,
  options: Options,
  concerns,
  evaluate(ctx, options) {
    return ctx.activities
      .filter((a) => concerns(a, options))
      // A command by ids or targets reaches many instances: each has the one finding it is.
      .map((a) => sharedActivityFinding('remote-command', 'high', a, summary));
  },
});
