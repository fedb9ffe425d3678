/** Cursor paging for admin lists: `?limit=&cursor=`, answered as `{"items": [...], "next_cursor": ...}`. */
import { AdminError } from './admin-error.js';

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 200;

export interface Page<T> {
  items: T[];
  /** Opaque; null on the last page. */
  next_cursor: string | null;
}

export function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_LIMIT;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_LIMIT) {
    throw AdminError.invalid('limit', `limit must be a whole number between 1 and ${MAX_LIMIT}`);
  }
  return Number(raw);
}

/** The cursor is the sort key of the last item, opaque to callers. */
export function decodeCursor(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const key = Buffer.from(raw, 'base64url').toString('utf8');
  if (key === '' || key.includes('\0') || Buffer.from(key, 'utf8').toString('base64url') !== raw) throw AdminError.invalid('cursor', 'cursor is not one this API returned');
  return key;
}

/** Fetches one more than the limit to learn whether another page follows. */
export function page<T>(rows: T[], limit: number, keyOf: (row: T) => string, present: (row: T) => unknown): Page<unknown> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return {
    items: items.map(present),
    next_cursor: rows.length > limit && last !== undefined ? Buffer.from(keyOf(last), 'utf8').toString('base64url') : null,
  };
}

/** A single query-string value; a repeated one is an error rather than a guess. */
export function queryValue(query: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = query[name];
  if (Array.isArray(value)) throw AdminError.invalid(name, `${name} must not be repeated`);
  // No stored value holds a NUL, and PostgreSQL refuses one in a query parameter.
  if (value?.includes('\0')) throw AdminError.invalid(name, `${name} must not contain NUL`);
  return value;
}
