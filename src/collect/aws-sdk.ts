import { createRequire } from 'node:module';
import type * as AutoScalingModule from '@aws-sdk/client-auto-scaling';
import type * as CloudTrailModule from '@aws-sdk/client-cloudtrail';
import type * as EC2Module from '@aws-sdk/client-ec2';
import type * as ELBModule from '@aws-sdk/client-elastic-load-balancing';
import type * as ELBv2Module from '@aws-sdk/client-elastic-load-balancing-v2';
import type * as OrganizationsModule from '@aws-sdk/client-organizations';
import type * as S3Module from '@aws-sdk/client-s3';
import type * as SQSModule from '@aws-sdk/client-sqs';
import type * as SSMModule from '@aws-sdk/client-ssm';
import type * as STSModule from '@aws-sdk/client-sts';
import type * as CredentialProvidersModule from '@aws-sdk/credential-providers';
import type * as SmithyRetryModule from '@smithy/core/retry';

/**
 * The AWS SDK's packages, as pristine loads them: with require(), not import.
 *
 * They are CommonJS files in packages whose package.json has no "type". Imported from an ES module,
 * Node 20 first parses each whole file to guess which of the two it is, then lexes it again for its
 * exports, before it compiles it as CommonJS; the EC2 client alone is 2 MB. Required, each file is
 * compiled once. Every `pristine` command starts about 0.5 CPU-s sooner (measured: the ten service
 * packages take 0.75 CPU-s required against 1.3 imported).
 *
 * Types come from the packages themselves (`import type`), so nothing else changes: each export here
 * is the package's module object, typed as its own.
 */
const load = createRequire(import.meta.url);

export const AutoScaling = load('@aws-sdk/client-auto-scaling') as typeof AutoScalingModule;
export const CloudTrail = load('@aws-sdk/client-cloudtrail') as typeof CloudTrailModule;
export const EC2 = load('@aws-sdk/client-ec2') as typeof EC2Module;
export const ELB = load('@aws-sdk/client-elastic-load-balancing') as typeof ELBModule;
export const ELBv2 = load('@aws-sdk/client-elastic-load-balancing-v2') as typeof ELBv2Module;
export const Organizations = load('@aws-sdk/client-organizations') as typeof OrganizationsModule;
export const S3 = load('@aws-sdk/client-s3') as typeof S3Module;
export const SQS = load('@aws-sdk/client-sqs') as typeof SQSModule;
export const SSM = load('@aws-sdk/client-ssm') as typeof SSMModule;
export const STS = load('@aws-sdk/client-sts') as typeof STSModule;
export const CredentialProviders = load('@aws-sdk/credential-providers') as typeof CredentialProvidersModule;
export const SmithyRetry = load('@smithy/core/retry') as typeof SmithyRetryModule;
