import type { StateStore } from './ports.js';
import { SqliteStateStore } from './sqlite/store.js';

/** Whether `--state` names a PostgreSQL database rather than a SQLite file. */
export const isPostgresUrl = (target: string) => /^postgres(ql)?:\/\//i.test(target);

/**
 * The state store `--state` (or PRISTINE_STATE_URL) names: `postgres://…` is PostgreSQL, shared by
 * several replicas; anything else is a SQLite file (`:memory:` for one that lives as long as the process).
 */
export async function openStateStore(target: string): Promise<StateStore> {
  if (isPostgresUrl(target)) {
    const { PostgresStateStore } = await import('./postgres/store.js');
    return PostgresStateStore.open(target);
  }
  return SqliteStateStore.open(target);
}
