/**
 * Audit rows for refused requests, aggregated: the first refusal of each key (a client_id or an
 * address) in every period gets its own row, like any failed request; the rest are counted, and
 * one `limit.refused` row per key and period records how many there were. A client hammering a
 * limit therefore cannot flood the audit log, and nothing it did goes unrecorded.
 */
import { auditEvent, scrub, type AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';

/** What is limited, and by whom: the client_id presented, or the source address. */
export interface RefusalKey {
  readonly kind: 'client_id' | 'address';
  readonly value: string;
  readonly reason: string;
}

interface Counted {
  readonly key: RefusalKey;
  count: number;
  readonly sinceMs: number;
}

/** A request refused because the argon2 queue is full: a flood is aggregated per source address (its unit, limits/index.ts addressUnit). */
export const overloadRefusal = (addressUnit: string): RefusalKey => ({ kind: 'address', value: addressUnit, reason: 'overloaded' });

// Refusals of keys beyond the bound on distinct keys per period share one summary row.
const OVERFLOW: RefusalKey = { kind: 'address', value: '*', reason: 'many_keys' };

export class Refusals {
  #counted = new Map<string, Counted>();
  #overflow: Counted | undefined;

  constructor(
    private readonly auditLog: AuditLog,
    private readonly clock: Clock,
    /** Distinct keys remembered per period. */
    private readonly maxKeys = 10_000,
  ) {}

  /** True when this refusal should get its own audit row; otherwise it is counted for the summary. */
  admit(presented: RefusalKey): boolean {
    // A presented client_id may be 16 KiB long; the audit row keeps 256 characters of it anyway.
    const key = { ...presented, value: presented.value.slice(0, 256) };
    const id = `${key.kind}\u0000${key.value}\u0000${key.reason}`;
    const counted = this.#counted.get(id);
    if (counted) {
      counted.count += 1;
      return false;
    }
    if (this.#counted.size >= this.maxKeys) {
      this.#overflow ??= { key: OVERFLOW, count: 0, sinceMs: this.clock.now() };
      this.#overflow.count += 1;
      return false;
    }
    this.#counted.set(id, { key, count: 0, sinceMs: this.clock.now() });
    return true;
  }

  /** Writes one summary row per key refused more than once since the last flush. */
  async flush(): Promise<void> {
    const counted = [...this.#counted.values(), ...(this.#overflow ? [this.#overflow] : [])].filter((c) => c.count > 0);
    this.#counted = new Map();
    this.#overflow = undefined;
    await Promise.all(
      counted.map(({ key, count, sinceMs }) =>
        this.auditLog.record(
          auditEvent({
            type: 'limit.refused',
            outcome: 'failure',
            // As presented: a workload that swapped client_id and secret must not get its secret recorded.
            client_id: key.kind === 'client_id' ? scrub(key.value) : null,
            remote_addr: key.kind === 'address' ? scrub(key.value, 64) : null,
            reason: key.reason,
            details: { refused: count, since: new Date(sinceMs).toISOString() },
          }),
        ),
      ),
    );
  }

  /** Flushes every `periodMs`; the returned function stops and flushes one last time. */
  start(periodMs: number, onError: (err: unknown) => void): () => Promise<void> {
    const timer = setInterval(() => void this.flush().catch(onError), periodMs);
    timer.unref();
    return () => {
      clearInterval(timer);
      return this.flush();
    };
  }
}
