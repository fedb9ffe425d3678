/**
 * Client records, cached: a client's row and the secret rows presented for it, kept in memory so
 * that a token or introspection request for a known client usually makes no query.
 *
 * Records stay until something changes. Triggers move a counter with every committed change to a
 * client or a secret, whoever makes it (migrations/…-0007-clients-version.ts); once per TTL the
 * cache reads the counter, one query whatever the number of clients, and forgets every record
 * when it moved. A change made through the client service also invalidates the client at once in
 * this process and, on PostgreSQL, in every instance (client-changes.ts); any other change (the
 * CLI on a SQLite file, an operator's SQL) applies within the TTL.
 * Unknown clients and unknown secret ids are never cached, so an attacker cannot fill the cache,
 * and the number of clients kept is bounded (the least recently used goes first).
 */
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import type { Client } from './client.js';
import { clientsVersion, findClient, findSecret } from './client.repository.js';
import type { ClientSecretRow } from './client.table.js';

interface Entry {
  readonly client: Client;
  readonly secrets: Map<string, ClientSecretRow>;
}

export interface ClientRecordOptions {
  /** Milliseconds between checks of the change counter; 0 reads the database every time. */
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
  /** The change counter as last read, and when that read began. */
  #checked: { readonly version: number; readonly at: number } | undefined;
  /** The counter read under way, shared by the requests that need it. */
  #checking: Promise<void> | undefined;

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
    const caching = this.options.ttlMs > 0;
    if (caching) await this.#upToDate();
    const hit = this.#entries.get(clientId);
    if (hit) {
      // Map iteration order is insertion order: re-inserting marks it most recently used.
      this.#entries.delete(clientId);
      this.#entries.set(clientId, hit);
      return hit;
    }
    const generation = this.#generation;
    const client = await findClient(this.db, clientId);
    if (!client) return undefined;
    const entry: Entry = { client, secrets: new Map() };
    if (caching && generation === this.#generation) {
      this.#entries.set(clientId, entry);
      while (this.#entries.size > this.options.maxEntries) this.#entries.delete(this.#entries.keys().next().value as string);
    }
    return entry;
  }

  /** Forgets every record if the change counter moved since it was read, at most once per TTL. */
  async #upToDate(): Promise<void> {
    const now = this.options.clock.now();
    // A clock stepped back (NTP, a resumed VM) reads the counter now, not once it has caught up.
    if (this.#checked !== undefined && now >= this.#checked.at && now - this.#checked.at < this.options.ttlMs) return;
    this.#checking ??= (async () => {
      try {
        const version = await clientsVersion(this.db);
        if (version !== this.#checked?.version) this.clear();
        this.#checked = { version, at: now };
      } finally {
        this.#checking = undefined;
      }
    })();
    await this.#checking;
  }
}
