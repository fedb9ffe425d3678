/** `revoked_tokens`: the revocation list by jti, each row kept until the token's own expiry. */
export interface RevokedTokenTable {
  jti: string;
  /** The client the token was issued to. */
  client_id: string;
  /** The token's exp (epoch seconds): after it the row is pruned. */
  expires_at: number;
  revoked_at: number;
}
