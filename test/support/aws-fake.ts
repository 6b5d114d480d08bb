// A local HTTP server that speaks just enough AWS JSON 1.1 to stand in for the CloudTrail and SSM
// operations moto lacks (LookupEvents, DescribeSessions, GetInventory, ListInventoryEntries,
// ListCommandInvocations, DescribeAssociation) and EC2's DescribeInstanceConnectEndpoints. Everything
// else is forwarded verbatim to an upstream moto_server, so a single endpoint serves every AWS client
// in a test. Every request is recorded in `calls`, and errors can be injected per operation, so tests
// can assert what pristine called and how it copes.
//
// Many accounts: a request belongs to the account of its access key, as moto sees it (moto's STS
// AssumeRole into another account's role returns keys that act there); what the fake serves is
// filtered by that account, as AWS would.
//
// Point the real SDK clients at it: `new SSMClient({ endpoint: await fake.start(), region, ... })`.
import { createHash, randomUUID } from 'node:crypto';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

// ---------------------------------------------------------------------------------------------
// Public types

export type CloudTrailRecord = Record<string, unknown>;

export interface FakeSession {
  SessionId: string;
  Target: string;
  Status: string;
  /** Epoch seconds. */
  StartDate: number;
  /** Epoch seconds. */
  EndDate?: number;
  DocumentName?: string;
  Owner?: string;
  Reason?: string;
  /** Which DescribeSessions `State` lists it. */
  state: 'Active' | 'History';
  /** If set, only requests signed for this region see it; otherwise every region does. */
  region?: string;
  /** If set, only requests of this account see it; otherwise the default account does. */
  account?: string;
}

/** A State Manager association (moto has no SSM here: the fake answers for it). */
export interface FakeAssociation {
  /** the document it runs */
  name: string;
  /** `$DEFAULT`, `$LATEST` or a number; absent: it names none (the default runs) */
  documentVersion?: string;
  targets: Array<{ Key: string; Values: string[] }>;
  /** If set, only requests signed for this region see it; otherwise every region does. */
  region?: string;
  /** If set, only requests of this account see it; otherwise the default account does. */
  account?: string;
}

export interface FakeInventory {
  /** ISO-8601, e.g. `2026-11-21T06:00:00Z`. */
  captureTime: string;
  /** AWS:Application entries, returned exactly as given (key case included). */
  content: Array<Record<string, string>>;
  /** If set, only requests signed for this region see it; otherwise every region does. */
  region?: string;
  /** If set, only requests of this account see it; otherwise the default account does. */
  account?: string;
}

/** An EC2 Instance Connect Endpoint (moto has none). */
export interface FakeEndpoint {
  id: string;
  vpcId: string;
  subnetId?: string;
  region?: string;
  account?: string;
}

export interface FakeCall {
  service: string;
  operation: string;
  /** the account of the request's access key; null without an upstream to ask (then every account's data is seen) */
  account: string | null;
  /** From the SigV4 credential scope; null when the request is unsigned. */
  region: string | null;
  /** Date.now() when the request arrived. */
  at: number;
  /** Who answered: this fake, the upstream (moto), or nobody (unknown operation, no upstream). */
  handledBy: 'fake' | 'upstream' | 'none';
  /** 'pending' until the response status is known. */
  outcome: 'pending' | 'ok' | 'error';
  status?: number;
  /** AWS error code of an error response, when one could be read. */
  errorCode?: string;
  /** the request body as sent (form-encoded for Query services, JSON for the others), up to 64 KiB */
  body: string;
}

export interface FailureSpec {
  /** HTTP status; default 400. */
  status?: number;
  /** AWS error code, e.g. `InternalServerError`, `AccessDeniedException`. */
  code: string;
  message?: string;
  /** How many requests to fail before behaving normally again; default: every request; 0 removes the rule. */
  times?: number;
  /** Only requests whose body contains this text fail (e.g. one role's ARN in AssumeRole). */
  bodyContains?: string;
}

export interface AwsFakeOptions {
  /** moto_server URL; every request the fake doesn't handle is proxied there verbatim. */
  upstream?: string;
  /** LookupEvents admitted per sliding second, per region (AWS's limit is 2). Default 2. */
  lookupEventsPerSecond?: number;
}

// ---------------------------------------------------------------------------------------------
// Internals

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

type Protocol = 'json' | 'query' | 'rest';

interface ClassifiedRequest {
  service: string;
  operation: string;
  region: string | null;
  protocol: Protocol;
}

/** An AWS error response (JSON `__type` or Query `<Code>`). */
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const validation = (message: string): ApiError => new ApiError(400, 'ValidationException', message);

/** `X-Amz-Target` prefixes of the JSON services we recognise, mapped to SigV4 service names. */
const TARGET_PREFIXES: Record<string, string> = {
  CloudTrail_20131101: 'cloudtrail',
  AmazonSSM: 'ssm',
};

const LOOKUP_ATTRIBUTE_KEYS = new Set([
  'EventId',
  'EventName',
  'ReadOnly',
  'Username',
  'ResourceType',
  'ResourceName',
  'EventSource',
  'AccessKeyId',
]);

const SESSION_FILTER_KEYS = new Set(['InvokedAfter', 'InvokedBefore', 'Target', 'Owner', 'Status', 'SessionId']);

