import type { Report, ReportInstance } from './model.js';

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

const VERDICT_LABEL = { pristine: 'pristine', tainted: 'TAINTED', unknown: 'UNKNOWN' } as const;

function rows(instances: ReportInstance[], withAccount: boolean): string[] {
  const header = ['INSTANCE', 'NAME', ...(withAccount ? ['ACCOUNT'] : []), 'REGION', 'IMAGE', 'POLICY', 'VERDICT'];
  const cells = instances.map((i) => [i.instanceId, i.name ?? '-', ...(withAccount ? [i.accountId] : []), i.region, i.imageId, i.policy, VERDICT_LABEL[i.verdict]]);
  // A loop, not Math.max(...spread): a fleet of 100,000 rows is more arguments than a call takes.
  const widths = header.map((h, c) => cells.reduce((w, r) => Math.max(w, (r[c] ?? '').length), h.length));
  const line = (r: string[]) => r.map((cell, c) => pad(cell, widths[c] ?? 0)).join('  ').trimEnd();
  const out = [line(header)];
  instances.forEach((inst, n) => {
    out.push(line(cells[n] ?? []));
    const notes = [
      ...inst.findings.map((f) => `${f.at ?? '-'}  ${f.detector} [${f.severity}]  ${f.summary}`),
      ...inst.gaps.map((g) => `evidence missing (${g.source}): ${g.message}`),
    ];
    notes.forEach((note, k) => out.push(`  ${k === notes.length - 1 ? '└─' : '├─'} ${note}`));
  });
  return out;
}

/** The report for a terminal: one instance a row, its findings and missing evidence beneath. */
export function renderTable(report: Report): string {
  const out: string[] = [];
  if (report.instances.length === 0) out.push('No running instance is in scope of the policies.');
  else for (const row of rows(report.instances, new Set(report.scopes.map((s) => s.accountId)).size > 1)) out.push(row);
  const s = report.summary;
  out.push('');
  out.push(
    `${s.pristine} pristine, ${s.tainted} tainted, ${s.unknown} unknown` +
      ` (${s.exempt} exempt, ${s.outOfScope} out of scope)` +
      (report.complete ? '' : ' — evidence INCOMPLETE: unknown is not pristine'),
  );
  for (const s of report.scopes) {
    out.push(`${s.accountId} ${s.region}: activity examined from ${s.window.from} to ${s.window.to}${s.complete ? '' : ' (incomplete)'}`);
  }
  if (report.errors.length > 0) {
    out.push('', 'Errors:');
    for (const e of report.errors) out.push(`  ${e.accountId ? `${e.accountId} ` : ''}${e.region ? `${e.region} ` : ''}${e.source}: ${e.message}`);
  }
  if (report.warnings.length > 0) {
    out.push('', 'Warnings:');
    for (const w of report.warnings) out.push(`  ${w.accountId ? `${w.accountId} ` : ''}${w.region ? `${w.region} ` : ''}${w.source}: ${w.message}`);
  }
  return out.join('\n') + '\n';
}
