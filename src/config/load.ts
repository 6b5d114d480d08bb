import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { InputError } from '../errors.js';
import { formatIssues } from '../validation.js';
import { Config } from './schema.js';

/** Read when `--config` is not given and it exists in the working directory. */
export const DEFAULT_CONFIG_FILE = 'pristine.yaml';

export interface LoadedConfig {
  config: Config;
  /** the file it came from; null when none was given or found (every default) */
  file: string | null;
}

/** Parse a config file's text; every problem names the file and the field. */
export function parseConfigText(text: string, file: string): Config {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new InputError(
      doc.errors
        .map((e) => {
          const line = e.linePos?.[0];
          return `${file}${line ? `:${line.line}:${line.col}` : ''}: invalid YAML: ${e.message.split('\n')[0]}`;
        })
        .join('\n'),
    );
  }
  const result = Config.safeParse(doc.toJS() ?? {});
  if (!result.success) throw new InputError(formatIssues(file, result.error));
  return result.data;
}

/**
 * pristine.yaml: `--config FILE` (which must exist), else `./pristine.yaml` when present, else every
 * default (pristine's own account, the policies' regions).
 */
export async function loadConfig(file: string | undefined): Promise<LoadedConfig> {
  const path = file ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : null);
  if (path === null) return { config: Config.parse({}), file: null };
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new InputError(`--config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return { config: parseConfigText(text, path), file: path };
}
