import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { CloudTrailClient } from '@aws-sdk/client-cloudtrail';
import { EC2Client } from '@aws-sdk/client-ec2';
import { ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { SSMClient } from '@aws-sdk/client-ssm';
import { Pacer } from './pacer.js';

/** What every AWS call reports, for logs and metrics. */
export interface AwsCall {
  service: string;
  operation: string;
  region: string;
  outcome: 'ok' | 'error';
  errorName?: string;
}
export type AwsCallListener = (call: AwsCall) => void;

/** LookupEvents allows 2 requests/s per account and region; a little slower leaves room for jitter. */
export const LOOKUP_EVENTS_INTERVAL_MS = 550;

export interface RegionClients {
  region: string;
  ec2: EC2Client;
  cloudtrail: CloudTrailClient;
  ssm: SSMClient;
  elbv2: ElasticLoadBalancingV2Client;
  autoscaling: AutoScalingClient;
}

interface MiddlewareClient {
  middlewareStack: {
    add(
      mw: (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => (args: unknown) => Promise<unknown>,
      options: { step: 'initialize' | 'finalizeRequest'; name: string; priority?: 'high' | 'normal' | 'low' },
    ): void;
  };
}

/**
 * Paces every attempt of one operation, retries included: added after the SDK's retry middleware
 * in the same step, it runs once per attempt rather than once per call.
 */
function pace(client: MiddlewareClient, commandName: string, pacer: Pacer): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === commandName) await pacer.wait();
      return next(args);
    },
    { step: 'finalizeRequest', priority: 'low', name: 'pristinePacer' },
  );
}

function observe(client: MiddlewareClient, service: string, region: string, listener: AwsCallListener | undefined): void {
  if (!listener) return;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
      try {
        const out = await next(args);
        listener({ service, operation, region, outcome: 'ok' });
        return out;
      } catch (err) {
        listener({ service, operation, region, outcome: 'error', errorName: (err as { name?: string }).name });
        throw err;
      }
    },
    { step: 'initialize', name: 'pristineCallObserver' },
  );
}

/**
 * SDK clients for one region. Credentials, profile and endpoints come from the SDK's own chain
 * (AWS_PROFILE, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_EC2, ...); only the region is set here.
 * Throttling is retried with the SDK's standard backoff; CloudTrail gets more attempts because
 * its limit is the tightest and is shared with everything else in the account.
 */
export function createRegionClients(region: string, listener?: AwsCallListener): RegionClients {
  const ec2 = new EC2Client({ region, maxAttempts: 5 });
  const cloudtrail = new CloudTrailClient({ region, maxAttempts: 8 });
  const ssm = new SSMClient({ region, maxAttempts: 6 });
  const elbv2 = new ElasticLoadBalancingV2Client({ region, maxAttempts: 6 });
  const autoscaling = new AutoScalingClient({ region, maxAttempts: 6 });
  observe(ec2 as unknown as MiddlewareClient, 'ec2', region, listener);
  observe(elbv2 as unknown as MiddlewareClient, 'elasticloadbalancing', region, listener);
  observe(autoscaling as unknown as MiddlewareClient, 'autoscaling', region, listener);
  observe(cloudtrail as unknown as MiddlewareClient, 'cloudtrail', region, listener);
  observe(ssm as unknown as MiddlewareClient, 'ssm', region, listener);
  pace(cloudtrail as unknown as MiddlewareClient, 'LookupEventsCommand', new Pacer(LOOKUP_EVENTS_INTERVAL_MS));
  return { region, ec2, cloudtrail, ssm, elbv2, autoscaling };
}

/** The region the SDK's chain names (AWS_REGION, the profile's region), or null. */
export async function defaultRegion(): Promise<string | null> {
  const probe = new EC2Client({});
  try {
    return (await probe.config.region()) || null;
  } catch {
    return null;
  } finally {
    probe.destroy();
  }
}

export function destroyClients(c: RegionClients): void {
  c.ec2.destroy();
  c.cloudtrail.destroy();
  c.ssm.destroy();
  c.elbv2.destroy();
  c.autoscaling.destroy();
}
