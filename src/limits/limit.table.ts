/** Limit state shared by instances on PostgreSQL (shared.ts). */
export interface LimitFailureTable {
  /** `client:` or `address:`, then the SHA-256 (base64url) of the presented client_id or address. */
  key: string;
  /** Failed authentications since the window last restarted. */
  failures: number;
  last_failure_ms: number;
}

export interface TokenBucketTable {
  client_id: string;
  tokens: number;
  updated_ms: number;
  admitted: number;
}
