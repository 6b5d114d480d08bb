import type { z } from 'zod';
import { InputError } from './errors.js';

/** `policies[0].detect.package-drift.ignore` from a zod issue path. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** One line per issue: `FILE: PATH: MESSAGE`. */
export function formatIssues(file: string, error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = formatPath(issue.path);
      return path ? `${file}: ${path}: ${issue.message}` : `${file}: ${issue.message}`;
    })
    .join('\n');
}

/** Parse `data` with `schema` or throw an InputError naming the file and every bad field. */
export function parseOrThrow<S extends z.ZodType>(schema: S, data: unknown, file: string): z.output<S> {
  const result = schema.safeParse(data);
  if (!result.success) throw new InputError(formatIssues(file, result.error));
  return result.data;
}