const INSTANCE_ID = /^(?:i|mi)-[0-9a-f]{8,17}$/;

interface LookupEvent {
  EventId: string;
  EventName: string;
  ReadOnly: 'true' | 'false';
  AccessKeyId: string;
  EventTime: number;
  EventSource: string;
  Username: string;
  Resources: Array<{ ResourceType: string; ResourceName: string }>;
  CloudTrailEvent: string;
}

type Handler = (input: JsonObject, region: string | null, account: string | null, arrivedAt: number) => unknown;

/** moto's account for its default credentials. */
export const DEFAULT_ACCOUNT = '123456789012';

export class AwsFake {
  readonly cloudtrail: { records: CloudTrailRecord[] } = { records: [] };
  readonly ssm: {
    sessions: FakeSession[];
    inventory: Map<string, FakeInventory>;
    /** command id -> the instances it was invoked on: an id alone has finished (Success), else its status */
    commandInvocations: Map<string, Array<string | { instanceId: string; status: string }>>;
    /** association id -> the association (DescribeAssociation, ListAssociations) */
    associations: Map<string, FakeAssociation>;
  } = { sessions: [], inventory: new Map(), commandInvocations: new Map(), associations: new Map() };
  readonly ec2: {
    endpoints: FakeEndpoint[];
    /**
     * instance id -> the LaunchTime EC2 reports after a stop/start (AWS moves it; moto does not):
     * DescribeInstances answers from moto are rewritten with it.
     */
    launchTimes: Map<string, Date>;
    /** instance id -> its CPU credit option (moto reports every instance `standard`): answered by the fake */
    creditSpecs: Map<string, 'standard' | 'unlimited'>;
  } = { endpoints: [], launchTimes: new Map(), creditSpecs: new Map() };
  /** Every request received, handled or proxied, in arrival order. */
  readonly calls: FakeCall[] = [];
  /** LookupEvents requests rejected with ThrottlingException. */
  throttled = 0;
  /** May be changed between tests; Infinity disables throttling. */
  lookupEventsPerSecond: number;

  private readonly upstream: URL | undefined;
  private readonly upstreamAgent = new Agent({ keepAlive: true });
  private readonly failures = new Map<string, Required<Omit<FailureSpec, 'bodyContains'>> & { bodyContains?: string }>();
  /** access key id -> account, as moto answers GetCallerIdentity for it */
  private readonly accounts = new Map<string, Promise<string | null>>();
  private readonly delays = new Map<string, { before: number; after: number }>();
  /** Admission times of LookupEvents requests, per region, for the sliding-window limit. */
  private readonly lookupWindow = new Map<string, number[]>();
  private server: Server | undefined;
  private baseUrl: string | undefined;

  private readonly handlers: Record<string, Handler> = {
    'cloudtrail.LookupEvents': (input, region, account, arrivedAt) => this.lookupEvents(input, region, account, arrivedAt),
    'ssm.DescribeSessions': (input, region, account) => this.describeSessions(input, region, account),
    'ssm.GetInventory': (input, region, account) => this.getInventory(input, region, account),
    'ssm.ListInventoryEntries': (input, region, account) => this.listInventoryEntries(input, region, account),
    'ssm.ListCommandInvocations': (input) => this.listCommandInvocations(input),
    'ssm.DescribeAssociation': (input) => this.describeAssociation(input),
    'ssm.ListAssociations': (input, region, account) => this.listAssociations(input, region, account),
  };

  constructor(opts: AwsFakeOptions = {}) {
    this.upstream = opts.upstream ? new URL(opts.upstream) : undefined;
    this.lookupEventsPerSecond = opts.lookupEventsPerSecond ?? 2;
  }

  /** Listens on 127.0.0.1 at a random port; resolves to the base URL. */
  async start(): Promise<string> {
    if (this.baseUrl) return this.baseUrl;
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        // A bug in the fake must show up as a loud 500, not a hung client.
        const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
        if (!res.headersSent) sendJson(res, 500, { __type: 'InternalFailure', message }, 'InternalFailure');
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this.baseUrl;
  }

