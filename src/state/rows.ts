import type { DigestRecord, TrailFileRecord } from '../evidence/store-port.js';
import type { Notice } from '../notify/types.js';
import type { CycleRow, FindingInput, InstanceRow, JournalRow, OutboxRow, ReplacementRow, ReplacementStatus } from './ports.js';
import { readNotice } from './records.js';

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

export function toTrailFile(r: Row): TrailFileRecord {
  return {
    bucket: r['bucket'] as string,
    key: r['key'] as string,
    accountId: r['account_id'] as string,
    region: r['region'] as string,
    sha256: r['sha256'] as string,
    records: Number(r['records']),
    readAt: Number(r['read_at']),
  };
}

export function toDigest(r: Row): DigestRecord {
  return {
    bucket: r['bucket'] as string,
    key: r['key'] as string,
    accountId: r['account_id'] as string,
    region: r['region'] as string,
    from: Number(r['from_ms']),
    to: Number(r['to_ms']),
    status: r['status'] as DigestRecord['status'],
    checkedAt: Number(r['checked_at']),
  };
}

export function toFinding(f: Row): FindingInput & { firstSeen: number; lastSeen: number } {
  return {
    key: f['key'] as string,
    detector: f['detector'] as string,
    severity: f['severity'] as string,
    summary: f['summary'] as string,
    at: num(f['at']),
    actor: (f['actor'] as string | null) ?? null,
    firstSeen: Number(f['first_seen']),
    lastSeen: Number(f['last_seen']),
  };
}

export function toOutbox(r: Row): OutboxRow {
  return {
    id: Number(r['id']),
    channel: r['channel'] as string,
    parentId: num(r['parent_id']),
    ...readNotice<Notice>(r['notice'] as string),
    createdAt: Number(r['created_at']),
    attempts: Number(r['attempts']),
    lastError: (r['last_error'] as string | null) ?? null,
  };
}

export function toCycle(r: Row): CycleRow {
  return {
    id: Number(r['id']),
    startedAt: Number(r['started_at']),
    finishedAt: num(r['finished_at']),
    outcome: (r['outcome'] as string | null) ?? null,
    exitCode: num(r['exit_code']),
    summary: r['summary'] ? (JSON.parse(r['summary'] as string) as Record<string, unknown>) : null,
  };
}
