// pristine.yaml: validated like the policies, every error naming the file and the field; the IAM
// policies it implies; the CloudFormation that sets it up.
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { resolvePolicyRegions, scopesOf } from '../../src/audit.js';
import { parseConfigText } from '../../src/config/load.js';
import { TRACKED_EVENTS } from '../../src/core/event-catalog.js';
import { centralTemplate, deployTemplate, memberTemplate } from '../../src/deploy/template.js';
import { InputError } from '../../src/errors.js';
import { iamPoliciesFor, iamPolicyFor, isMultiAccount, PERMISSIONS, queueArn } from '../../src/permissions.js';
import { policies } from '../support/facts.js';

const FULL = `
accounts:
  - id: "111122223333"
    name: prod
    role: arn:aws:iam::111122223333:role/PristineAudit
    externalId: "s3cr3t-ext"
organization:
  role: PristineAudit
  include: { ous: ["ou-ab12-cd34ef56"] }
  exclude: { accounts: ["999988887777"] }
regions: [eu-west-1, us-east-1]
sources:
  queues: ["https://sqs.eu-west-1.amazonaws.com/123456789012/pristine-events"]
  lookupEvents: { settle: 15m, reconcile: { every: 1h, window: 24h } }
  s3: { requireDigests: true, bucket: org-trail-logs }
`;