  /** Base URL once started. */
  get url(): string {
    if (!this.baseUrl) throw new Error('AwsFake not started');
    return this.baseUrl;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.baseUrl = undefined;
    this.upstreamAgent.destroy();
    if (!server) return;
    // SDK clients keep connections alive; close() alone would wait for them to idle out.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  /** Makes requests for `operation` (e.g. 'GetInventory', 'DescribeInstances') fail. Replaces any earlier rule for it. */
  fail(operation: string, opts: FailureSpec): void {
    if (opts.times !== undefined && opts.times <= 0) {
      this.failures.delete(operation);
      return;
    }
    this.failures.set(operation, {
      status: opts.status ?? 400,
      code: opts.code,
      message: opts.message ?? `Injected ${opts.code} for ${operation}`,
      times: opts.times ?? Number.POSITIVE_INFINITY,
      bodyContains: opts.bodyContains,
    });
  }

  /**
   * Holds every request of an operation: `before` ms before handling or forwarding it, `after` ms
   * after moto answered and before the answer is passed on. A test can then kill the caller while
   * the call has not happened yet, or has happened but the caller does not know.
   */
  delay(operation: string, ms: { before?: number; after?: number }): void {
    this.delays.set(operation, { before: ms.before ?? 0, after: ms.after ?? 0 });
  }

  clearDelays(): void {
    this.delays.clear();
  }

  clearFailures(): void {
    this.failures.clear();
  }

  /** Empties seeded state, recorded calls, failures and the throttle window. */
  reset(): void {
    this.cloudtrail.records.length = 0;
    this.ssm.sessions.length = 0;
    this.ssm.inventory.clear();
    this.ssm.commandInvocations.clear();
    this.ssm.associations.clear();
    this.ec2.endpoints.length = 0;
    this.ec2.launchTimes.clear();
    this.ec2.creditSpecs.clear();
    this.calls.length = 0;
    this.failures.clear();
    this.lookupWindow.clear();
    this.throttled = 0;
  }

  /** Recorded calls of one operation, optionally of one service. */
  callsTo(operation: string, service?: string): FakeCall[] {
    return this.calls.filter((c) => c.operation === operation && (service === undefined || c.service === service));
  }

  // -------------------------------------------------------------------------------------------
  // Dispatch

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const arrivedAt = Date.now();
    const body = await readBody(req);
    const request = classify(req, body);
    const account = await this.accountOf(req);
    const call: FakeCall = {
      service: request.service,
      operation: request.operation,
      account,
      body: body.subarray(0, 65_536).toString('utf8'),
      region: request.region,
      at: arrivedAt,
      handledBy: 'fake',
      outcome: 'pending',
    };
    this.calls.push(call);

    const delay = this.delays.get(request.operation);
    if (delay?.before) await new Promise((r) => setTimeout(r, delay.before));

    const failure = this.takeFailure(request.operation, body);
    if (failure) {
      sendError(res, request, failure, call);
      return;
    }

    const creditOf = request.operation === 'DescribeInstanceCreditSpecifications' ? this.ec2.creditSpecs.get(new URLSearchParams(body.toString('utf8')).get('InstanceId.1') ?? '') : undefined;
    if (request.service === 'ec2' && creditOf) {
      const id = new URLSearchParams(body.toString('utf8')).get('InstanceId.1') ?? '';
      finish(call, 200);
      sendXml(
        res,
        `<DescribeInstanceCreditSpecificationsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>${randomUUID()}</requestId><instanceCreditSpecificationSet><item><instanceId>${escapeXml(id)}</instanceId><cpuCredits>${creditOf}</cpuCredits></item></instanceCreditSpecificationSet></DescribeInstanceCreditSpecificationsResponse>`,
      );
      return;
    }

    if (request.service === 'ec2' && request.operation === 'DescribeInstanceConnectEndpoints') {
      finish(call, 200);
      sendXml(res, this.describeInstanceConnectEndpoints(request.region, account));
      return;
    }

    const handler = request.protocol === 'json' ? this.handlers[`${request.service}.${request.operation}`] : undefined;
    if (handler) {
      try {
        const output = handler(parseJsonInput(body), request.region, account, arrivedAt);
        finish(call, 200);
        sendJson(res, 200, output);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        sendError(res, request, err, call);
      }
      return;
    }

    if (this.upstream) {
      call.handledBy = 'upstream';
      this.proxy(req, res, body, request, call, this.upstream);
      return;
    }

    call.handledBy = 'none';
    const unknown = `${request.service}.${request.operation} is not faked and there is no upstream`;
    sendError(res, request, new ApiError(400, 'UnknownOperationException', unknown), call);
  }

  private takeFailure(operation: string, body: Buffer): ApiError | undefined {
    const rule = this.failures.get(operation);
    if (!rule) return undefined;
    if (rule.bodyContains !== undefined && !body.toString('utf8').includes(rule.bodyContains) && !decodeURIComponent(body.toString('utf8')).includes(rule.bodyContains)) {
      return undefined;
    }
    rule.times -= 1;
    if (rule.times <= 0) this.failures.delete(operation);
    return new ApiError(rule.status, rule.code, rule.message);
  }

