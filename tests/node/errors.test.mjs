// Acks on success and failure, error codes for bad input, and unauthorized signaling, on both
// transports. Every failure is answered (ack and `error` event) and the connection carries on.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from '../lib/fixture.mjs';
import { fakeCandidate, fakeOffer } from '../lib/clients.mjs';

const h = useServer();
const byCall = (callId) => (d) => d?.callId === callId;

/** The error half of an ack on either transport ({error} for both framings). */
const errorOf = (ack) => ack?.error;
/** The success payload of an ack on either transport. */
const dataOf = (c, ack) => (c.kind === 'ws' ? ack.data : ack);

for (const transport of ['sio', 'ws']) {
  describe(`acks and error codes over ${transport === 'sio' ? 'socket.io-client' : 'raw WebSocket'}`, () => {
    it('acks success with the payload', async () => {
      const alice = await h.user('Alice');
      const bob = await h.user('Bob');
      const a = await h[transport](alice, 'alice');
      const ack = await a.ack('presence:subscribe', { userIds: [bob.userId] });
      assert.equal(errorOf(ack), undefined, JSON.stringify(ack));
      assert.equal(dataOf(a, ack).presences[0].userId, bob.userId);
      const init = await a.ack('call:initiate', {
        conversationId: 'c-ack',
        callType: 'audio',
        participants: [bob.userId],
      });
      assert.equal(errorOf(init), undefined, JSON.stringify(init));
      assert.equal(typeof dataOf(a, init).callId, 'string');
      const end = await a.ack('call:end', { callId: dataOf(a, init).callId });
      assert.equal(errorOf(end), undefined, JSON.stringify(end));
      // no error event was sent for any of them
      await a.none('error');
    });

    it('unknown event -> unknown_event (ack and error event), connection carries on', async () => {
      const alice = await h.user('Alice');
      const a = await h[transport](alice, 'alice');
      const ack = await a.ack('call:dance', { callId: 'x' });
      assert.equal(errorOf(ack)?.code, 'unknown_event', JSON.stringify(ack));
      assert.equal(typeof errorOf(ack).message, 'string');
      const ev = await a.next('error', (e) => e.code === 'unknown_event');
      assert.equal(ev.event, 'call:dance');
      assert.equal(typeof ev.message, 'string');
      const ok = await a.ack('activity:ping', {});
      assert.equal(errorOf(ok), undefined, JSON.stringify(ok));
    });

    it('invalid payloads -> invalid_payload', async () => {
      const alice = await h.user('Alice');
      const a = await h[transport](alice, 'alice');
      const cases = [
        ['call:accept', { callId: 5 }],
        ['call:accept', 'nope'],
        ['call:initiate', { conversationId: 'c', callType: 'hologram', participants: ['bob'] }],
        ['call:initiate', { conversationId: 'c', callType: 'video', participants: [] }],
        ['call:media-toggle', { callId: 'c', mediaType: 'smell', enabled: true }],
        ['offer', { callId: 'c', targetUserId: 'bob' }],
        ['user:status:update', { status: 'online', text: 42 }],
      ];
      for (const [event, data] of cases) {
        const ack = await a.ack(event, data);
        assert.equal(errorOf(ack)?.code, 'invalid_payload', `${event} ${JSON.stringify(data)} -> ${JSON.stringify(ack)}`);
        const ev = await a.next('error', (e) => e.event === event && e.code === 'invalid_payload');
        assert.equal(typeof ev.message, 'string');
      }
    });

    it('an unknown call -> not_found', async () => {
      const alice = await h.user('Alice');
      const a = await h[transport](alice, 'alice');
      const ack = await a.ack('call:accept', { callId: 'no-such-call' });
      assert.equal(errorOf(ack)?.code, 'not_found', JSON.stringify(ack));
    });

    it('failures without an ack still produce an error event', async () => {
      const alice = await h.user('Alice');
      const a = await h[transport](alice, 'alice');
      a.emit('call:end', { callId: 'no-such-call' });
      const ev = await a.next('error', (e) => e.event === 'call:end');
      assert.equal(ev.code, 'not_found');
    });
  });
}

describe('raw WebSocket framing errors', () => {
  it('malformed JSON -> malformed_frame; ack ids are echoed in error events', async () => {
    const alice = await h.user('Alice');
    const a = await h.ws(alice, 'alice');
    a.send('{not json');
    const ev = await a.next('error', (e) => e.code === 'malformed_frame');
    assert.equal(typeof ev.message, 'string');
    a.send(JSON.stringify({ data: {} })); // no event name
    await a.next('error', (e) => e.code === 'malformed_frame');

    const ack = await a.ack('call:accept', { callId: 7 });
    assert.equal(ack.error?.code, 'invalid_payload');
    assert.equal(typeof ack.ack, 'number');
    const withId = await a.next('error', (e) => e.event === 'call:accept');
    assert.equal(withId.id, ack.ack);

    const ok = await a.ack('activity:ping', {});
    assert.equal(ok.error, undefined, JSON.stringify(ok));
  });
});

