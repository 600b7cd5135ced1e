// The seed client contract for 1:1 calls, driven by the official socket.io-client 4.x
// (and, in the mixed test, one side on the raw WebSocket transport).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from '../lib/fixture.mjs';
import { fakeAnswer, fakeCandidate, fakeOffer } from '../lib/clients.mjs';

const h = useServer();

const byCall = (callId) => (d) => d?.callId === callId;

describe('1:1 call over socket.io-client', () => {
  it('rings every device, relays signaling, toggles media and screen share, ends for both', async () => {
    const alice = await h.user('Alice');
    const bob = await h.user('Bob');
    const a = await h.sio(alice, 'alice');
    const b1 = await h.sio(bob, 'bob#1');
    const b2 = await h.sio(bob, 'bob#2');

    // initiate: acked with {callId, iceServers}, and call:initiated to the caller
    const initAck = await a.ack('call:initiate', {
      conversationId: 'conv-1',
      callType: 'video',
      participants: [bob.userId],
    });
    assert.equal(initAck.error, undefined, JSON.stringify(initAck));
    assert.equal(typeof initAck.callId, 'string');
    assert.ok(initAck.callId.length > 0);
    assert.ok(Array.isArray(initAck.iceServers));
    const callId = initAck.callId;
    const initiated = await a.next('call:initiated', byCall(callId));
    assert.deepEqual(initiated, { callId, iceServers: initAck.iceServers });

    // call:incoming on every device of the callee, never to the caller
    const expectedIncoming = {
      callId,
      from: { userId: alice.userId, name: 'Alice' },
      conversationId: 'conv-1',
      callType: 'video',
    };
    assert.deepEqual(await b1.next('call:incoming', byCall(callId)), expectedIncoming);
    assert.deepEqual(await b2.next('call:incoming', byCall(callId)), expectedIncoming);
    await a.none('call:incoming');

    // accept on device 1: ack with {callId, iceServers, participants}
    const acceptAck = await b1.ack('call:accept', { callId });
    assert.equal(acceptAck.error, undefined, JSON.stringify(acceptAck));
    assert.equal(acceptAck.callId, callId);
    assert.ok(Array.isArray(acceptAck.iceServers));
    assert.ok(Array.isArray(acceptAck.participants));
    assert.ok(
      acceptAck.participants.some((p) => p.userId === alice.userId && p.name === 'Alice'),
      `participants should list the caller: ${JSON.stringify(acceptAck.participants)}`,
    );

    // the caller learns who accepted; the other device stops ringing
    const accepted = await a.next('call:accepted', byCall(callId));
    assert.equal(accepted.userId, bob.userId);
    assert.ok(Array.isArray(accepted.iceServers));
    assert.deepEqual(await a.next('call:participant:joined', byCall(callId)), {
      callId,
      participant: { userId: bob.userId, name: 'Bob' },
    });
    assert.deepEqual(await b2.next('call:answered-elsewhere', byCall(callId)), { callId });
    await b1.none('call:answered-elsewhere');

    // offer / answer / candidates relayed with the sender as `from`, only to the joined device
    const offerAck = await a.ack('offer', { callId, targetUserId: bob.userId, offer: fakeOffer });
    assert.equal(offerAck.error, undefined, JSON.stringify(offerAck));
    assert.deepEqual(await b1.next('offer', byCall(callId)), { callId, from: alice.userId, offer: fakeOffer });

    const answerAck = await b1.ack('answer', { callId, targetUserId: alice.userId, answer: fakeAnswer });
    assert.equal(answerAck.error, undefined, JSON.stringify(answerAck));
    assert.deepEqual(await a.next('answer', byCall(callId)), { callId, from: bob.userId, answer: fakeAnswer });

    a.emit('ice-candidate', { callId, targetUserId: bob.userId, candidate: fakeCandidate });
    b1.emit('ice-candidate', { callId, targetUserId: alice.userId, candidate: { ...fakeCandidate, sdpMid: '1' } });
    assert.deepEqual(await b1.next('ice-candidate', byCall(callId)), {
      callId,
      from: alice.userId,
      candidate: fakeCandidate,
    });
    assert.deepEqual(await a.next('ice-candidate', byCall(callId)), {
      callId,
      from: bob.userId,
      candidate: { ...fakeCandidate, sdpMid: '1' },
    });
    // the device that did not answer gets none of the relayed signaling
    await b2.none('offer');
    await b2.none('ice-candidate');

    // media toggle
    const toggleAck = await b1.ack('call:media-toggle', { callId, mediaType: 'audio', enabled: false });
    assert.equal(toggleAck.error, undefined, JSON.stringify(toggleAck));
    assert.deepEqual(await a.next('call:media-toggled', byCall(callId)), {
      callId,
      userId: bob.userId,
      mediaType: 'audio',
      enabled: false,
    });
    a.emit('call:media-toggle', { callId, mediaType: 'video', enabled: false });
    assert.deepEqual(await b1.next('call:media-toggled', byCall(callId)), {
      callId,
      userId: alice.userId,
      mediaType: 'video',
      enabled: false,
    });

    // screen share start / stop
    const shareAck = await a.ack('screen:share-start', { callId });
    assert.equal(shareAck.error, undefined, JSON.stringify(shareAck));
    assert.deepEqual(await b1.next('screen:share-started', byCall(callId)), { callId, userId: alice.userId });
    a.emit('screen:share-stop', { callId });
    assert.deepEqual(await b1.next('screen:share-stopped', byCall(callId)), { callId, userId: alice.userId });

    // hang up: 1:1 call ends for both
    const endAck = await b1.ack('call:end', { callId });
    assert.equal(endAck.error, undefined, JSON.stringify(endAck));
    assert.deepEqual(await a.next('call:ended', byCall(callId)), { callId, reason: 'ended' });
    assert.deepEqual(await b1.next('call:ended', byCall(callId)), { callId, reason: 'ended' });

    // signaling in an ended call is refused with a code
    const late = await a.ack('offer', { callId, targetUserId: bob.userId, offer: fakeOffer });
    assert.ok(late.error, `offer after end should fail: ${JSON.stringify(late)}`);
    assert.ok(['invalid_state', 'not_found'].includes(late.error.code), JSON.stringify(late));
  });

  it('rejection ends the call as rejected for the caller', async () => {
    const alice = await h.user('Alice');
    const bob = await h.user('Bob');
    const a = await h.sio(alice, 'alice');
    const b1 = await h.sio(bob, 'bob#1');
    const b2 = await h.sio(bob, 'bob#2');

    const { callId } = await a.ack('call:initiate', {
      conversationId: 'conv-2',
      callType: 'audio',
      participants: [bob.userId],
    });
    assert.equal(typeof callId, 'string');
    const incoming = await b1.next('call:incoming', byCall(callId));
    assert.equal(incoming.callType, 'audio');
    await b2.next('call:incoming', byCall(callId));

    const rejectAck = await b2.ack('call:reject', { callId });
    assert.equal(rejectAck.error, undefined, JSON.stringify(rejectAck));
    assert.deepEqual(await a.next('call:rejected', byCall(callId)), { callId, userId: bob.userId });
    assert.deepEqual(await a.next('call:ended', byCall(callId)), { callId, reason: 'rejected' });

    // the call is over: accepting it now fails with a code, on the other device too
    const lateAccept = await b1.ack('call:accept', { callId });
    assert.ok(lateAccept.error, `accept after reject should fail: ${JSON.stringify(lateAccept)}`);
    assert.ok(['invalid_state', 'not_found'].includes(lateAccept.error.code), JSON.stringify(lateAccept));
    const err = await b1.next('error', (e) => e.event === 'call:accept');
    assert.equal(err.code, lateAccept.error.code);
  });

  it('the caller can cancel a ringing call', async () => {
    const alice = await h.user('Alice');
    const bob = await h.user('Bob');
    const a = await h.sio(alice, 'alice');
    const b = await h.sio(bob, 'bob');
    const { callId } = await a.ack('call:initiate', {
      conversationId: 'conv-3',
      callType: 'video',
      participants: [bob.userId],
    });
    await b.next('call:incoming', byCall(callId));
    const endAck = await a.ack('call:end', { callId });
    assert.equal(endAck.error, undefined, JSON.stringify(endAck));
    const ended = await a.next('call:ended', byCall(callId));
    assert.equal(ended.callId, callId);
    // the callee stops ringing: it hears about the end (ended or missed)
    const stopped = await Promise.race([
      b.next('call:ended', byCall(callId)).then((d) => ['call:ended', d]),
      b.next('call:missed', byCall(callId)).then((d) => ['call:missed', d]),
    ]);
    assert.equal(stopped[1].callId, callId);
  });
});

