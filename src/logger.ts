import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stderr, so stdout carries only the report. */
export function createLogger(level: string): Logger {
  return pino(
    {
      name: 'pristine',
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Belt and braces: nothing pristine logs should carry a secret, but a stray one must not leak.
      redact: { paths: ['token', '*.token', 'headers.authorization', '*.headers.authorization'], censor: '[redacted]' },
    },
    pino.destination({ dest: 2, sync: true }),
  );
}
