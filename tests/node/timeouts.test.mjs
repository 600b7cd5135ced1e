// Timers of the call contract under short configured values: ring timeout (missed) and the
// reconnect grace period (rejoin with call:join, or leave when it expires).

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from '../lib/fixture.mjs';
import { fakeOffer } from '../lib/clients.mjs';
import { sleep } from '../lib/wait.mjs';

const GRACE_MS = 3000;
const h = useServer({
  args: ['--set', 'calls.ring_timeout=1s', '--set', `calls.reconnect_grace=${GRACE_MS}ms`],
});
const byCall = (callId) => (d) => d?.callId === callId;

it('an unanswered call ends as missed after the ring timeout', async () => {
  const alice = await h.user('Alice');
  const bob = await h.user('Bob');
  const a = await h.sio(alice, 'alice');
  const b1 = await h.sio(bob, 'bob#1');
  const b2 = await h.ws(bob, 'bob#2(ws)');
  const { callId } = await a.ack('call:initiate', { conversationId: 'c-miss', callType: 'video', participants: [bob.userId] });
  await b1.next('call:incoming', byCall(callId));
  await b2.next('call:incoming', byCall(callId));
  assert.deepEqual(await a.next('call:ended', byCall(callId), 4000), { callId, reason: 'missed' });
  for (const b of [b1, b2]) {
    const missed = await b.next('call:missed', byCall(callId), 4000);
    assert.deepEqual(missed.from, { userId: alice.userId, name: 'Alice' });
  }
});

it('a participant who drops can rejoin within the grace period with call:join', async () => {
  const alice = await h.user('Alice');
  const bob = await h.user('Bob');
  const a = await h.sio(alice, 'alice');
  const b = await h.sio(bob, 'bob');
  const { callId } = await a.ack('call:initiate', { conversationId: 'c-grace', callType: 'audio', participants: [bob.userId] });
  await b.next('call:incoming', byCall(callId));
  assert.equal((await b.ack('call:accept', { callId })).callId, callId);
  await a.next('call:accepted', byCall(callId));

  b.close(); // page reload
  const closedAt = Date.now();
  // The old page is gone before the new one connects, as in a browser: the server has taken
  // its departure (Alice, who shares the call, sees Bob go offline) before the reload connects.
  await a.next('user:offline', (d) => d?.userId === bob.userId);
  const b2 = await h.ws(bob, 'bob(reloaded)');
  const resumable = await b2.next('call:resumable', byCall(callId));
  assert.equal(resumable.conversationId, 'c-grace');
  assert.equal(resumable.callType, 'audio');
  assert.ok(resumable.participants.some((p) => p.userId === alice.userId));
  const join = await b2.ack('call:join', { callId });
  assert.equal(join.error, undefined, JSON.stringify(join));
  assert.equal(join.data.callId, callId);
  // back in: signaling flows both ways again
  a.emit('offer', { callId, targetUserId: bob.userId, offer: fakeOffer });
  assert.equal((await b2.next('offer', byCall(callId))).from, alice.userId);
  // and the grace timer no longer applies: a timer that must not fire cannot be awaited, so wait
  // out its deadline (3 s after the server saw the close, which was after closedAt; 500 ms to
  // spare), then the barrier delivers anything it sent
  await sleep(closedAt + GRACE_MS + 500 - Date.now());
  await a.none('call:ended', byCall(callId));
  a.emit('call:end', { callId });
  await b2.next('call:ended', byCall(callId));
});

it('a participant who does not come back within the grace period leaves; the 1:1 call ends', async () => {
  const alice = await h.user('Alice');
  const bob = await h.user('Bob');
  const a = await h.sio(alice, 'alice');
  const b = await h.sio(bob, 'bob');
  const { callId } = await a.ack('call:initiate', { conversationId: 'c-gone', callType: 'audio', participants: [bob.userId] });
  await b.next('call:incoming', byCall(callId));
  await b.ack('call:accept', { callId });
  await a.next('call:accepted', byCall(callId));
  b.close();
  const ended = await a.next('call:ended', byCall(callId), 10000);
  assert.equal(ended.callId, callId);
  assert.equal(ended.reason, 'failed', JSON.stringify(ended)); // EndReason::Failed: lost beyond the grace period
});
