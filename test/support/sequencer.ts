// The order test files start in: the longest integration files first, so that with files running side
// by side the suite ends when its longest file does (a fresh clone has no timing cache to go by).
import path from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Longest first, as measured on the 2-core build machine; files not listed come after, in name order. */
const LONGEST_FIRST = [
  'replace-background',
  'run-safety',
  'evidence-evasion',
  'crash-resume-serve',
  'crash-resume-launch',
  'event-sources',
  'audit-failures',
  'organization',
  'replace-faithful',
  'run-incremental',
  'replicas-postgres',
  'run-enforce',
  'daemon',
  'audit-scale',
  'run-asg',
  'audit',
];

const rank = (file: string): number => {
  const n = LONGEST_FIRST.indexOf(path.basename(file).replace(/\.test\.ts$/, ''));
  return n < 0 ? LONGEST_FIRST.length : n;
};

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    return [...files].sort((a, b) => rank(a.moduleId) - rank(b.moduleId) || a.moduleId.localeCompare(b.moduleId));
  }
}