describe('unauthorized signaling', () => {
  it('a third user cannot join, accept or signal in a call; nothing reaches the members', async () => {
    const alice = await h.user('Alice');
    const bob = await h.user('Bob');
    const mallory = await h.user('Mallory');
    const a = await h.sio(alice, 'alice');
    const b1 = await h.sio(bob, 'bob#1');
    const b2 = await h.sio(bob, 'bob#2');
    const m = await h.sio(mallory, 'mallory');
    const mw = await h.ws(mallory, 'mallory(ws)');

    const { callId } = await a.ack('call:initiate', {
      conversationId: 'c-auth',
      callType: 'video',
      participants: [bob.userId],
    });
    await b1.next('call:incoming', byCall(callId));
    await m.none('call:incoming');

    // while ringing: mallory cannot accept, and is told what a call that does not exist gets
    // (so nobody learns which call ids exist)
    const acc = await m.ack('call:accept', { callId });
    assert.equal(acc.error?.code, 'not_found', JSON.stringify(acc));
    const accErr = await m.next('error', (e) => e.event === 'call:accept');
    assert.equal(accErr.code, 'not_found');

    assert.equal(errorOf(await b1.ack('call:accept', { callId })), undefined);
    await a.next('call:accepted', byCall(callId));
    await a.next('call:participant:joined', byCall(callId));

    // mallory (both transports) cannot signal into the call, join it, toggle or share
    const attempts = [
      ['offer', { callId, targetUserId: alice.userId, offer: fakeOffer }],
      ['answer', { callId, targetUserId: bob.userId, answer: fakeOffer }],
      ['ice-candidate', { callId, targetUserId: alice.userId, candidate: fakeCandidate }],
      ['call:join', { callId }],
      ['call:media-toggle', { callId, mediaType: 'audio', enabled: false }],
      ['screen:share-start', { callId }],
      ['call:end', { callId }],
    ];
    for (const [event, data] of attempts) {
      const r1 = await m.ack(event, data);
      assert.equal(r1.error?.code, 'not_found', `sio ${event}: ${JSON.stringify(r1)}`);
      const r2 = await mw.ack(event, data);
      assert.equal(r2.error?.code, 'not_found', `ws ${event}: ${JSON.stringify(r2)}`);
    }

    // bob's second device never joined the call: it may not signal either
    const notJoined = await b2.ack('offer', { callId, targetUserId: alice.userId, offer: fakeOffer });
    assert.equal(notJoined.error?.code, 'invalid_state', JSON.stringify(notJoined));

    // members may not signal to someone outside the call
    const outside = await a.ack('offer', { callId, targetUserId: mallory.userId, offer: fakeOffer });
    assert.equal(outside.error?.code, 'forbidden', JSON.stringify(outside));

    // nothing leaked: no signaling and no state change reached anybody
    for (const c of [a, b1]) {
      for (const ev of ['offer', 'answer', 'ice-candidate', 'call:media-toggled', 'screen:share-started', 'call:ended', 'call:participant:joined']) {
        await c.none(ev);
      }
    }
    for (const c of [m, mw]) await c.none('offer');

    // and the call still works for its members
    a.emit('offer', { callId, targetUserId: bob.userId, offer: fakeOffer });
    assert.equal((await b1.next('offer', byCall(callId))).from, alice.userId);
    a.emit('call:end', { callId });
    await b1.next('call:ended', byCall(callId));
  });
});

describe('limits', () => {
  it('a burst above the event rate is refused with rate_limited; the connection and others carry on', async () => {
    const alice = await h.user('Alice');
    const bob = await h.user('Bob');
    const a = await h.ws(alice, 'alice(ws)');
    const b = await h.sio(bob, 'bob');
    const acks = await Promise.all(Array.from({ length: 150 }, () => a.ack('activity:ping', {})));
    const limited = acks.filter((x) => x.error?.code === 'rate_limited');
    assert.ok(limited.length > 0, 'some of 150 events in a burst should be rate limited');
    assert.ok(acks.filter((x) => !x.error).length > 0, 'events within the burst are served');
    await a.next('error', (e) => e.code === 'rate_limited');
    // others are unaffected, and the limited connection recovers
    assert.ok(Array.isArray((await b.ack('presence:subscribe', { userIds: [alice.userId] })).presences));
    await new Promise((r) => setTimeout(r, 1200));
    const later = await a.ack('activity:ping', {});
    assert.equal(later.error, undefined, JSON.stringify(later));
  });

  it('a raw WebSocket frame over 64 KiB closes the connection with 1009', async () => {
    const alice = await h.user('Alice');
    // Several times: the close code must not depend on timing inside the server.
    const codes = [];
    for (let i = 0; i < 20; i++) {
      const a = await h.ws(alice, `alice(ws)#${i}`);
      const closed = new Promise((r) => a.socket.once('close', (code) => r(code)));
      a.send(JSON.stringify({ event: 'activity:ping', data: { pad: 'x'.repeat(70 * 1024) } }));
      codes.push(await closed);
    }
    assert.deepEqual(codes, codes.map(() => 1009));
    // the server is fine: a new connection works
    const again = await h.ws(alice, 'alice(ws)#2');
    assert.equal((await again.ack('activity:ping', {})).error, undefined);
  });
});
