import type { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import type { CloudTrailClient } from '@aws-sdk/client-cloudtrail';
import type { EC2Client } from '@aws-sdk/client-ec2';
import type { ElasticLoadBalancingClient } from '@aws-sdk/client-elastic-load-balancing';
import type { ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import type { OrganizationsClient } from '@aws-sdk/client-organizations';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { STSClient } from '@aws-sdk/client-sts';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { scopeKey, type Scope } from '../core/facts.js';
import { Pacer } from './pacer.js';
import { aws } from './aws-sdk.js';

/** What every AWS call reports, for logs and metrics. */
export interface AwsCall {
  service: string;
  operation: string;
  region: string;
  accountId?: string;
  outcome: 'ok' | 'error';
  errorName?: string;
}
export type AwsCallListener = (call: AwsCall) => void;

/** LookupEvents: 2 requests a second per account and region (CloudTrail's fixed limit). */
export const LOOKUP_EVENTS_PER_SECOND = 2;

/** A scope's clients that are made when first used. */
type LaterClients = { elbv2?: ElasticLoadBalancingV2Client; elb?: ElasticLoadBalancingClient; autoscaling?: AutoScalingClient };

/** The clients of one scope (account and region), acting with that account's credentials. */
export interface ScopeClients extends Scope {
  ec2: EC2Client;
  cloudtrail: CloudTrailClient;
  ssm: SSMClient;
  elbv2: ElasticLoadBalancingV2Client;
  /** Classic Load Balancers: read only, to hold an instance pristine cannot swap behind one */
  elb: ElasticLoadBalancingClient;
  autoscaling: AutoScalingClient;
}

/** How pristine acts in an account: with its own identity (role null), or a role it assumes from it. */
export interface AccountAccess {
  id: string;
  role: string | null;
  externalId: string | null;
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
      if (context.commandName !== commandName) return next(args);
      // Inside the SDK's retries: every attempt takes a place, and keeps it until its answer is in.
      const release = await pacer.acquire();
      try {
        return await next(args);
      } finally {
        release();
      }
    },
    { step: 'finalizeRequest', priority: 'low', name: 'pristinePacer' },
  );
}

function observe(client: MiddlewareClient, service: string, region: string, accountId: string | undefined, listener: AwsCallListener | undefined): void {
  if (!listener) return;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
      try {
        const out = await next(args);
        listener({ service, operation, region, accountId, outcome: 'ok' });
        return out;
      } catch (err) {
        listener({ service, operation, region, accountId, outcome: 'error', errorName: (err as { name?: string }).name });
        throw err;
      }
    },
    { step: 'initialize', name: 'pristineCallObserver' },
  );
}

/** Refresh assumed-role credentials this long before they expire. */
const REFRESH_BEFORE_MS = 5 * 60_000;

/**
 * One credential provider per account, shared by all its clients: the role is assumed once, not once
 * per client, and assumed again shortly before the credentials expire (long organisation scans
 * otherwise fail with expired tokens). A failed assumption is not cached: the next call tries again.
 */
export function cachedCredentials(provider: AwsCredentialIdentityProvider, now: () => number = Date.now): AwsCredentialIdentityProvider {
  let current: Promise<AwsCredentialIdentity> | null = null;
  let expiresAt = 0;
  return () => {
    if (!current || (expiresAt && now() >= expiresAt - REFRESH_BEFORE_MS)) {
      const attempt = provider();
      current = attempt;
      attempt.then(
        (c) => {
          expiresAt = c.expiration ? c.expiration.getTime() : 0;
        },
        () => {
          if (current === attempt) current = null;
        },
      );
    }
    return current;
  };
}

/**
 * AWS clients, made once and kept (a daemon reuses them every cycle). Credentials, profile and endpoints
 * come from the SDK's own chain (AWS_PROFILE, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_EC2, ...); a member
 * account's role is assumed directly from pristine's own identity (never chained, which would cap the
 * session at an hour). Throttling is retried with the SDK's standard backoff; CloudTrail gets more
 * attempts because its limit is the tightest, and LookupEvents is paced per account and region.
 */
export class ClientPool {
  private readonly scopes = new Map<string, ScopeClients>();
  private readonly credentials = new Map<string, AwsCredentialIdentityProvider | undefined>();
  private readonly access = new Map<string, AccountAccess>();
  private readonly own = new Map<string, { destroy(): void }>();
  /** A scope's clients made when first used, by scope key: destroyed with the scope, if made. */
  private readonly later = new Map<string, LaterClients>();

  constructor(
    private readonly listener?: AwsCallListener,
    /** the region STS and Organizations are called in: the SDK's region */
    private readonly homeRegion: string = 'us-east-1',
  ) {}

  /** Declares how to act in each account; scopes of an account not declared use pristine's own identity. */
  setAccounts(accounts: readonly AccountAccess[]): void {
    for (const a of accounts) {
      const before = this.access.get(a.id);
      if (before && before.role === a.role && before.externalId === a.externalId) continue;
      this.access.set(a.id, a);
      this.credentials.delete(a.id);
      for (const [key, c] of this.scopes) if (c.accountId === a.id) this.dropScope(key);
    }
  }

