import { AUDIT_LEASE_PREFIX, REPLICA_LEASE_PREFIX } from '../daemon/scope-leases.js';
import { openStore } from './shared.js';

const iso = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

/** `pristine status`: open findings, replacements in flight and their step, recent history. */
export async function statusOf(target: string, format: 'table' | 'json'): Promise<string> {
  const store = await openStore(target);
  try {
    const cycles = await store.recentCycles(5);
    const open = await store.openFindings();
    const inFlight = await store.inFlight();
    const recent = (await store.recentReplacements(10)).filter((r) => r.status !== 'in-progress');
    const outbox = await store.outboxStats();
    // Which replicas live, and which of them audits which scope (several daemons on one store).
    const live = (await store.leases.list('')).filter((l) => l.live);
    const replicas = live.filter((l) => l.name.startsWith(REPLICA_LEASE_PREFIX)).map((l) => l.owner as string);
    const audits = live.filter((l) => l.name.startsWith(AUDIT_LEASE_PREFIX)).map((l) => ({ scope: l.name.slice(AUDIT_LEASE_PREFIX.length), replica: l.owner as string }));
    if (format === 'json') {
      return `${JSON.stringify({ cycles, openFindings: open, inFlight, recentReplacements: recent, outbox, replicas, audits }, null, 2)}\n`;
    }
    // The store's location, never the URL as given: it may hold a password.
    const out: string[] = [`State: ${store.location} (${store.kind})`];
    if (replicas.length > 0) {
      out.push(`Replicas (${replicas.length}): ${replicas.join(', ')}`);
      for (const a of audits) out.push(`  ${a.scope} audited by ${a.replica}`);
    }
    const last = cycles[0];
    out.push(last ? `Last cycle: ${iso(last.finishedAt ?? last.startedAt)} (${last.outcome ?? 'running'}${last.exitCode !== null ? `, exit ${last.exitCode}` : ''})` : 'Last cycle: none yet');
    out.push('', `Open findings (${open.length} tainted instance${open.length === 1 ? '' : 's'} not replaced):`);
    if (open.length === 0) out.push('  none');
    for (const i of open) {
      out.push(`  ${i.instanceId}${i.name ? ` (${i.name})` : ''}  ${i.region}  policy ${i.policy}  tainted since ${iso(i.taintedSince)}`);
      for (const f of i.findings) out.push(`    ${f.detector} [${f.severity}] ${f.summary}  (first seen ${iso(f.firstSeen)}, last seen ${iso(f.lastSeen)})`);
    }
    out.push('', `Replacements in flight (${inFlight.length}):`);
    if (inFlight.length === 0) out.push('  none');
    for (const r of inFlight) {
      out.push(`  #${r.id} ${r.oldInstanceId} -> ${r.newInstanceId ?? '(not launched yet)'}  step ${r.step} since ${iso(r.updatedAt)}${r.error ? `  last error: ${r.error}` : ''}`);
      out.push(
        `      ${r.waitingFor ? `waits for ${r.waitingFor}; ` : ''}next turn ${iso(r.nextPollAt)}; ` +
          (r.leaseOwner && (r.leaseExpiresAt ?? 0) > Date.now() ? `driven by ${r.leaseOwner} (lease until ${iso(r.leaseExpiresAt)})` : 'no driver holds it'),
      );
    }
    out.push('', 'Recent history:');
    for (const c of cycles) out.push(`  cycle #${c.id} ${iso(c.startedAt)} -> ${iso(c.finishedAt)} ${c.outcome ?? 'running'} ${c.summary ? JSON.stringify(c.summary) : ''}`);
    for (const r of recent) out.push(`  replacement #${r.id} ${r.oldInstanceId} -> ${r.newInstanceId ?? '-'} ${r.status} at ${iso(r.finishedAt)}${r.error ? ` (${r.error})` : ''}`);
    if (cycles.length === 0 && recent.length === 0) out.push('  none');
    out.push('', `Slack outbox: ${outbox.pending} waiting, ${outbox.sent} sent, ${outbox.dropped} dropped`);
    return out.join('\n') + '\n';
  } finally {
    await store.close();
  }
}
