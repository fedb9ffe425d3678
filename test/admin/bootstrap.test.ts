import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { bootstrapAdmin } from '../../src/admin/bootstrap.js';
import { deleteClient } from '../../src/clients/client.service.js';
import { ISSUER, basic, startHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(() => h.close());

describe('bootstrapAdmin', () => {
  it('creates one admin client on an empty database, and never again', async () => {
    const created = await bootstrapAdmin({ ...h.service, actor: 'bootstrap' }, ISSUER);
    expect(created?.client).toMatchObject({ audiences: [`${ISSUER}/admin`], scopes: ['admin:read', 'admin:write'] });
    expect(await bootstrapAdmin({ ...h.service, actor: 'bootstrap' }, ISSUER)).toBeUndefined();
    await deleteClient(h.service, created!.client.clientId);
    expect(await bootstrapAdmin({ ...h.service, actor: 'bootstrap' }, ISSUER)).toBeUndefined();
  });

  it('creates nothing when clients already exist', async () => {
    await h.createClient({ client_name: 'first' });
    expect(await bootstrapAdmin({ ...h.service, actor: 'bootstrap' }, ISSUER)).toBeUndefined();
  });

  it('makes a client whose token opens the admin API', async () => {
    const created = await bootstrapAdmin({ ...h.service, actor: 'bootstrap' }, ISSUER);
    const token = await h.request.post('/oauth/token').type('form').set('Authorization', basic(created!.client.clientId, created!.clientSecret)).send('grant_type=client_credentials');
    expect(token.status).toBe(200);
    const res = await h.request.get('/admin/clients').set('Authorization', `Bearer ${token.body.access_token as string}`);
    expect(res.status).toBe(200);
    expect(res.body.items).toHaveLength(1);
  });
});
