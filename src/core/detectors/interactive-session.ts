import type { Activity } from '../facts.js';
import { z } from 'zod';
import { Glob } from '../schema-types.js';
import { cachedAnyGlob } from '../glob.js';
import { activityFinding, byWhom } from './activity-finding.js';
import { defineDetector } from './types.js';

const Options = z.strictObject({
  /** session documents that do not taint, e.g. a read-only custom document */
  ignoreDocuments: z.array(Glob).default([]),
});

const PORT_FORWARD = /PortForwarding/i;

function describe(eventName: string, documentName: string | undefined): string {
  switch (eventName) {
    case 'StartSession':
      return documentName && PORT_FORWARD.test(documentName) ? 'SSM port-forwarding session' : 'SSM shell session';
    case 'ResumeSession':
      return 'SSM session resumed';
    case 'SendSSHPublicKey':
      return 'SSH key pushed with EC2 Instance Connect';
    case 'SendSerialConsoleSSHPublicKey':
      return 'serial console SSH key pushed';
    case 'StartConnection':
      return 'Fleet Manager remote desktop connection';
    case 'OpenTunnel':
      return 'EC2 Instance Connect Endpoint tunnel opened';
    default:
      return `${eventName} session`;
  }
}

function concerns(a: Activity, options: z.output<typeof Options>): boolean {
  if (a.kind !== 'interactive-session') return false;
  const doc = a.detail['documentName'];
  return !(typeof doc === 'string' && cachedAnyGlob(options.ignoreDocuments)(doc));
}

export const interactiveSession = defineDetector({
  id: 'interactive-session',
  description: 'A person opened a shell, tunnel or remote desktop on the instance (SSM Session Manager, EC2 Instance Connect, Fleet Manager).',
  severity: 'high',
  sources: ['cloudtrail', 'ssm-sessions'],
  onlyInActivities: true,
  options: Options,
  concerns,
  evaluate(ctx, options) {
    return ctx.activities
      .filter((a) => concerns(a, options))
      .map((a) => {
        const doc = typeof a.detail['documentName'] === 'string' ? (a.detail['documentName'] as string) : undefined;
        const what = describe(a.eventName, doc);
        const session = a.sessionId ? ` ${a.sessionId}` : '';
        const user = typeof a.detail['osUser'] === 'string' ? ` for OS user ${String(a.detail['osUser'])}` : '';
        return activityFinding('interactive-session', 'high', a, `${what}${session}${user} ${byWhom(a)}`);
      });
  },
});
