import { Writable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import { createLogger } from '../src/log.js';

describe('createLogger', () => {
  it('redacts credentials at the top level, one level down and in headers', () => {
    const lines: string[] = [];
    const log = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    const secret = 'tsec_0123456789abcdef_canary';
    for (const key of ['authorization', 'client_secret', 'access_token', 'token', 'password', 'hash']) {
      log.info({ [key]: secret }, 'top');
      log.info({ nested: { [key]: secret } }, 'nested');
    }
    log.info({ req: { headers: { authorization: `Basic ${secret}` } } }, 'headers');
    expect(lines).toHaveLength(13);
    for (const line of lines) expect(line).not.toContain('canary');
    expect(lines.every((line) => line.includes('[redacted]'))).toBe(true);
  });
});
