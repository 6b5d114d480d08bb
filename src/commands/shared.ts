import { InputError } from '../errors.js';
import type { Logger } from '../logger.js';
import { ConsoleTransport, SlackTransport } from '../notify/slack-transport.js';
import type { Transport } from '../notify/types.js';
import { type StateStore, StoreError } from '../state/ports.js';
import { openStateStore } from '../state/open.js';
import { ClientPool, defaultRegion, type AwsCallListener } from '../collect/clients.js';

/** Slack when SLACK_BOT_TOKEN is set (SLACK_API_URL for another API base), else the terminal (stderr). */
export function transportFromEnv(logger: Logger, env: NodeJS.ProcessEnv = process.env): Transport {
  const token = env['SLACK_BOT_TOKEN'];
  if (!token) return new ConsoleTransport(process.stderr);
  return new SlackTransport({ token, apiUrl: env['SLACK_API_URL'] || undefined, logger });
}

/** The store `--state` names (a SQLite file, or postgres://…): a store that cannot be used is bad input, exit 2. */
export async function openStore(target: string): Promise<StateStore> {
  try {
    return await openStateStore(target);
  } catch (err) {
    if (err instanceof StoreError) throw new InputError(`--state: ${err.message}`);
    throw err;
  }
}

/** Clients for every command: STS and Organizations in the SDK's region. */
export async function createPool(listener?: AwsCallListener): Promise<ClientPool> {
  return new ClientPool(listener, (await defaultRegion()) ?? 'us-east-1');
}
