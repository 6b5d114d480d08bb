import { createRegionClients, destroyClients, type AwsCallListener, type RegionClients } from '../collect/clients.js';
import { InputError } from '../errors.js';
import type { Logger } from '../logger.js';
import { ConsoleTransport, SlackTransport } from '../notify/slack-transport.js';
import type { Transport } from '../notify/types.js';
import { StateStore, StoreError } from '../state/store.js';

/** SDK clients per region, made once and kept (a daemon reuses them every cycle). */
export class ClientPool {
  private readonly clients = new Map<string, RegionClients>();
  constructor(private readonly listener?: AwsCallListener) {}

  readonly get = (region: string): RegionClients => {
    let c = this.clients.get(region);
    if (!c) {
      c = createRegionClients(region, this.listener);
      this.clients.set(region, c);
    }
    return c;
  };

  destroy(): void {
    this.clients.forEach(destroyClients);
    this.clients.clear();
  }
}

/** Slack when SLACK_BOT_TOKEN is set (SLACK_API_URL for another API base), else the terminal (stderr). */
export function transportFromEnv(logger: Logger, env: NodeJS.ProcessEnv = process.env): Transport {
  const token = env['SLACK_BOT_TOKEN'];
  if (!token) return new ConsoleTransport(process.stderr);
  return new SlackTransport({ token, apiUrl: env['SLACK_API_URL'] || undefined, logger });
}

export function openStore(file: string): StateStore {
  try {
    return StateStore.open(file);
  } catch (err) {
    if (err instanceof StoreError) throw new InputError(`--state: ${err.message}`);
    throw err;
  }
}
