/**
 * Client records, cached: a client's row and the secret rows presented for it, kept for a short
 * TTL so that a token or introspection request for a known client usually makes no query.
 *
 * A change made through the client service invalidates the client at once in this process and, on
 * PostgreSQL, in every instance (client-changes.ts); a change another process makes to a SQLite
 * file (the CLI) applies within the TTL, which is also the backstop for a lost notification.
 * Unknown clients and unknown secret ids are never cached, so an attacker cannot fill the cache,
 * and the number of clients kept is bounded (the least recently used goes first).
 */
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import type { Client } from './client.js';
import { findClient, findSecret } from './client.repository.js';
import type { ClientSecretRow } from './client.table.js';

interface Entry {
  readonly client: Client;
  readonly secrets: Map<string, ClientSecretRow>;
  readonly expiresAt: number;
}

export interface ClientRecordOptions {
  /** Milliseconds a record stays cached; 0 reads the database every time. */
  readonly ttlMs: number;
  readonly maxEntries: number;
  readonly clock: Clock;
}

/** The server's cache, sized like the verified-credential cache. */
export function clientRecords(db: Db, config: Pick<Config, 'clientCacheTtl' | 'credentialCacheSize'>, clock: Clock): ClientRecords {
  return new ClientRecords(db, { ttlMs: config.clientCacheTtl * 1000, maxEntries: config.credentialCacheSize, clock });
}

export class ClientRecords {
  readonly #entries = new Map<string, Entry>();
  /** Bumped by every invalidation: a read that started before one must not cache what it read. */
  #generation = 0;

  constructor(
    private readonly db: Db,
    private readonly options: ClientRecordOptions,
  ) {}

  async client(clientId: string): Promise<Client | undefined> {
    return (await this.#entry(clientId))?.client;
  }

  /** One of the client's secrets, by its id; undefined when the client or the secret is unknown. */
  async secret(clientId: string, secretId: string): Promise<ClientSecretRow | undefined> {
    const entry = await this.#entry(clientId);
    if (!entry) return undefined;
    const cached = entry.secrets.get(secretId);
    if (cached) return cached;
    if (secretId.includes('\0')) return undefined;
    const generation = this.#generation;
    const secret = await findSecret(this.db, clientId, secretId);
    if (secret && generation === this.#generation) entry.secrets.set(secretId, secret);
    return secret;
  }

  /** Forgets the client and its secrets: call after any change to either. */
  invalidate(clientId: string): void {
    this.#generation += 1;
    this.#entries.delete(clientId);
  }

  /** Forgets every client: after notifications may have been missed. */
  clear(): void {
    this.#generation += 1;
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }

  async #entry(clientId: string): Promise<Entry | undefined> {
    // No client id holds a NUL (PostgreSQL text cannot), so there is nothing to look up.
    if (clientId.includes('\0')) return undefined;
    const now = this.options.clock.now();
    const hit = this.#entries.get(clientId);
    if (hit && hit.expiresAt > now) {
      // Map iteration order is insertion order: re-inserting marks it most recently used.
      this.#entries.delete(clientId);
      this.#entries.set(clientId, hit);
      return hit;
    }
    if (hit) this.#entries.delete(clientId);
    const generation = this.#generation;
    const client = await findClient(this.db, clientId);
    if (!client) return undefined;
    const entry: Entry = { client, secrets: new Map(), expiresAt: now + this.options.ttlMs };
    if (this.options.ttlMs > 0 && generation === this.#generation) {
      this.#entries.delete(clientId);
      this.#entries.set(clientId, entry);
      while (this.#entries.size > this.options.maxEntries) this.#entries.delete(this.#entries.keys().next().value as string);
    }
    return entry;
  }
}