describe('pristine.yaml', () => {
  it('reads the documented example, durations in milliseconds', () => {
    const c = parseConfigText(FULL, 'pristine.yaml');
    expect(c.accounts?.[0]).toEqual({ id: '111122223333', name: 'prod', role: 'arn:aws:iam::111122223333:role/PristineAudit', externalId: 's3cr3t-ext' });
    expect(c.organization).toEqual({ role: 'PristineAudit', include: { ous: ['ou-ab12-cd34ef56'] }, exclude: { accounts: ['999988887777'] } });
    expect(c.sources.lookupEvents).toEqual({ enabled: true, settle: 900_000, reconcile: { every: 3_600_000, window: 86_400_000 } });
    expect(c.concurrency).toBe(8);
  });

  it('is all defaults when empty', () => {
    expect(parseConfigText('', 'p.yaml')).toMatchObject({ concurrency: 8, sources: { queues: [] } });
  });

  it('names the file and the field of every problem, and refuses unknown keys', () => {
    const cases: Array<[string, RegExp]> = [
      ['accounts:\n  - id: "1234"\n', /^p\.yaml: accounts\[0\]\.id: expected a 12-digit AWS account id$/m],
      ['accounts:\n  - id: "111122223333"\n    role: PristineAudit\n', /^p\.yaml: accounts\[0\]\.role: expected an IAM role ARN/m],
      ['sources:\n  lookupEvents: { settle: soon }\n', /^p\.yaml: sources\.lookupEvents\.settle: invalid duration "soon"/m],
      ['sources:\n  queues: ["not a url"]\n', /^p\.yaml: sources\.queues\[0\]: expected an SQS queue URL/m],
      ['regions: [mars-1]\n', /^p\.yaml: regions\[0\]: expected an AWS region/m],
      ['acounts: []\n', /^p\.yaml: Unrecognized key: "acounts"/m],
      ['accounts:\n  - id: "111122223333"\n  - id: "111122223333"\n', /^p\.yaml: accounts\[1\]\.id: account 111122223333 is listed twice/m],
      ['accounts: [unclosed\n', /^p\.yaml(:\d+:\d+)?: invalid YAML/m],
    ];
    for (const [text, message] of cases) {
      let error: unknown;
      try {
        parseConfigText(text, 'p.yaml');
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(InputError);
      expect((error as Error).message).toMatch(message);
    }
  });
});

describe('regions and accounts in scope', () => {
  const yaml = `
policies:
  - name: pinned
    scope: { regions: [ap-south-1], tags: { role: db } }
    detect: { interactive-session: {} }
  - name: prod-only
    scope: { accounts: ["1111*"], tags: { role: web } }
    detect: { interactive-session: {} }
  - name: everywhere
    detect: { interactive-session: {} }
`;

  it('a policy without scope.regions covers the config file\'s regions, else the SDK\'s region only', async () => {
    const fromConfig = await resolvePolicyRegions(policies(yaml), ['eu-west-1', 'us-east-1'], async () => 'sa-east-1');
    expect(fromConfig.map((p) => p.scope.regions)).toEqual([['ap-south-1'], ['eu-west-1', 'us-east-1'], ['eu-west-1', 'us-east-1']]);
    const fromSdk = await resolvePolicyRegions(policies(yaml), undefined, async () => 'sa-east-1');
    expect(fromSdk.map((p) => p.scope.regions)).toEqual([['ap-south-1'], ['sa-east-1'], ['sa-east-1']]);
    await expect(resolvePolicyRegions(policies(yaml), undefined, async () => null)).rejects.toThrow(/no AWS region/);
  });

  it('audits each account and region some policy covers, and no other', async () => {
    const resolved = await resolvePolicyRegions(policies(yaml.replace('  - name: everywhere\n    detect: { interactive-session: {} }\n', '')), ['eu-west-1'], async () => null);
    const regions = [...new Set(resolved.flatMap((p) => p.scope.regions ?? []))].sort();
    expect(scopesOf({ policies: resolved, regions }, ['111122223333', '444455556666'])).toEqual([
      { accountId: '111122223333', region: 'ap-south-1' },
      { accountId: '111122223333', region: 'eu-west-1' },
      { accountId: '444455556666', region: 'ap-south-1' },
    ]);
  });
});

describe('pristine policy iam --config', () => {
  const enforce = policies('policies:\n  - name: a\n    detect: { interactive-session: {} }\n    respond: { mode: enforce }\n');
  const config = parseConfigText(FULL, 'pristine.yaml');

  it("prints pristine's own policy and the member role's", () => {
    expect(isMultiAccount(config)).toBe(true);
    const { pristine, memberRole } = iamPoliciesFor(enforce, config);
    const statement = (sid: string) => pristine.Statement.find((s) => s['Sid'] === sid);
    expect(statement('PristineAssumeMemberRoles')).toMatchObject({ Action: ['sts:AssumeRole'], Resource: ['arn:aws:iam::*:role/PristineAudit', 'arn:aws:iam::111122223333:role/PristineAudit'] });
    expect(statement('PristineListAccounts')?.['Action']).toEqual(['organizations:ListAccounts', 'organizations:ListAccountsForParent', 'organizations:ListOrganizationalUnitsForParent']);
    expect(statement('PristineEventQueues')).toMatchObject({ Action: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:ReceiveMessage'], Resource: ['arn:aws:sqs:eu-west-1:123456789012:pristine-events'] });
    expect(statement('PristineTrailFiles')).toMatchObject({ Action: ['s3:GetObject'], Resource: ['arn:aws:s3:::org-trail-logs/*'] });
    expect(statement('PristineTrailDigests')).toMatchObject({ Action: ['s3:ListBucket'], Resource: ['arn:aws:s3:::org-trail-logs'] });
    const member = memberRole.Statement.flatMap((s) => s['Action'] as string[]);
    expect(new Set(member)).toEqual(new Set([...PERMISSIONS.audit, ...PERMISSIONS.replace]));
    expect(member.some((a) => a.startsWith('sqs:') || a.startsWith('organizations:') || a.startsWith('s3:'))).toBe(false);
  });

  it('keeps one policy for a single account, with the queue when one is configured', () => {
    const single = parseConfigText('sources:\n  queues: ["https://sqs.us-east-1.amazonaws.com/123456789012/q"]\n', 'p.yaml');
    expect(isMultiAccount(single)).toBe(false);
    const doc = iamPolicyFor(enforce, { config: single });
    expect(doc.Statement.map((s) => s['Sid'])).toEqual(['PristineAudit', 'PristineReplace', 'PristinePassInstanceRoles', 'PristineEventQueues', 'PristineTrailFiles']);
    expect(queueArn('http://127.0.0.1:5000/123456789012/q')).toBe('*');
  });
});

describe('pristine deploy template', () => {
  const names = [...new Set(TRACKED_EVENTS.map((e) => e.eventName))].sort();
  const sources = [...new Set(TRACKED_EVENTS.map((e) => e.eventSource))].sort();

  it('prints two CloudFormation documents that parse as YAML', () => {
    const docs = deployTemplate('all').split(/^---$/m).map((d) => parseYaml(d) as Record<string, unknown>);
    expect(docs).toHaveLength(2);
    expect(docs[0]).toEqual(centralTemplate());
    expect(docs[1]).toEqual(memberTemplate());
    for (const d of docs) expect(d['AWSTemplateFormatVersion']).toBe('2010-09-09');
    expect(deployTemplate('central')).toMatch(/^AWSTemplateFormatVersion: "2010-09-09"$/m);
  });

  it("matches exactly pristine's event catalog, in the member rules and the central rule", () => {
    const member = parseYaml(deployTemplate('member')) as { Resources: Record<string, { Properties: Record<string, unknown> }> };
    const central = parseYaml(deployTemplate('central')) as typeof member;
    for (const pattern of [member.Resources['ForwardRule']?.Properties['EventPattern'], central.Resources['ToQueueRule']?.Properties['EventPattern']]) {
      expect(pattern).toEqual({ 'detail-type': ['AWS API Call via CloudTrail'], detail: { eventSource: sources, eventName: names } });
    }
  });

  it('sets up the queue with a dead-letter queue, and the member role with the audit actions (replace on demand)', () => {
    const central = centralTemplate() as { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
    expect(central.Resources['Queue']?.Properties['RedrivePolicy']).toMatchObject({ maxReceiveCount: 5 });
    expect(central.Resources['DeadLetterQueue']?.Type).toBe('AWS::SQS::Queue');
    const member = JSON.stringify(memberTemplate());
    for (const action of [...PERMISSIONS.audit, ...PERMISSIONS.replace]) expect(member).toContain(`"${action}"`);
    expect(member).toContain('"sts:ExternalId"');
  });
});
