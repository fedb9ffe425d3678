/**
 * Structured JSON logs, one line per event. Request and audit records are built field by field,
 * never from raw headers or bodies, so no secret, token or Authorization header reaches a line;
 * the redaction below is a second line of defence.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

import type { LogLevel } from './config.js';

export type { Logger };

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tessera' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        // At the top level and one level down (pino's `*` matches exactly one level), and in headers.
        paths: ['authorization', 'client_secret', 'access_token', 'token', 'password', 'hash'].flatMap((key) => [key, `*.${key}`]).concat('*.headers.authorization'),
        censor: '[redacted]',
      },
    },
    destination,
  );
}