  private credentialsFor(accountId: string): AwsCredentialIdentityProvider | undefined {
    if (!this.credentials.has(accountId)) {
      const a = this.access.get(accountId);
      const provider = a?.role
        ? cachedCredentials(
            aws.CredentialProviders.fromTemporaryCredentials({
              params: { RoleArn: a.role, RoleSessionName: 'pristine', DurationSeconds: 3600, ...(a.externalId ? { ExternalId: a.externalId } : {}) },
              clientConfig: { region: this.homeRegion },
            }),
          )
        : undefined;
      this.credentials.set(accountId, provider);
    }
    return this.credentials.get(accountId);
  }

  readonly get = (scope: Scope): ScopeClients => {
    const key = scopeKey(scope);
    let c = this.scopes.get(key);
    if (!c) {
      const { region, accountId } = scope;
      const credentials = this.credentialsFor(accountId);
      const base = { region, ...(credentials ? { credentials } : {}) };
      const listener = this.listener;
      const observed = <T>(client: T, service: string): T => {
        observe(client as unknown as MiddlewareClient, service, region, accountId, listener);
        return client;
      };
      const later: LaterClients = {};
      this.later.set(key, later);
      c = {
        accountId,
        region,
        ec2: observed(new aws.EC2.EC2Client({ ...base, maxAttempts: 5 }), 'ec2'),
        cloudtrail: observed(new aws.CloudTrail.CloudTrailClient({ ...base, maxAttempts: 8 }), 'cloudtrail'),
        ssm: observed(new aws.SSM.SSMClient({ ...base, maxAttempts: 6 }), 'ssm'),
        // Made when first used (a replacement, its placement): a cycle that replaces nothing loads
        // neither the load balancers' SDK packages nor Auto Scaling's.
        get elbv2() {
          return (later.elbv2 ??= observed(new aws.ELBv2.ElasticLoadBalancingV2Client({ ...base, maxAttempts: 6 }), 'elasticloadbalancing'));
        },
        get elb() {
          return (later.elb ??= observed(new aws.ELB.ElasticLoadBalancingClient({ ...base, maxAttempts: 6 }), 'elasticloadbalancing'));
        },
        get autoscaling() {
          return (later.autoscaling ??= observed(new aws.AutoScaling.AutoScalingClient({ ...base, maxAttempts: 6 }), 'autoscaling'));
        },
      };
      pace(c.cloudtrail as unknown as MiddlewareClient, 'LookupEventsCommand', new Pacer(LOOKUP_EVENTS_PER_SECOND, 1000));
      this.scopes.set(key, c);
    }
    return c;
  };

  private ownClient<T extends { destroy(): void }>(key: string, make: () => T, service: string, region: string): T {
    let c = this.own.get(key) as T | undefined;
    if (!c) {
      c = make();
      observe(c as unknown as MiddlewareClient, service, region, undefined, this.listener);
      this.own.set(key, c);
    }
    return c;
  }

  /** pristine's own identity: STS, to learn its account. */
  sts(): STSClient {
    return this.ownClient('sts', () => new aws.STS.STSClient({ region: this.homeRegion, maxAttempts: 5 }), 'sts', this.homeRegion);
  }

  /** pristine's own identity: Organizations, to list member accounts (its API lives in us-east-1). */
  organizations(): OrganizationsClient {
    return this.ownClient('organizations', () => new aws.Organizations.OrganizationsClient({ region: 'us-east-1', maxAttempts: 6 }), 'organizations', 'us-east-1');
  }

  /** pristine's own identity: SQS, for the event queues. */
  sqs(region: string): SQSClient {
    // The endpoint comes from the SDK's chain (AWS_ENDPOINT_URL_SQS…), not from the queue URL's host.
    return this.ownClient(`sqs:${region}`, () => new aws.SQS.SQSClient({ region, maxAttempts: 6, useQueueUrlAsEndpoint: false }), 'sqs', region);
  }

  /** pristine's own identity: S3, for the trail bucket. */
  s3(region: string): S3Client {
    return this.ownClient(`s3:${region}`, () => new aws.S3.S3Client({ region, maxAttempts: 6, followRegionRedirects: true }), 's3', region);
  }

  private dropScope(key: string): void {
    const c = this.scopes.get(key);
    if (!c) return;
    c.ec2.destroy();
    c.cloudtrail.destroy();
    c.ssm.destroy();
    for (const made of Object.values(this.later.get(key) ?? {})) made.destroy();
    this.scopes.delete(key);
    this.later.delete(key);
  }

  destroy(): void {
    for (const key of [...this.scopes.keys()]) this.dropScope(key);
    for (const c of this.own.values()) c.destroy();
    this.own.clear();
  }
}

/** The region the SDK's chain names (AWS_REGION, the profile's region), or null. */
export async function defaultRegion(): Promise<string | null> {
  // Every client reads the region by the same chain; STS's package is the smallest to load.
  const probe = new aws.STS.STSClient({});
  try {
    return (await probe.config.region()) || null;
  } catch {
    return null;
  } finally {
    probe.destroy();
  }
}

/** The region in an SQS queue URL (`https://sqs.eu-west-1.amazonaws.com/…`), or null for another form. */
export function queueRegion(url: string): string | null {
  return /^https:\/\/sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?\//.exec(url)?.[1] ?? null;
}