describe('mixed transports', () => {
  it('a socket.io caller and a raw WebSocket callee complete a call', async () => {
    const alice = await h.user('Alice');
    const bob = await h.user('Bob');
    const a = await h.sio(alice, 'alice(sio)');
    const b = await h.ws(bob, 'bob(ws)');

    const init = await a.ack('call:initiate', {
      conversationId: 'conv-mixed',
      callType: 'video',
      participants: [bob.userId],
    });
    const { callId } = init;
    assert.equal(typeof callId, 'string', JSON.stringify(init));
    assert.deepEqual(await b.next('call:incoming', byCall(callId)), {
      callId,
      from: { userId: alice.userId, name: 'Alice' },
      conversationId: 'conv-mixed',
      callType: 'video',
    });

    // raw WS ack framing: {ack: id, data}
    const accept = await b.ack('call:accept', { callId });
    assert.equal(accept.error, undefined, JSON.stringify(accept));
    assert.equal(accept.data.callId, callId);
    assert.ok(Array.isArray(accept.data.iceServers));
    assert.ok(accept.data.participants.some((p) => p.userId === alice.userId));
    assert.equal((await a.next('call:accepted', byCall(callId))).userId, bob.userId);

    a.emit('offer', { callId, targetUserId: bob.userId, offer: fakeOffer });
    assert.deepEqual(await b.next('offer', byCall(callId)), { callId, from: alice.userId, offer: fakeOffer });
    const ans = await b.ack('answer', { callId, targetUserId: alice.userId, answer: fakeAnswer });
    assert.equal(ans.error, undefined, JSON.stringify(ans));
    assert.deepEqual(await a.next('answer', byCall(callId)), { callId, from: bob.userId, answer: fakeAnswer });
    b.emit('ice-candidate', { callId, targetUserId: alice.userId, candidate: fakeCandidate });
    assert.deepEqual(await a.next('ice-candidate', byCall(callId)), {
      callId,
      from: bob.userId,
      candidate: fakeCandidate,
    });
    a.emit('ice-candidate', { callId, targetUserId: bob.userId, candidate: fakeCandidate });
    assert.deepEqual(await b.next('ice-candidate', byCall(callId)), {
      callId,
      from: alice.userId,
      candidate: fakeCandidate,
    });

    b.emit('call:media-toggle', { callId, mediaType: 'video', enabled: false });
    assert.deepEqual(await a.next('call:media-toggled', byCall(callId)), {
      callId,
      userId: bob.userId,
      mediaType: 'video',
      enabled: false,
    });
    b.emit('screen:share-start', { callId });
    assert.deepEqual(await a.next('screen:share-started', byCall(callId)), { callId, userId: bob.userId });

    a.emit('call:end', { callId });
    assert.deepEqual(await a.next('call:ended', byCall(callId)), { callId, reason: 'ended' });
    assert.deepEqual(await b.next('call:ended', byCall(callId)), { callId, reason: 'ended' });
  });
});
