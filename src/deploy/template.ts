import { stringify } from 'yaml';
import { eventBridgePattern } from '../core/event-catalog.js';
import { PERMISSIONS } from '../permissions.js';

export const TEMPLATE_PARTS = ['all', 'central', 'member'] as const;
export type TemplatePart = (typeof TEMPLATE_PARTS)[number];

const sorted = (xs: readonly string[]) => [...new Set(xs)].sort();

/**
 * The stack in pristine's own account (one region): the event queue with its dead-letter queue, an
 * event bus the organisation's accounts may put events on, and a rule on that bus that sends
 * pristine's events to the queue. Intrinsic functions are written in their long form, so the
 * template is plain YAML.
 */
export function centralTemplate(): Record<string, unknown> {
  return {
    AWSTemplateFormatVersion: '2010-09-09',
    Description: "pristine, central: the event queue (with its dead-letter queue) and the event bus your organisation's accounts forward CloudTrail API calls to.",
    Parameters: {
      OrganizationId: { Type: 'String', AllowedPattern: '^o-[a-z0-9]{10,32}$', Description: 'Your AWS Organizations id: only its accounts may put events on the bus.' },
      QueueName: { Type: 'String', Default: 'pristine-events' },
      TrailBucketName: { Type: 'String', Default: '', Description: 'Optional: the CloudTrail bucket whose ObjectCreated notifications may go to the queue.' },
    },
    Conditions: { HasTrailBucket: { 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'TrailBucketName' }, ''] }] } },
    Resources: {
      DeadLetterQueue: {
        Type: 'AWS::SQS::Queue',
        Properties: { QueueName: { 'Fn::Sub': '${QueueName}-dlq' }, MessageRetentionPeriod: 1_209_600, SqsManagedSseEnabled: true },
      },
      Queue: {
        Type: 'AWS::SQS::Queue',
        Properties: {
          QueueName: { Ref: 'QueueName' },
          // pristine keeps a message invisible while it reads a large trail file, and extends it as it goes.
          VisibilityTimeout: 120,
          MessageRetentionPeriod: 345_600,
          MaximumMessageSize: 262_144,
          ReceiveMessageWaitTimeSeconds: 20,
          SqsManagedSseEnabled: true,
          RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': ['DeadLetterQueue', 'Arn'] }, maxReceiveCount: 5 },
        },
      },
      EventBus: { Type: 'AWS::Events::EventBus', Properties: { Name: 'pristine' } },
      EventBusPolicy: {
        Type: 'AWS::Events::EventBusPolicy',
        Properties: {
          EventBusName: { Ref: 'EventBus' },
          StatementId: 'OrganizationPutEvents',
          Statement: {
            Effect: 'Allow',
            Principal: '*',
            Action: 'events:PutEvents',
            Resource: { 'Fn::GetAtt': ['EventBus', 'Arn'] },
            Condition: { StringEquals: { 'aws:PrincipalOrgID': { Ref: 'OrganizationId' } } },
          },
        },
      },
      ToQueueRule: {
        Type: 'AWS::Events::Rule',
        Properties: {
          Description: "pristine's event catalog, to its queue",
          EventBusName: { Ref: 'EventBus' },
          EventPattern: eventBridgePattern(),
          State: 'ENABLED',
          Targets: [{ Id: 'pristine-queue', Arn: { 'Fn::GetAtt': ['Queue', 'Arn'] } }],
        },
      },
      QueuePolicy: {
        Type: 'AWS::SQS::QueuePolicy',
        Properties: {
          Queues: [{ Ref: 'Queue' }],
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              {
                Sid: 'EventBridgeRule',
                Effect: 'Allow',
                Principal: { Service: 'events.amazonaws.com' },
                Action: 'sqs:SendMessage',
                Resource: { 'Fn::GetAtt': ['Queue', 'Arn'] },
                Condition: { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': ['ToQueueRule', 'Arn'] } } },
              },
              {
                'Fn::If': [
                  'HasTrailBucket',
                  {
                    Sid: 'TrailBucketNotifications',
                    Effect: 'Allow',
                    Principal: { Service: 's3.amazonaws.com' },
                    Action: 'sqs:SendMessage',
                    Resource: { 'Fn::GetAtt': ['Queue', 'Arn'] },
                    Condition: { ArnLike: { 'aws:SourceArn': { 'Fn::Sub': 'arn:${AWS::Partition}:s3:::${TrailBucketName}' } } },
                  },
                  { Ref: 'AWS::NoValue' },
                ],
              },
            ],
          },
        },
      },
    },
    Outputs: {
      QueueUrl: { Description: 'sources.queues in pristine.yaml', Value: { Ref: 'Queue' } },
      EventBusArn: { Description: 'CentralEventBusArn of the member StackSet', Value: { 'Fn::GetAtt': ['EventBus', 'Arn'] } },
      DeadLetterQueueUrl: { Value: { Ref: 'DeadLetterQueue' } },
    },
  };
}

/**
 * The StackSet over the organisation (every member account, every audited region): the role pristine
 * assumes (created once per account, in RoleRegion), and a rule per region that forwards pristine's
 * events to the central bus.
 */