  /** Forwards the request unchanged (Host and signature included: moto doesn't check them). */
  private proxy(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    request: ClassifiedRequest,
    call: FakeCall,
    upstream: URL,
  ): void {
    const upstreamReq = httpRequest(
      {
        protocol: upstream.protocol,
        hostname: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent: this.upstreamAgent,
      },
      (upstreamRes) => {
        const status = upstreamRes.statusCode ?? 502;
        finish(call, status);
        if (status >= 400) {
          // Peek at the error body so tests can see moto's error code; the response still streams.
          const chunks: Buffer[] = [];
          let size = 0;
          upstreamRes.on('data', (chunk: Buffer) => {
            if (size < 65_536) chunks.push(chunk);
            size += chunk.length;
          });
          upstreamRes.on('end', () => {
            call.errorCode ??= errorCodeFromBody(Buffer.concat(chunks).toString('utf8'));
          });
          const headerCode = upstreamRes.headers['x-amzn-errortype'];
          if (typeof headerCode === 'string') call.errorCode = headerCode.split(':')[0];
        }
        if (request.operation === 'DescribeInstances' && this.ec2.launchTimes.size > 0 && status < 300) {
          // Buffer and rewrite: each instance restarted in the test reports its later LaunchTime.
          const chunks: Buffer[] = [];
          upstreamRes.on('data', (chunk: Buffer) => chunks.push(chunk));
          upstreamRes.on('end', () => {
            const text = rewriteLaunchTimes(Buffer.concat(chunks).toString('utf8'), this.ec2.launchTimes);
            const headers = { ...upstreamRes.headers, 'content-length': String(Buffer.byteLength(text)) };
            delete headers['transfer-encoding'];
            res.writeHead(status, headers);
            res.end(text);
          });
          return;
        }
        const pass = () => {
          res.writeHead(status, upstreamRes.headers);
          upstreamRes.pipe(res);
        };
        const after = this.delays.get(request.operation)?.after ?? 0;
        if (after > 0) {
          upstreamRes.pause();
          setTimeout(pass, after);
        } else pass();
      },
    );
    upstreamReq.on('error', (err) => {
      if (res.headersSent) {
        res.destroy(err);
        return;
      }
      const reason = `proxy to ${upstream.origin} failed: ${err.message}`;
      sendError(res, request, new ApiError(502, 'UpstreamUnavailable', reason), call);
    });
    upstreamReq.end(body);
  }

  // -------------------------------------------------------------------------------------------
  // CloudTrail

  private lookupEvents(input: JsonObject, region: string | null, account: string | null, arrivedAt: number): unknown {
    this.admitLookupEvents(`${account}/${region ?? ''}`, arrivedAt);

    const attributes = optArray(input, 'LookupAttributes') ?? [];
    if (attributes.length > 1) {
      throw new ApiError(400, 'InvalidLookupAttributesException', 'You cannot specify more than one lookup attribute.');
    }
    let attribute: { key: string; value: string } | undefined;
    if (attributes[0] !== undefined) {
      const raw = asObject(attributes[0], 'LookupAttributes[0]');
      const key = optString(raw, 'AttributeKey');
      const value = optString(raw, 'AttributeValue');
      if (key === undefined || !LOOKUP_ATTRIBUTE_KEYS.has(key) || value === undefined) {
        throw new ApiError(400, 'InvalidLookupAttributesException', `Unsupported lookup attribute ${JSON.stringify(raw)}`);
      }
      attribute = { key, value };
    }

    const start = optTime(input, 'StartTime');
    const end = optTime(input, 'EndTime');
    if (start !== undefined && end !== undefined && start > end) {
      throw new ApiError(400, 'InvalidTimeRangeException', 'StartTime must be before EndTime.');
    }
    const maxResults = optInt(input, 'MaxResults') ?? 50;
    if (maxResults < 1 || maxResults > 50) {
      throw new ApiError(400, 'InvalidMaxResultsException', 'MaxResults must be between 1 and 50.');
    }

    const events = this.cloudtrail.records
      .filter((record) => (region === null || record.awsRegion === region) && ofAccount(recordAccount(record), account))
      .map(toLookupEvent)
      .filter((event) => {
        const ms = event.EventTime * 1000;
        if (start !== undefined && ms < start) return false;
        if (end !== undefined && ms > end) return false;
        return attribute === undefined || matchesLookupAttribute(event, attribute.key, attribute.value);
      })
      // Newest first, like CloudTrail; EventId breaks ties so paging is deterministic.
      .sort((a, b) => b.EventTime - a.EventTime || a.EventId.localeCompare(b.EventId));

    const queryKey = JSON.stringify(['LookupEvents', account, region, attribute, start, end]);
    const { items, nextToken } = paginate(events, maxResults, queryKey, input.NextToken, 'InvalidNextTokenException');
    return { Events: items, NextToken: nextToken };
  }

  /** Sliding one-second window per account and region; throttled requests don't use up the allowance. */
  private admitLookupEvents(region: string, now: number): void {
    const admitted = (this.lookupWindow.get(region) ?? []).filter((t) => now - t < 1000);
    if (admitted.length >= this.lookupEventsPerSecond) {
      this.lookupWindow.set(region, admitted);
      this.throttled += 1;
      throw new ApiError(400, 'ThrottlingException', 'Rate exceeded');
    }
    admitted.push(now);
    this.lookupWindow.set(region, admitted);
  }

  // -------------------------------------------------------------------------------------------
  // SSM

  private describeSessions(input: JsonObject, region: string | null, account: string | null): unknown {
    const state = optString(input, 'State');
    if (state !== 'Active' && state !== 'History') {
      throw validation(`Value '${String(state)}' at 'state' failed to satisfy constraint: Member must be Active or History`);
    }
    const maxResults = optInt(input, 'MaxResults') ?? 20;
    if (maxResults < 1 || maxResults > 200) throw validation('MaxResults must be between 1 and 200.');

    const filters = (optArray(input, 'Filters') ?? []).map((raw, i) => {
      const filter = asObject(raw, `Filters[${i}]`);
      const key = optString(filter, 'key');
      const value = optString(filter, 'value');
      if (key === undefined || !SESSION_FILTER_KEYS.has(key) || value === undefined) {
        throw validation(`Unsupported session filter ${JSON.stringify(filter)}`);
      }
      return { key, value };
    });
    const predicates = filters.map(({ key, value }): ((s: FakeSession) => boolean) => {
      switch (key) {
        case 'InvokedAfter':
        case 'InvokedBefore': {
          // The SSM API reference shows these as whole seconds: 2018-08-29T00:00:00Z.
          if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(value)) throw validation(`${key} must be written as YYYY-MM-DDTHH:MM:SSZ, got ${value}`);
          const ms = Date.parse(value);
          return key === 'InvokedAfter' ? (s) => s.StartDate * 1000 >= ms : (s) => s.StartDate * 1000 <= ms;
        }
        case 'Target':
          return (s) => s.Target === value;
        case 'Owner':
          return (s) => s.Owner === value;
        case 'Status':
          return (s) => s.Status === value;
        default:
          return (s) => s.SessionId === value;
      }
    });

