// Token refusal before the session starts: socket.io `connect_error` whose message is the code,
// and HTTP 401 with {code, message} before the raw WebSocket upgrade.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from '../lib/fixture.mjs';
import { connectSocketIo, connectWs } from '../lib/clients.mjs';
import { signHs256 } from '../lib/server.mjs';

const h = useServer();
const now = () => Math.floor(Date.now() / 1000);

/** Connects with socket.io-client and returns the connect_error message (the code). */
async function refusal(auth) {
  try {
    const c = await connectSocketIo(h.server.url, undefined, { auth, label: 'refused' });
    c.close();
  } catch (err) {
    return err.message;
  }
  assert.fail(`connection with ${JSON.stringify(auth)} should have been refused`);
}

async function wsRefusal(token) {
  try {
    const c = await connectWs(h.server.wsUrl, token, { label: 'refused' });
    c.close();
  } catch (err) {
    return err;
  }
  assert.fail('raw WebSocket connection should have been refused');
}

describe('socket.io connect_error codes', () => {
  it('missing token -> token_missing', async () => {
    assert.equal(await refusal({}), 'token_missing');
  });

  it('token signed with another secret -> token_bad_signature', async () => {
    const token = signHs256({ sub: 'mallory', name: 'M', exp: now() + 3600 }, 'x'.repeat(64));
    assert.equal(await refusal({ token }), 'token_bad_signature');
  });

  it('expired token (minted here with the dev secret) -> token_expired', async () => {
    const secret = await h.server.devSecret();
    // Sanity: the same recipe with a future exp is accepted, so only `exp` differs.
    const good = signHs256({ sub: 'self-minted', name: 'Self', iat: now(), exp: now() + 600 }, secret);
    const c = await connectSocketIo(h.server.url, good, { label: 'self-minted' });
    c.close();
    const expired = signHs256({ sub: 'self-minted', name: 'Self', iat: now() - 7200, exp: now() - 3600 }, secret);
    assert.equal(await refusal({ token: expired }), 'token_expired');
  });

  it('garbage and alg=none tokens -> token_invalid', async () => {
    assert.equal(await refusal({ token: 'not-a-jwt' }), 'token_invalid');
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'mallory', exp: now() + 3600 })}.`;
    assert.equal(await refusal({ token: none }), 'token_invalid');
  });

  it('a token without exp is refused', async () => {
    const secret = await h.server.devSecret();
    const noExp = signHs256({ sub: 'forever', name: 'F' }, secret);
    assert.equal(await refusal({ token: noExp }), 'token_invalid');
  });
});

describe('raw WebSocket refusals are HTTP 401 before the upgrade', () => {
  it('missing token', async () => {
    const err = await wsRefusal(undefined);
    assert.equal(err.status, 401);
    assert.equal(err.body.code, 'token_missing');
    assert.equal(typeof err.body.message, 'string');
  });

  it('expired token', async () => {
    const secret = await h.server.devSecret();
    const expired = signHs256({ sub: 'x', name: 'X', exp: now() - 3600 }, secret);
    const err = await wsRefusal(expired);
    assert.equal(err.status, 401);
    assert.equal(err.body.code, 'token_expired');
  });

  it('bad signature', async () => {
    const err = await wsRefusal(signHs256({ sub: 'x', exp: now() + 60 }, 'y'.repeat(64)));
    assert.equal(err.status, 401);
    assert.equal(err.body.code, 'token_bad_signature');
  });
});
