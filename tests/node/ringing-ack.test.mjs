// The official socket.io-client acking `call:incoming` confirms the ring: the caller hears
// `call:ringing`, whether the ack carries a value or nothing at all (`ack()`, sent as `31[]`).

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from '../lib/fixture.mjs';

const h = useServer();

/** Alice (raw WebSocket) calls Bob, whose socket.io-client answers `call:incoming` with `answer`. */
async function ring(answer) {
  const alice = await h.user('Alice');
  const bob = await h.user('Bob');
  const a = await h.ws(alice, 'alice(ws)');
  const b = await h.sio(bob, 'bob');
  b.socket.on('call:incoming', (_data, ack) => answer(ack));
  const init = await a.ack('call:initiate', {
    conversationId: 'conv-ring',
    callType: 'audio',
    participants: [bob.userId],
  });
  assert.equal(init.error, undefined, JSON.stringify(init));
  const { callId } = init.data;
  await b.next('call:incoming', (d) => d.callId === callId);
  return { a, b, callId, bob };
}

it('a bare ack() makes the caller hear call:ringing', async () => {
  const { a, callId, bob } = await ring((ack) => ack());
  assert.deepEqual(await a.next('call:ringing', (d) => d.callId === callId), {
    callId,
    userId: bob.userId,
  });
});

it('an ack carrying a value does the same', async () => {
  const { a, callId, bob } = await ring((ack) => ack({ ok: true }));
  assert.deepEqual(await a.next('call:ringing', (d) => d.callId === callId), {
    callId,
    userId: bob.userId,
  });
});

it('without an ack the caller hears no call:ringing', async () => {
  const { a, b, callId } = await ring(() => {});
  // Bob's side has sent whatever it was going to (nothing) before his barrier's ack; Alice's
  // barrier then shows nothing was relayed to her.
  await b.barrier();
  await a.none('call:ringing', (d) => d.callId === callId);
});