export function memberTemplate(): Record<string, unknown> {
  const replace = PERMISSIONS.replace.filter((a) => a !== 'iam:PassRole');
  return {
    AWSTemplateFormatVersion: '2010-09-09',
    Description: "pristine, member accounts (deploy as a StackSet over the organisation, to every audited region): the role pristine assumes, and the EventBridge rule that forwards in-place changes to pristine's event bus.",
    Parameters: {
      PristineAccountId: { Type: 'String', AllowedPattern: '^\\d{12}$', Description: 'The account pristine runs in.' },
      PristinePrincipalArn: { Type: 'String', Description: "pristine's own role (its task or instance role), the only principal that may assume the member role." },
      ExternalId: { Type: 'String', Default: '', NoEcho: true, Description: 'Optional: the externalId pristine.yaml gives.' },
      RoleName: { Type: 'String', Default: 'PristineAudit', Description: 'organization.role in pristine.yaml.' },
      RoleRegion: { Type: 'String', Default: 'us-east-1', Description: 'IAM is global: the roles are created by the stack in this region only.' },
      Enforce: { Type: 'String', AllowedValues: ['true', 'false'], Default: 'false', Description: 'true: the role may also replace instances (policies in enforce mode).' },
      CentralEventBusArn: { Type: 'String', Description: "The central stack's EventBusArn output." },
    },
    Conditions: {
      InRoleRegion: { 'Fn::Equals': [{ Ref: 'AWS::Region' }, { Ref: 'RoleRegion' }] },
      HasExternalId: { 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'ExternalId' }, ''] }] },
      MayReplace: { 'Fn::Equals': [{ Ref: 'Enforce' }, 'true'] },
    },
    Resources: {
      AuditRole: {
        Type: 'AWS::IAM::Role',
        Condition: 'InRoleRegion',
        Properties: {
          RoleName: { Ref: 'RoleName' },
          MaxSessionDuration: 43_200,
          AssumeRolePolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              {
                Effect: 'Allow',
                Principal: { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${PristineAccountId}:root' } },
                Action: 'sts:AssumeRole',
                Condition: {
                  ArnEquals: { 'aws:PrincipalArn': { Ref: 'PristinePrincipalArn' } },
                  StringEquals: { 'Fn::If': ['HasExternalId', { 'sts:ExternalId': { Ref: 'ExternalId' } }, { Ref: 'AWS::NoValue' }] },
                },
              },
            ],
          },
          Policies: [
            {
              PolicyName: 'pristine-audit',
              PolicyDocument: { Version: '2012-10-17', Statement: [{ Sid: 'PristineAudit', Effect: 'Allow', Action: sorted(PERMISSIONS.audit), Resource: '*' }] },
            },
            {
              'Fn::If': [
                'MayReplace',
                {
                  PolicyName: 'pristine-replace',
                  PolicyDocument: {
                    Version: '2012-10-17',
                    Statement: [
                      { Sid: 'PristineReplace', Effect: 'Allow', Action: sorted(replace), Resource: '*' },
                      { Sid: 'PristinePassInstanceRoles', Effect: 'Allow', Action: 'iam:PassRole', Resource: '*', Condition: { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } } },
                    ],
                  },
                },
                { Ref: 'AWS::NoValue' },
              ],
            },
          ],
        },
      },
      ForwarderRole: {
        Type: 'AWS::IAM::Role',
        Condition: 'InRoleRegion',
        Properties: {
          RoleName: 'pristine-events-forwarder',
          AssumeRolePolicyDocument: {
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Principal: { Service: 'events.amazonaws.com' }, Action: 'sts:AssumeRole' }],
          },
          Policies: [
            {
              PolicyName: 'put-events-on-pristine-bus',
              PolicyDocument: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'events:PutEvents', Resource: { Ref: 'CentralEventBusArn' } }] },
            },
          ],
        },
      },
      ForwardRule: {
        Type: 'AWS::Events::Rule',
        Properties: {
          Description: "pristine's event catalog (in-place changes to instances), to pristine's event bus",
          EventPattern: eventBridgePattern(),
          State: 'ENABLED',
          Targets: [
            {
              Id: 'pristine-bus',
              Arn: { Ref: 'CentralEventBusArn' },
              RoleArn: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:role/pristine-events-forwarder' },
            },
          ],
        },
      },
    },
  };
}

const HEADER: Record<Exclude<TemplatePart, 'all'>, string> = {
  central: '# pristine: the central stack, in the account pristine runs in (one region).\n',
  member: '# pristine: the member StackSet, over the organisation, to every audited region (RoleRegion first).\n',
};

/** CloudFormation (YAML) for the part asked for; `all` prints both, as two YAML documents. */
export function deployTemplate(part: TemplatePart): string {
  // YAML 1.1 parsers read an unquoted 2010-09-09 as a date: CloudFormation wants the string.
  const render = (p: Exclude<TemplatePart, 'all'>) =>
    HEADER[p] + stringify(p === 'central' ? centralTemplate() : memberTemplate(), { lineWidth: 0 }).replace(/^AWSTemplateFormatVersion: (.*)$/m, 'AWSTemplateFormatVersion: "$1"');
  if (part === 'all') return `${render('central')}---\n${render('member')}`;
  return render(part);
}
