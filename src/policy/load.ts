import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { InputError } from '../errors.js';
import { formatIssues } from '../validation.js';
import { PolicyFile, type LoadedPolicy } from './schema.js';

const POLICY_FILE = /\.ya?ml$/;

async function listPolicyFiles(dir: string): Promise<string[]> {
  const info = await stat(dir).catch(() => null);
  if (!info) throw new InputError(`policies directory not found: ${dir}`);
  if (!info.isDirectory()) return [dir];
  const names = (await readdir(dir)).filter((n) => POLICY_FILE.test(n)).sort();
  if (names.length === 0) throw new InputError(`${dir}: no policy files (*.yaml, *.yml)`);
  return names.map((n) => path.join(dir, n));
}

/** Parse one policy file's text; every problem in it is listed, each naming the file and field. */
export function parsePolicyText(text: string, file: string): { policies: LoadedPolicy[]; problems: string[] } {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      policies: [],
      problems: doc.errors.map((e) => {
        const line = e.linePos?.[0];
        return `${file}${line ? `:${line.line}:${line.col}` : ''}: invalid YAML: ${e.message.split('\n')[0]}`;
      }),
    };
  }
  const result = PolicyFile.safeParse(doc.toJS());
  if (!result.success) return { policies: [], problems: formatIssues(file, result.error).split('\n') };
  return { policies: result.data.policies.map((p) => ({ ...p, file })), problems: [] };
}

/**
 * Every policy under `dir` (or in one file), in file-name order then file order: the first policy
 * whose scope matches an instance is the one that judges it. Throws one InputError listing every problem.
 */
export async function loadPolicies(dir: string): Promise<LoadedPolicy[]> {
  const files = await listPolicyFiles(dir);
  const policies: LoadedPolicy[] = [];
  const problems: string[] = [];
  for (const file of files) {
    const parsed = parsePolicyText(await readFile(file, 'utf8'), file);
    policies.push(...parsed.policies);
    problems.push(...parsed.problems);
  }
  const seen = new Map<string, string>();
  for (const p of policies) {
    const first = seen.get(p.name);
    if (first) problems.push(`${p.file}: policy name "${p.name}" is already used in ${first}`);
    else seen.set(p.name, p.file);
  }
  if (problems.length > 0) throw new InputError(problems.join('\n'));
  return policies;
}
