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
 * The AWS SDK's packages, as pristine loads them: with require(), not import, and each only when
 * first asked for.
 *
 * They are CommonJS files in packages whose package.json has no "type". Imported from an ES module,
 * Node 20 first parses each whole file to guess which of the two it is, then lexes it again for its
 * exports, before it compiles it as CommonJS; the EC2 client alone is 2 MB. Required, each file is
 * compiled once (measured: the ten service packages take 0.75 CPU-s required against 1.3 imported).
 * Loaded when first used, a command loads only the services it calls: `pristine status` none, an
 * audit neither the load balancers' nor Auto Scaling's.
 *
 * Types come from the packages themselves (`import type`): `aws.EC2` is the package's module object,
 * typed as its own. require() keeps each module once, so asking again costs a cache lookup.
 */
const load = createRequire(import.meta.url);

export const aws = {
  get AutoScaling() {
    return load('@aws-sdk/client-auto-scaling') as typeof AutoScalingModule;
  },
  get CloudTrail() {
    return load('@aws-sdk/client-cloudtrail') as typeof CloudTrailModule;
  },
  get EC2() {
    return load('@aws-sdk/client-ec2') as typeof EC2Module;
  },
  get ELB() {
    return load('@aws-sdk/client-elastic-load-balancing') as typeof ELBModule;
  },
  get ELBv2() {
    return load('@aws-sdk/client-elastic-load-balancing-v2') as typeof ELBv2Module;
  },
  get Organizations() {
    return load('@aws-sdk/client-organizations') as typeof OrganizationsModule;
  },
  get S3() {
    return load('@aws-sdk/client-s3') as typeof S3Module;
  },
  get SQS() {
    return load('@aws-sdk/client-sqs') as typeof SQSModule;
  },
  get SSM() {
    return load('@aws-sdk/client-ssm') as typeof SSMModule;
  },
  get STS() {
    return load('@aws-sdk/client-sts') as typeof STSModule;
  },
  get CredentialProviders() {
    return load('@aws-sdk/credential-providers') as typeof CredentialProvidersModule;
  },
  get SmithyRetry() {
    return load('@smithy/core/retry') as typeof SmithyRetryModule;
  },
};
