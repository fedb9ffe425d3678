/**
 * Every migration, in order. A static list rather than a directory scan, so the compiled server
 * and the test runner apply exactly the same set.
 *
 * Migrations only add, because the previous version keeps running on the new schema (a rolling
 * upgrade, a rollback; src/db/migrate.ts): a column added to an existing table is nullable or has a
 * default, no column is dropped, renamed or given another meaning that the previous version would
 * misread, and a trigger changes nothing the previous version relies on. All pending migrations
 * run in one transaction, so a SQLite table rebuild cannot turn foreign keys off: do not write one.
 */
import type { Migration } from 'kysely';

import * as initial from './2026-11-23-0001-initial.js';
import * as introspection from './2026-11-23-0002-introspection-revocation.js';
import * as auditJtiIndex from './2026-11-23-0003-audit-jti-index.js';
import * as tokenRateLimit from './2026-11-23-0004-token-rate-limit.js';
import * as postgresKeyOrder from './2026-11-24-0005-postgres-key-order.js';
import * as sharedLimits from './2026-11-24-0006-shared-limits.js';
import * as clientsVersion from './2026-11-24-0007-clients-version.js';
import * as secretsFollowClients from './2026-11-24-0008-secrets-follow-clients.js';

export const migrations: Readonly<Record<string, Migration>> = {
  '2026-11-23-0001-initial': initial,
  '2026-11-23-0002-introspection-revocation': introspection,
  '2026-11-23-0003-audit-jti-index': auditJtiIndex,
  '2026-11-23-0004-token-rate-limit': tokenRateLimit,
  '2026-11-24-0005-postgres-key-order': postgresKeyOrder,
  '2026-11-24-0006-shared-limits': sharedLimits,
  '2026-11-24-0007-clients-version': clientsVersion,
  '2026-11-24-0008-secrets-follow-clients': secretsFollowClients,
};
