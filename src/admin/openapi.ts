/**
 * The admin API's OpenAPI 3.1 document, served at /admin/openapi.json. Tests validate real
 * responses against these schemas and check that every admin route is described, so it cannot
 * drift from the code.
 */
const string = { type: 'string' } as const;
const nullableString = { type: ['string', 'null'] } as const;
const dateTime = { type: 'string', format: 'date-time' } as const;
const nullableDateTime = { type: ['string', 'null'], format: 'date-time' } as const;
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: object) => ({ content: { 'application/json': { schema } } });

const errorResponses = {
  '400': { description: 'Invalid request; `field` names the offending field', ...json(ref('Error')) },
  '401': { description: 'Missing or invalid bearer token (RFC 6750 invalid_token)', ...json(ref('Error')) },
  '403': { description: 'The token lacks the required scope (RFC 6750 insufficient_scope)', ...json(ref('Error')) },
};
const notFound = { '404': { description: 'No such resource', ...json(ref('Error')) } };
/** Every operation that reads a JSON body (read-json.ts). */
const bodyErrors = {
  '413': { description: 'Body too large: ADMIN_BODY_LIMIT, or 1 KiB for a key rotation (invalid_request)', ...json(ref('Error')) },
  '415': { description: 'Body is not application/json (unsupported_media_type)', ...json(ref('Error')) },
};
/** Operations that hash a new secret with argon2: refused at once when its queue is full. */
const overloaded = {
  '503': { description: 'Too much argon2 work waiting (temporarily_unavailable); retry after Retry-After', headers: { 'Retry-After': { schema: string } }, ...json(ref('Error')) },
};
const clientIdParam = { name: 'client_id', in: 'path', required: true, schema: string };
const pageParams = [
  { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } },
  { name: 'cursor', in: 'query', schema: string, description: 'next_cursor of the previous page' },
];
const read = [{ bearer: ['admin:read'] }];
const write = [{ bearer: ['admin:write'] }];

const clientSettings = {
  client_name: { type: 'string', minLength: 1, maxLength: 200 },
  description: { type: ['string', 'null'], maxLength: 1000 },
  scope: { type: 'string', description: 'Space-separated scopes the client may request' },
  default_scope: { type: 'string', description: 'Space-separated scopes granted when a request names none' },
  audience: { type: 'array', items: { type: 'string', format: 'uri' }, description: 'Audiences (RFC 8707 resources) the client may request' },
  default_audience: { type: ['string', 'null'], format: 'uri' },
  introspection_audiences: { type: 'array', items: string, description: 'Audiences whose tokens the client may introspect and revoke, or ["*"]' },
  grant_types: { type: 'array', items: { enum: ['client_credentials'] } },
  token_endpoint_auth_method: { enum: ['client_secret_basic', 'client_secret_post'] },
  access_token_ttl: { type: ['integer', 'null'], minimum: 60, description: 'Seconds; null means ACCESS_TOKEN_TTL' },
  token_rate_limit: { type: ['integer', 'null'], minimum: 0, description: 'Tokens per minute; null means TOKEN_RATE_LIMIT, 0 no limit' },
  enabled: { type: 'boolean', description: 'Changing it (either way) also revokes every token issued to the client so far' },
};
const clientProperties = {
  client_id: string,
  ...clientSettings,
  created_at: dateTime,
  updated_at: dateTime,
};

