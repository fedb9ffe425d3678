/** Validates real admin responses against the served OpenAPI document, so it cannot drift. */
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { expect } from 'vitest';

import { openApiDocument } from '../../src/admin/openapi.js';

// ajv-formats ships CommonJS; under NodeNext its function arrives as the module's `default`.
const addFormats = (addFormatsModule as unknown as { default: (ajv: Ajv2020) => Ajv2020 }).default;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: 'openapi', components: openApiDocument.components });

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: { 'application/json': { schema: object } } }> }>> };

/** Asserts that `body` with `status` is what the document promises for `method path`. */
export function expectConforms(method: string, path: string, status: number, body: unknown): void {
  const operation = (openApiDocument as unknown as Doc).paths[path]?.[method.toLowerCase()];
  expect(operation, `${method} ${path} is not in the OpenAPI document`).toBeDefined();
  const response = operation!.responses[String(status)];
  expect(response, `${method} ${path} does not document status ${status}`).toBeDefined();
  const schema = response!.content?.['application/json'].schema;
  if (!schema) return;
  const resolved = JSON.parse(JSON.stringify(schema).replaceAll('"#/components', '"openapi#/components')) as object;
  const validate = ajv.compile(resolved);
  expect(validate(body), JSON.stringify(validate.errors)).toBe(true);
}