    const sessions = this.ssm.sessions
      .filter((s) => s.state === state && visibleIn(s.region, region) && ofAccount(s.account ?? DEFAULT_ACCOUNT, account) && predicates.every((p) => p(s)))
      .sort((a, b) => b.StartDate - a.StartDate || a.SessionId.localeCompare(b.SessionId))
      .map((s) => ({
        SessionId: s.SessionId,
        Target: s.Target,
        Status: s.Status,
        StartDate: s.StartDate,
        EndDate: s.EndDate,
        DocumentName: s.DocumentName,
        Owner: s.Owner,
        Reason: s.Reason,
      }));

    const queryKey = JSON.stringify(['DescribeSessions', account, region, state, filters]);
    const { items, nextToken } = paginate(sessions, maxResults, queryKey, input.NextToken, 'InvalidNextToken');
    return { Sessions: items, NextToken: nextToken };
  }

  private getInventory(input: JsonObject, region: string | null, account: string | null): unknown {
    const maxResults = optInt(input, 'MaxResults') ?? 50;
    if (maxResults < 1 || maxResults > 50) {
      throw validation(`Value '${maxResults}' at 'maxResults' failed to satisfy constraint: Member must be 1 to 50`);
    }

    // Only instance-id filters are understood; other keys are accepted and ignored.
    const idFilters = (optArray(input, 'Filters') ?? [])
      .map((raw, i) => asObject(raw, `Filters[${i}]`))
      .filter((f) => f.Key === 'AWS:InstanceInformation.InstanceId')
      .map((f) => ({
        type: optString(f, 'Type') ?? 'Equal',
        values: (optArray(f, 'Values') ?? []).filter((v): v is string => typeof v === 'string'),
      }));
    const keep = (id: string): boolean =>
      idFilters.every(({ type, values }) => {
        if (type === 'NotEqual') return !values.includes(id);
        if (type === 'BeginWith') return values.some((v) => id.startsWith(v));
        return values.includes(id);
      });

    const entities = [...this.ssm.inventory.entries()]
      .filter(([id, inv]) => visibleIn(inv.region, region) && ofAccount(inv.account ?? DEFAULT_ACCOUNT, account) && keep(id))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id, inv]) => ({
        Id: id,
        Data: {
          'AWS:Application': {
            TypeName: 'AWS:Application',
            SchemaVersion: '1.1',
            CaptureTime: inv.captureTime,
            // As SSM does: a hash of the content, the same for the same packages.
            ContentHash: createHash('md5').update(JSON.stringify(inv.content)).digest('hex'),
            Content: inv.content,
          },
        },
      }));

    const queryKey = JSON.stringify(['GetInventory', account, region, idFilters]);
    const { items, nextToken } = paginate(entities, maxResults, queryKey, input.NextToken, 'InvalidNextToken');
    return { Entities: items, NextToken: nextToken };
  }

  private listInventoryEntries(input: JsonObject, region: string | null, account: string | null): unknown {
    const instanceId = optString(input, 'InstanceId');
    const typeName = optString(input, 'TypeName');
    if (!instanceId) throw validation('InstanceId is required.');
    if (!typeName) throw validation('TypeName is required.');
    const maxResults = optInt(input, 'MaxResults') ?? 50;
    if (maxResults < 1 || maxResults > 50) throw validation('MaxResults must be between 1 and 50.');

    const inventory = this.ssm.inventory.get(instanceId);
    const found = inventory && visibleIn(inventory.region, region) && ofAccount(inventory.account ?? DEFAULT_ACCOUNT, account) && typeName === 'AWS:Application' ? inventory : undefined;
    const queryKey = JSON.stringify(['ListInventoryEntries', region, instanceId, typeName]);
    const { items, nextToken } = paginate(found?.content ?? [], maxResults, queryKey, input.NextToken, 'InvalidNextToken');
    return {
      TypeName: typeName,
      InstanceId: instanceId,
      SchemaVersion: found ? '1.1' : undefined,
      CaptureTime: found?.captureTime,
      Entries: items,
      NextToken: nextToken,
    };
  }

  private describeAssociation(input: JsonObject): unknown {
    const id = optString(input, 'AssociationId');
    const a = id ? this.ssm.associations.get(id) : undefined;
    if (!id || !a) throw new ApiError(400, 'AssociationDoesNotExist', `Association ${String(id)} does not exist.`);
    return { AssociationDescription: { AssociationId: id, Name: a.name, DocumentVersion: a.documentVersion, Targets: a.targets } };
  }

  /** ListAssociations, filtered by document name (the one filter pristine uses), paged. */
  private listAssociations(input: JsonObject, region: string | null, account: string | null): unknown {
    const filters = Array.isArray(input.AssociationFilterList) ? (input.AssociationFilterList as JsonObject[]) : [];
    const name = filters.find((f) => f.key === 'Name')?.value;
    if (filters.some((f) => f.key !== 'Name')) throw new ApiError(400, 'ValidationException', 'the fake filters by Name only');
    const maxResults = typeof input.MaxResults === 'number' ? input.MaxResults : 50;
    const all = [...this.ssm.associations]
      .filter(([, a]) => visibleIn(a.region, region) && ofAccount(a.account ?? DEFAULT_ACCOUNT, account) && (name === undefined || a.name === name))
      .map(([id, a]) => ({ AssociationId: id, Name: a.name, DocumentVersion: a.documentVersion, Targets: a.targets, ScheduleExpression: 'cron(0 2 * * ? *)' }));
    const { items, nextToken } = paginate(all, maxResults, JSON.stringify(['ListAssociations', region, account, name]), input.NextToken, 'InvalidNextToken');
    return { Associations: items, NextToken: nextToken };
  }

  private describeInstanceConnectEndpoints(region: string | null, account: string | null): string {
    const items = this.ec2.endpoints
      .filter((e) => visibleIn(e.region, region) && ofAccount(e.account ?? DEFAULT_ACCOUNT, account))
      .map(
        (e) =>
          `<item><instanceConnectEndpointId>${escapeXml(e.id)}</instanceConnectEndpointId><vpcId>${escapeXml(e.vpcId)}</vpcId>` +
          `<subnetId>${escapeXml(e.subnetId ?? 'subnet-0')}</subnetId><state>create-complete</state><ownerId>${account ?? DEFAULT_ACCOUNT}</ownerId></item>`,
      )
      .join('');
    return `<DescribeInstanceConnectEndpointsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>${randomUUID()}</requestId><instanceConnectEndpointSet>${items}</instanceConnectEndpointSet></DescribeInstanceConnectEndpointsResponse>`;
  }

  /** The account of a request's access key, as moto's STS says (cached); without moto to ask, null (any). */
  private accountOf(req: IncomingMessage): Promise<string | null> {
    const key = /Credential=([^/,\s]+)\//.exec(req.headers.authorization ?? '')?.[1];
    if (!this.upstream) return Promise.resolve(null);
    if (!key) return Promise.resolve(DEFAULT_ACCOUNT);
    let known: Promise<string | null> | undefined = this.accounts.get(key);
    if (!known) {
      known = this.askUpstreamAccount(key).catch(() => DEFAULT_ACCOUNT);
      this.accounts.set(key, known);
    }
    return known;
  }

  private async askUpstreamAccount(accessKeyId: string): Promise<string> {
    const upstream = this.upstream as URL;
    const res = await fetch(new URL('/', upstream), {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        // moto reads the access key from the credential scope; it does not check the signature.
        authorization: `AWS4-HMAC-SHA256 Credential=${accessKeyId}/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0`,
      },
      body: 'Action=GetCallerIdentity&Version=2011-06-15',
    });
    const text = await res.text();
    return /<Account>(\d{12})<\/Account>/.exec(text)?.[1] ?? DEFAULT_ACCOUNT;
  }

  private listCommandInvocations(input: JsonObject): unknown {
    const commandId = optString(input, 'CommandId');
    const instanceId = optString(input, 'InstanceId');
    const maxResults = optInt(input, 'MaxResults') ?? 50;
    if (maxResults < 1 || maxResults > 50) throw validation('MaxResults must be between 1 and 50.');

    const invocations = [...this.ssm.commandInvocations.entries()]
      .filter(([id]) => commandId === undefined || id === commandId)
      .flatMap(([id, instances]) =>
        instances
          .map((i) => (typeof i === 'string' ? { instanceId: i, status: 'Success' } : i))
          .filter((i) => instanceId === undefined || i.instanceId === instanceId)
          .map((i) => ({ CommandId: id, InstanceId: i.instanceId, Status: i.status, DocumentName: 'AWS-RunShellScript' })),
      );

    const queryKey = JSON.stringify(['ListCommandInvocations', commandId, instanceId]);
    const { items, nextToken } = paginate(invocations, maxResults, queryKey, input.NextToken, 'InvalidNextToken');
    return { CommandInvocations: items, NextToken: nextToken };
  }
}

