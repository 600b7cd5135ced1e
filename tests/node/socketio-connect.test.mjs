// An event emitted the moment socket.io-client reports `connect` must be handled like any other:
// real apps emit right away (presence:subscribe, call:join after a reload). Many short
// connections make a lost first event visible deterministically rather than as a rare flake.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from '../lib/fixture.mjs';
import { connectSocketIo, connectWs } from '../lib/clients.mjs';

const h = useServer();
const CONNECTIONS = 400;
const BATCH = 1; // one at a time: the race is between CONNECT and the handler registration

it(`the first event after connect is acked (${CONNECTIONS} fresh connections)`, async () => {
  const user = await h.user('Eager');
  let lost = 0;
  for (let i = 0; i < CONNECTIONS; i += BATCH) {
    await Promise.all(
      Array.from({ length: BATCH }, async () => {
        const c = await connectSocketIo(h.server.url, user.token, { label: 'eager' });
        try {
          const ack = await c.ack('presence:subscribe', { userIds: [user.userId] }, 1000);
          assert.ok(Array.isArray(ack.presences), JSON.stringify(ack));
        } catch (e) {
          if (!/no ack/.test(e.message)) throw e;
          lost++;
        } finally {
          c.close();
        }
      }),
    );
  }
  assert.equal(lost, 0, `${lost} of ${CONNECTIONS} first events got no ack`);
});

it('the same holds on the raw WebSocket transport (100 fresh connections)', async () => {
  const user = await h.user('Eager');
  for (let i = 0; i < 100; i++) {
    const c = await connectWs(h.server.wsUrl, user.token, { label: 'eager(ws)' });
    try {
      const ack = await c.ack('presence:subscribe', { userIds: [user.userId] }, 1000);
      assert.ok(Array.isArray(ack.data?.presences), JSON.stringify(ack));
    } finally {
      c.close();
    }
  }
});