const keyProperties = {
  kid: { type: 'string', description: 'RFC 7638 thumbprint' },
  state: { enum: ['next', 'active', 'retired', 'revoked'] },
  created_at: dateTime,
  activate_after: { ...nullableDateTime, description: 'A next key signs from this time' },
  activated_at: nullableDateTime,
  retired_at: nullableDateTime,
  revoked_at: nullableDateTime,
};

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Tessera admin API',
    version: '1',
    description:
      'Manage clients, secrets, tokens, the audit log and signing keys. Every request needs `Authorization: Bearer <access token>` issued by this server for the audience `<ISSUER>/admin`, with scope `admin:read` for reads and `admin:write` for writes.',
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error', 'error_description'],
        properties: { error: string, error_description: string, field: string },
        additionalProperties: false,
      },
      Client: { type: 'object', required: Object.keys(clientProperties), properties: clientProperties, additionalProperties: false },
      CreatedClient: {
        type: 'object',
        required: [...Object.keys(clientProperties), 'client_secret'],
        properties: { ...clientProperties, client_secret: { type: 'string', pattern: '^tsec_', description: 'Shown once' } },
        additionalProperties: false,
      },
      ClientCreate: {
        type: 'object',
        required: ['client_name'],
        properties: { client_id: { type: 'string', pattern: '^[A-Za-z0-9._~-]{3,128}$', description: 'not shaped like a client secret (tsec_…) or a JWT' }, ...clientSettings },
        additionalProperties: false,
      },
      ClientPatch: { type: 'object', properties: clientSettings, additionalProperties: false },
      ClientPage: {
        type: 'object',
        required: ['items', 'next_cursor'],
        properties: { items: { type: 'array', items: ref('Client') }, next_cursor: nullableString },
        additionalProperties: false,
      },
      RotatedSecret: {
        type: 'object',
        required: ['client_id', 'client_secret', 'previous_secret_expires_in'],
        properties: { client_id: string, client_secret: { type: 'string', pattern: '^tsec_' }, previous_secret_expires_in: { type: 'integer' } },
        additionalProperties: false,
      },
      SecretList: {
        type: 'object',
        required: ['items'],
        properties: {
          items: {
            type: 'array',
            items: {
              type: 'object',
              required: ['id', 'created_at', 'expires_at', 'last_used_at'],
              properties: { id: string, created_at: dateTime, expires_at: nullableDateTime, last_used_at: nullableDateTime },
              additionalProperties: false,
            },
          },
        },
        additionalProperties: false,
      },
      TokensRevoked: {
        type: 'object',
        required: ['client_id', 'tokens_revoked_before'],
        properties: { client_id: string, tokens_revoked_before: dateTime },
        additionalProperties: false,
      },
      AuditEvent: {
        type: 'object',
        required: ['id', 'occurred_at', 'type', 'outcome'],
        properties: {
          id: string,
          occurred_at: dateTime,
          type: string,
          outcome: { enum: ['success', 'failure'] },
          client_id: nullableString,
          remote_addr: nullableString,
          user_agent: nullableString,
          request_id: nullableString,
          requested_scope: nullableString,
          granted_scope: nullableString,
          audience: nullableString,
          jti: nullableString,
          token_expires_at: nullableDateTime,
          error: nullableString,
          reason: nullableString,
          details: { type: ['object', 'null'] },
        },
        additionalProperties: false,
      },
      AuditEventPage: {
        type: 'object',
        required: ['items', 'next_cursor'],
        properties: { items: { type: 'array', items: ref('AuditEvent') }, next_cursor: nullableString },
        additionalProperties: false,
      },
      Key: { type: 'object', required: Object.keys(keyProperties), properties: keyProperties, additionalProperties: false },
      KeyList: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('Key') } }, additionalProperties: false },
      Rotation: {
        type: 'object',
        required: [...Object.keys(keyProperties), 'pending_rotation'],
        properties: { ...keyProperties, pending_rotation: { type: 'boolean', description: 'A next key already existed; nothing was created' } },
        additionalProperties: false,
      },
    },
  },
  paths: {
    '/admin/clients': {
      get: {
        summary: 'List clients, ordered by client_id',
        security: read,
        parameters: [...pageParams, { name: 'name_prefix', in: 'query', schema: string }, { name: 'enabled', in: 'query', schema: { enum: ['true', 'false'] } }],
        responses: { '200': { description: 'A page of clients', ...json(ref('ClientPage')) }, ...errorResponses },
      },
      post: {
        summary: 'Create a client; the response alone carries its secret',
        security: write,
        requestBody: { required: true, ...json(ref('ClientCreate')) },
        responses: {
          '201': { description: 'Created', headers: { ETag: { schema: string } }, ...json(ref('CreatedClient')) },
          ...errorResponses,
          ...bodyErrors,
          ...overloaded,
          '409': { description: 'client_id taken (conflict)', ...json(ref('Error')) },
        },
      },
    },
    '/admin/clients/{client_id}': {
      parameters: [clientIdParam],
      get: {
        summary: 'Read a client',
        security: read,
        responses: { '200': { description: 'The client', headers: { ETag: { schema: string } }, ...json(ref('Client')) }, ...errorResponses, ...notFound },
      },
      patch: {
        summary: 'Update any subset of the settings; If-Match with the ETag read is required',
        security: write,
        parameters: [{ name: 'If-Match', in: 'header', required: true, schema: string }],
        requestBody: { required: true, ...json(ref('ClientPatch')) },
        responses: {
          '200': { description: 'The updated client', headers: { ETag: { schema: string } }, ...json(ref('Client')) },
          ...errorResponses,
          ...notFound,
          ...bodyErrors,
          '412': { description: 'The client changed since it was read', ...json(ref('Error')) },
          '428': { description: 'If-Match missing', ...json(ref('Error')) },
        },
      },
      delete: { summary: 'Delete a client and its secrets; its tokens become inactive', security: write, responses: { '204': { description: 'Deleted' }, ...errorResponses, ...notFound } },
    },
    '/admin/clients/{client_id}/secrets': {
      parameters: [clientIdParam],
      get: {
        summary: 'List the client’s secrets (never their hashes)',
        security: read,
        responses: { '200': { description: 'Secrets, newest first', ...json(ref('SecretList')) }, ...errorResponses, ...notFound },
      },
      post: {
        summary: 'Rotate: a new secret, shown once; the previous one works for previous_secret_expires_in seconds',
        security: write,
        requestBody: {
          required: false,
          ...json({ type: 'object', properties: { previous_secret_expires_in: { type: 'integer', minimum: 0, maximum: 31_536_000, default: 86400 } }, additionalProperties: false }),
        },
        responses: { '201': { description: 'The new secret', ...json(ref('RotatedSecret')) }, ...errorResponses, ...bodyErrors, ...overloaded, ...notFound },
      },
    },
    '/admin/clients/{client_id}/secrets/{secret_id}': {
      parameters: [clientIdParam, { name: 'secret_id', in: 'path', required: true, schema: string }],
      delete: { summary: 'Revoke one secret at once', security: write, responses: { '204': { description: 'Revoked' }, ...errorResponses, ...notFound } },
    },
    '/admin/clients/{client_id}/revoke-tokens': {
      parameters: [clientIdParam],
      post: {
        summary: 'Revoke every token of the client issued up to now',
        security: write,
        responses: { '200': { description: 'Revoked', ...json(ref('TokensRevoked')) }, ...errorResponses, ...notFound },
      },
    },
    '/admin/tokens/{jti}': {
      parameters: [{ name: 'jti', in: 'path', required: true, schema: string }],
      delete: { summary: 'Revoke one access token by its jti', security: write, responses: { '204': { description: 'Revoked' }, ...errorResponses, ...notFound } },
    },
    '/admin/audit-events': {
      get: {
        summary: 'The audit log, newest first',
        security: read,
        parameters: [
          ...pageParams,
          { name: 'client_id', in: 'query', schema: string },
          { name: 'type', in: 'query', schema: string },
          { name: 'outcome', in: 'query', schema: { enum: ['success', 'failure'] } },
          { name: 'since', in: 'query', schema: dateTime, description: 'RFC 3339, inclusive' },
          { name: 'until', in: 'query', schema: dateTime, description: 'RFC 3339, exclusive' },
        ],
        responses: { '200': { description: 'A page of events', ...json(ref('AuditEventPage')) }, ...errorResponses },
      },
    },
    '/admin/audit-events/{id}': {
      parameters: [{ name: 'id', in: 'path', required: true, schema: string }],
      get: { summary: 'One audit event', security: read, responses: { '200': { description: 'The event', ...json(ref('AuditEvent')) }, ...errorResponses, ...notFound } },
    },
    '/admin/keys': {
      get: { summary: 'Signing keys: kid, state and times (never key material)', security: read, responses: { '200': { description: 'Keys', ...json(ref('KeyList')) }, ...errorResponses } },
    },
    '/admin/keys/rotate': {
      post: {
        summary: 'Rotate: a next key, published at once, signing after JWKS_MAX_AGE; {"now": true} promotes it at once',
        security: write,
        requestBody: { required: false, ...json({ type: 'object', properties: { now: { type: 'boolean', default: false } }, additionalProperties: false }) },
        responses: {
          '201': { description: 'The next key (or, with now, the new active key)', ...json(ref('Rotation')) },
          '200': { description: 'A rotation was already pending; its next key', ...json(ref('Rotation')) },
          ...errorResponses,
          ...bodyErrors,
        },
      },
    },
    '/admin/keys/{kid}/revoke': {
      parameters: [{ name: 'kid', in: 'path', required: true, schema: string }],
      post: {
        summary: 'Emergency: remove the key from the JWKS at once, make its tokens inactive, and promote a replacement if it was signing',
        security: write,
        responses: { '200': { description: 'The revoked key (a tombstone)', ...json(ref('Key')) }, ...errorResponses, ...notFound },
      },
    },
  },
} as const;