// ---------------------------------------------------------------------------------------------
// CloudTrail record -> LookupEvents event

function toLookupEvent(record: CloudTrailRecord): LookupEvent {
  const identity = isObject(record.userIdentity) ? record.userIdentity : {};
  const eventTimeMs = typeof record.eventTime === 'string' ? Date.parse(record.eventTime) : Number.NaN;
  const cloudTrailEvent = JSON.stringify(record);
  return {
    EventId: str(record.eventID) ?? createHash('sha256').update(cloudTrailEvent).digest('hex').slice(0, 36),
    EventName: str(record.eventName) ?? '',
    ReadOnly: record.readOnly === true || record.readOnly === 'true' ? 'true' : 'false',
    AccessKeyId: str(identity.accessKeyId) ?? '',
    EventTime: Number.isNaN(eventTimeMs) ? 0 : eventTimeMs / 1000,
    EventSource: str(record.eventSource) ?? '',
    Username: usernameOf(identity),
    Resources: instanceIdsIn([record.requestParameters, record.responseElements]).map((id) => ({
      ResourceType: 'AWS::EC2::Instance',
      ResourceName: id,
    })),
    CloudTrailEvent: cloudTrailEvent,
  };
}

/** What LookupEvents reports as Username: the IAM user, or the role session name for assumed roles. */
function usernameOf(identity: Record<string, unknown>): string {
  const userName = str(identity.userName);
  if (identity.type === 'Root') return 'root';
  if (identity.type === 'AWSService') return str(identity.invokedBy) ?? '';
  if (identity.type !== 'AssumedRole' && userName) return userName;
  const principal = str(identity.principalId) ?? '';
  const colon = principal.indexOf(':');
  return colon >= 0 ? principal.slice(colon + 1) : (userName ?? principal);
}

