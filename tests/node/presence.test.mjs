// Presence through socket.io-client: subscribe, online/offline, status with text, and privacy
// (presence is never broadcast to sockets that did not ask and share no call).

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from '../lib/fixture.mjs';
import { eventually } from '../lib/wait.mjs';

// These flows watch users they share no call with, which only `presence.visibility =
// "everyone"` allows; the other modes are tested in tests/server/policy.rs.
const h = useServer({ args: ['--set', 'presence.visibility=everyone'] });

const about = (userId) => (d) => d?.userId === userId;
const PRESENCE_EVENTS = ['user:online', 'user:offline', 'presence:changed'];

it('subscribers see online, status text and offline; unrelated sockets see nothing', async () => {
  const alice = await h.user('Alice');
  const bob = await h.user('Bob');
  const carol = await h.user('Carol');
  const b = await h.sio(bob, 'bob');
  const c = await h.sio(carol, 'carol');

  // subscribe while alice is offline: the ack lists her current presence
  const sub = await b.ack('presence:subscribe', { userIds: [alice.userId] });
  assert.equal(sub.error, undefined, JSON.stringify(sub));
  assert.ok(Array.isArray(sub.presences), JSON.stringify(sub));
  assert.equal(sub.presences.length, 1);
  assert.equal(sub.presences[0].userId, alice.userId);
  assert.equal(sub.presences[0].status, 'offline');
  assert.ok('lastSeenAt' in sub.presences[0], JSON.stringify(sub.presences[0]));

  // alice comes online
  const a = await h.sio(alice, 'alice');
  assert.deepEqual(await b.next('user:online', about(alice.userId)), {
    userId: alice.userId,
    username: 'Alice',
  });

  // a status with custom text
  const upd = await a.ack('user:status:update', { status: 'busy', text: 'In a meeting ☕' });
  assert.equal(upd.error, undefined, JSON.stringify(upd));
  const changed = await b.next('presence:changed', (d) => d.userId === alice.userId && d.status === 'busy');
  assert.equal(changed.text, 'In a meeting ☕');
  assert.equal(typeof changed.lastSeenAt, 'string');
  assert.ok(!Number.isNaN(Date.parse(changed.lastSeenAt)), changed.lastSeenAt);

  // the current presence as a fresh subscription reports it
  const again = await b.ack('presence:subscribe', { userIds: [alice.userId] });
  assert.equal(again.presences[0].status, 'busy');
  assert.equal(again.presences[0].text, 'In a meeting ☕');

  // dnd without text clears the text
  a.emit('user:status:update', { status: 'dnd' });
  const dnd = await b.next('presence:changed', (d) => d.userId === alice.userId && d.status === 'dnd');
  assert.ok(dnd.text === null || dnd.text === undefined, JSON.stringify(dnd));

  // status text over 200 characters is refused with a code
  const long = await a.ack('user:status:update', { status: 'busy', text: 'x'.repeat(201) });
  assert.equal(long.error?.code, 'invalid_payload', JSON.stringify(long));
  const bad = await a.ack('user:status:update', { status: 'sleeping' });
  assert.equal(bad.error?.code, 'invalid_payload', JSON.stringify(bad));

  // activity:ping is acked
  const ping = await a.ack('activity:ping', {});
  assert.equal(ping?.error, undefined, JSON.stringify(ping));

  // alice leaves
  a.close();
  const off = await b.next('user:offline', about(alice.userId));
  assert.equal(off.userId, alice.userId);
  assert.equal(typeof off.lastSeenAt, 'string');
  assert.ok(!Number.isNaN(Date.parse(off.lastSeenAt)), off.lastSeenAt);

  // carol never asked and shares no call with alice: she heard nothing about her
  for (const ev of PRESENCE_EVENTS) await c.none(ev, about(alice.userId));
  // nor about bob (nobody subscribed to him)
  for (const ev of PRESENCE_EVENTS) await c.none(ev, about(bob.userId));
});

it('unsubscribe stops presence events', async () => {
  const alice = await h.user('Alice');
  const bob = await h.user('Bob');
  const wendy = await h.user('Wendy');
  const b = await h.sio(bob, 'bob');
  // Wendy stays subscribed: she witnesses that the events were sent, to others than bob.
  const w = await h.sio(wendy, 'wendy');
  await b.ack('presence:subscribe', { userIds: [alice.userId] });
  await w.ack('presence:subscribe', { userIds: [alice.userId] });
  const a1 = await h.sio(alice, 'alice#1');
  await b.next('user:online', about(alice.userId));
  await w.next('user:online', about(alice.userId));

  const unsub = await b.ack('presence:unsubscribe', { userIds: [alice.userId] });
  assert.equal(unsub?.error, undefined, JSON.stringify(unsub));
  const away = await a1.ack('user:status:update', { status: 'away', text: 'brb' });
  assert.equal(away?.error, undefined, JSON.stringify(away));
  a1.close();
  await w.next('presence:changed', about(alice.userId));
  await w.next('user:offline', about(alice.userId));
  // The hub sent both before bob's barrier: none reached him.
  for (const ev of PRESENCE_EVENTS) await b.none(ev, about(alice.userId));
});

it('a user stays online while any device is connected', async () => {
  const alice = await h.user('Alice');
  const bob = await h.user('Bob');
  const b = await h.sio(bob, 'bob');
  await b.ack('presence:subscribe', { userIds: [alice.userId] });
  const a1 = await h.sio(alice, 'alice#1');
  const a2 = await h.sio(alice, 'alice#2');
  await b.next('user:online', about(alice.userId));
  a1.close();
  // No event tells that the server handled a1's close (alice stays online): it has once it
  // counts only b and a2. A barrier orders only what the hub already received.
  await eventually(async () => (await h.server.metric('chorus_signaling_connections')) === 2, {
    timeoutMs: 5000,
    what: "the server to drop alice#1's connection",
  });
  await b.none('user:offline', about(alice.userId));
  a2.close();
  await b.next('user:offline', about(alice.userId));
});

it('presence:subscribe with a bad payload is refused with invalid_payload', async () => {
  const bob = await h.user('Bob');
  const b = await h.sio(bob, 'bob');
  const r = await b.ack('presence:subscribe', { userIds: 'alice' });
  assert.equal(r.error?.code, 'invalid_payload', JSON.stringify(r));
  assert.equal(typeof r.error.message, 'string');
});

it('GET /api/v1/presence answers authenticated requests only', async () => {
  const alice = await h.user('Alice');
  const bob = await h.user('Bob');
  const a = await h.sio(alice, 'alice');
  await a.ack('user:status:update', { status: 'away', text: 'lunch' });
  const url = `${h.server.url}/api/v1/presence?userIds=${encodeURIComponent(`${alice.userId},${bob.userId}`)}`;
  const res = await fetch(url, { headers: { authorization: `Bearer ${bob.token}` } });
  assert.equal(res.status, 200);
  const { presences } = await res.json();
  const byId = Object.fromEntries(presences.map((p) => [p.userId, p]));
  assert.equal(byId[alice.userId].status, 'away');
  assert.equal(byId[alice.userId].text, 'lunch');
  assert.equal(byId[bob.userId].status, 'offline');
  const anon = await fetch(url);
  assert.equal(anon.status, 401);
  assert.equal((await anon.json()).code, 'token_missing');
});
