import type { InstanceRow, JournalRow, ReplacementRow, ReplacementStatus } from './ports.js';

/** A row as a driver returns it: column name to value. */
export type Row = Record<string, unknown>;

/** Times and ids as numbers, whichever driver read them (SQLite's integers, PostgreSQL's BIGINT). */
export const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

export function toReplacement(r: Row): ReplacementRow {
  return {
    id: Number(r['id']),
    uuid: r['uuid'] as string,
    nextPollAt: num(r['next_poll_at']),
    waitingFor: (r['waiting_for'] as string | null) ?? null,
    leaseOwner: (r['lease_owner'] as string | null) ?? null,
    leaseExpiresAt: num(r['lease_expires_at']),
    leaseToken: Number(r['lease_token'] ?? 0),
    oldInstanceId: r['old_instance_id'] as string,
    accountId: (r['account_id'] as string | null) ?? null,
    region: r['region'] as string,
    policy: r['policy'] as string,
    imageId: r['image_id'] as string,
    status: r['status'] as ReplacementStatus,
    step: r['step'] as string,
    newInstanceId: (r['new_instance_id'] as string | null) ?? null,
    data: JSON.parse(r['data'] as string) as Record<string, unknown>,
    alertOutboxId: num(r['alert_outbox_id']),
    startedAt: Number(r['started_at']),
    updatedAt: Number(r['updated_at']),
    finishedAt: num(r['finished_at']),
    error: (r['error'] as string | null) ?? null,
  };
}

export function toJournal(r: Row): JournalRow {
  return {
    id: Number(r['id']),
    replacementId: Number(r['replacement_id']),
    step: r['step'] as string,
    phase: r['phase'] as JournalRow['phase'],
    at: Number(r['at']),
    detail: r['detail'] ? (JSON.parse(r['detail'] as string) as Record<string, unknown>) : null,
  };
}

export function toInstance(r: Row): InstanceRow {
  return {
    instanceId: r['instance_id'] as string,
    accountId: (r['account_id'] as string | null) ?? null,
    region: r['region'] as string,
    policy: r['policy'] as string,
    name: (r['name'] as string | null) ?? null,
    verdict: r['verdict'] as string,
    firstSeen: Number(r['first_seen']),
    lastSeen: Number(r['last_seen']),
    taintedSince: num(r['tainted_since']),
    alertOutboxId: num(r['alert_outbox_id']),
  };
}
