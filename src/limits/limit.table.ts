/** Limit state shared by instances on PostgreSQL (shared.ts). */
export interface LimitFailureTable {
  /** `client:` or `address:`, then the SHA-256 (base64url) of the presented client_id or address. */
  key: string;
  /** Failed authentications since the window began. */
  failures: number;
  /**
   * When the window began: the first failure after the previous window ended (backoff.ts). Named
   * when the window slid with each failure; kept, so instances of earlier versions still read it.
   */
  last_failure_ms: number;
}

export interface TokenBucketTable {
  client_id: string;
  tokens: number;
  updated_ms: number;
  admitted: number;
}