/** Instance ids anywhere in the given values; stands in for the Resources CloudTrail derives. */
function instanceIdsIn(values: unknown[]): string[] {
  const found = new Set<string>();
  const visit = (value: unknown): void => {
    if (typeof value === 'string') {
      if (INSTANCE_ID.test(value)) found.add(value);
    } else if (Array.isArray(value)) {
      value.forEach(visit);
    } else if (isObject(value)) {
      Object.values(value).forEach(visit);
    }
  };
  values.forEach(visit);
  return [...found];
}

function matchesLookupAttribute(event: LookupEvent, key: string, value: string): boolean {
  switch (key) {
    case 'ResourceName':
      return event.Resources.some((r) => r.ResourceName === value);
    case 'ResourceType':
      return event.Resources.some((r) => r.ResourceType === value);
    case 'EventId':
    case 'EventName':
    case 'ReadOnly':
    case 'Username':
    case 'EventSource':
    case 'AccessKeyId':
      return event[key] === value;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Paging: opaque tokens carrying an offset plus a hash of the query they belong to, so a token
// replayed against a different query is rejected the way AWS rejects it.

function paginate<T>(
  all: T[],
  maxResults: number,
  queryKey: string,
  token: Json | undefined,
  invalidTokenCode: string,
): { items: T[]; nextToken: string | undefined } {
  const queryHash = createHash('sha256').update(queryKey).digest('hex').slice(0, 16);
  let offset = 0;
  if (token !== undefined && token !== null && token !== '') {
    const decoded = typeof token === 'string' ? decodeToken(token) : undefined;
    if (!decoded || decoded.q !== queryHash || decoded.o > all.length) {
      throw new ApiError(400, invalidTokenCode, 'Invalid NextToken.');
    }
    offset = decoded.o;
  }
  const items = all.slice(offset, offset + maxResults);
  const next = offset + items.length;
  const nextToken =
    next < all.length ? Buffer.from(JSON.stringify({ o: next, q: queryHash })).toString('base64url') : undefined;
  return { items, nextToken };
}

function decodeToken(token: string): { o: number; q: string } | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (isObject(parsed) && Number.isInteger(parsed.o) && typeof parsed.q === 'string') {
      return { o: parsed.o as number, q: parsed.q };
    }
  } catch {
    // fall through: not one of ours
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Wire helpers

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** `Credential=AKID/20261129/us-east-1/ec2/aws4_request` -> region and service. */
function credentialScope(req: IncomingMessage): { region: string; service: string } | undefined {
  const auth = req.headers.authorization ?? '';
  const match = /Credential=[^/,\s]+\/\d{8}\/([^/,\s]+)\/([^/,\s]+)\/aws4_request/.exec(auth);
  return match?.[1] && match[2] ? { region: match[1], service: match[2] } : undefined;
}

function classify(req: IncomingMessage, body: Buffer): ClassifiedRequest {
  const scope = credentialScope(req);
  const region = scope?.region ?? null;
  const target = req.headers['x-amz-target'];
  if (typeof target === 'string' && target.includes('.')) {
    const dot = target.lastIndexOf('.');
    const prefix = target.slice(0, dot);
    const service = TARGET_PREFIXES[prefix] ?? scope?.service ?? prefix.toLowerCase();
    return { service, operation: target.slice(dot + 1), region, protocol: 'json' };
  }
  const contentType = req.headers['content-type'] ?? '';
  const url = new URL(req.url ?? '/', 'http://fake');
  const action =
    (contentType.startsWith('application/x-www-form-urlencoded')
      ? new URLSearchParams(body.toString('utf8')).get('Action')
      : null) ?? url.searchParams.get('Action');
  if (action) return { service: scope?.service ?? 'unknown', operation: action, region, protocol: 'query' };
  return { service: scope?.service ?? 'unknown', operation: `${req.method ?? 'GET'} ${url.pathname}`, region, protocol: 'rest' };
}

function parseJsonInput(body: Buffer): JsonObject {
  const text = body.toString('utf8').trim();
  if (text === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ApiError(400, 'SerializationException', 'Request body is not valid JSON.');
  }
  if (!isObject(parsed)) throw new ApiError(400, 'SerializationException', 'Request body must be a JSON object.');
  return parsed as JsonObject;
}

function finish(call: FakeCall, status: number, errorCode?: string): void {
  call.status = status;
  call.outcome = status < 400 ? 'ok' : 'error';
  if (errorCode) call.errorCode = errorCode;
}

function sendJson(res: ServerResponse, status: number, payload: unknown, errorType?: string): void {
  const body = JSON.stringify(payload);
  const headers: OutgoingHttpHeaders = {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': randomUUID(),
  };
  if (errorType) headers['x-amzn-errortype'] = errorType;
  res.writeHead(status, headers);
  res.end(body);
}

/** Writes an error in the shape the caller's protocol expects (JSON, EC2 XML or Query XML). */
function sendError(res: ServerResponse, request: ClassifiedRequest, error: ApiError, call: FakeCall): void {
  finish(call, error.status, error.code);
  if (request.protocol !== 'query') {
    sendJson(res, error.status, { __type: error.code, message: error.message }, error.code);
    return;
  }
  const requestId = randomUUID();
  const code = escapeXml(error.code);
  const message = escapeXml(error.message);
  const inner = `<Code>${code}</Code><Message>${message}</Message>`;
  // EC2 has its own Query error envelope; the other Query services (STS, ELBv2, AutoScaling) share one.
  const xml =
    request.service === 'ec2'
      ? `<Response><Errors><Error>${inner}</Error></Errors><RequestID>${requestId}</RequestID></Response>`
      : `<ErrorResponse><Error><Type>${error.status >= 500 ? 'Receiver' : 'Sender'}</Type>${inner}</Error>` +
        `<RequestId>${requestId}</RequestId></ErrorResponse>`;
  res.writeHead(error.status, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(xml) });
  res.end(xml);
}

function errorCodeFromBody(body: string): string | undefined {
  const xml = /<Code>([^<]+)<\/Code>/.exec(body);
  if (xml?.[1]) return xml[1];
  try {
    const parsed: unknown = JSON.parse(body);
    if (isObject(parsed)) {
      const type = str(parsed.__type) ?? str(parsed.code);
      return type?.split('#').pop();
    }
  } catch {
    // not JSON either
  }
  return undefined;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

// ---------------------------------------------------------------------------------------------
// Input helpers: loose on absence, strict on wrong types (a type error is a 400, like AWS).

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function ofAccount(itemAccount: string, requestAccount: string | null): boolean {
  return requestAccount === null || itemAccount === requestAccount;
}

/** The account a CloudTrail record belongs to: where the call was made. */
function recordAccount(record: CloudTrailRecord): string {
  const identity = isObject(record.userIdentity) ? record.userIdentity : {};
  return str(record.recipientAccountId) ?? str(identity.accountId) ?? DEFAULT_ACCOUNT;
}

/** DescribeInstances XML with the LaunchTime of some instances replaced (each `<item>` of an instancesSet). */
export function rewriteLaunchTimes(xml: string, launchTimes: ReadonlyMap<string, Date>): string {
  let out = xml;
  for (const [id, at] of launchTimes) {
    const idTag = `<instanceId>${id}</instanceId>`;
    let from = 0;
    for (;;) {
      const i = out.indexOf(idTag, from);
      if (i < 0) break;
      const open = out.indexOf('<launchTime>', i);
      const close = out.indexOf('</launchTime>', open);
      const next = out.indexOf('<instanceId>', i + idTag.length);
      if (open < 0 || close < 0 || (next >= 0 && next < open)) {
        from = i + idTag.length;
        continue;
      }
      out = `${out.slice(0, open)}<launchTime>${at.toISOString()}</launchTime>${out.slice(close + '</launchTime>'.length)}`;
      from = open;
    }
  }
  return out;
}

function sendXml(res: ServerResponse, xml: string): void {
  res.writeHead(200, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(xml) });
  res.end(xml);
}

function visibleIn(itemRegion: string | undefined, requestRegion: string | null): boolean {
  return itemRegion === undefined || requestRegion === null || itemRegion === requestRegion;
}

function asObject(value: Json | undefined, name: string): JsonObject {
  if (!isObject(value)) throw new ApiError(400, 'SerializationException', `${name} must be an object.`);
  return value as JsonObject;
}

function optString(input: JsonObject, key: string): string | undefined {
  const value = input[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ApiError(400, 'SerializationException', `${key} must be a string.`);
  return value;
}

function optInt(input: JsonObject, key: string): number | undefined {
  const value = input[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new ApiError(400, 'SerializationException', `${key} must be an integer.`);
  }
  return value;
}

function optArray(input: JsonObject, key: string): Json[] | undefined {
  const value = input[key];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw new ApiError(400, 'SerializationException', `${key} must be a list.`);
  return value;
}

/** A timestamp as epoch milliseconds: the SDK sends epoch seconds; ISO strings are accepted too. */
function optTime(input: JsonObject, key: string): number | undefined {
  const value = input[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number') return value * 1000;
  if (typeof value === 'string' && !Number.isNaN(Date.parse(value))) return Date.parse(value);
  throw new ApiError(400, 'SerializationException', `${key} must be a timestamp.`);
}
