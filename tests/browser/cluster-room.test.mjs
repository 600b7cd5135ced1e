// Named rooms across a cluster with real browsers: three `chorus` nodes share the Redis at
// 127.0.0.1:6379 (a prefix of their own, deleted at the end), and three headless Chromium pages,
// each opened on a different node, join one room through the demo page. The room's media goes
// through its owner node's SFU, whichever node a page is connected to; each page decodes the
// other two participants' cameras.
//
// Failures: the node that owns the room is drained (SIGTERM) or killed (SIGKILL) while the three
// are in it. Each page reaches the nodes through a load balancer of its own (first choice: its
// node; then the others, by health check), as pages behind an operator's balancer would. Within
// 10 s of the owner's exit every page decodes the other two again, with nothing done to the
// pages: the pages on surviving nodes renegotiate with the new owner on `media:moved`, the page
// whose node went away reconnects through its balancer and rejoins the room by itself.

import { after, afterEach, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  chromiumAvailable,
  CHROMIUM,
  decodedVideoBy,
  decodesVideoStreams,
  joinRoomPage,
} from '../lib/browser.mjs';
import { startBalancer, startCluster } from '../lib/cluster.mjs';

let cluster = null;
const balancers = [];
const browsers = [];
const pageErrors = [];

afterEach(async () => {
  for (const b of browsers.splice(0)) await b.close();
  for (const b of balancers.splice(0)) await b.close();
  const c = cluster;
  cluster = null;
  await c?.stop();
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  for (const b of balancers.splice(0)) await b.close();
  await cluster?.stop();
});

/** Signs `name` in on the page at `target.url` and joins `room`; `{name, page, userId}`. */
async function join(target, name, room) {
  const u = await joinRoomPage(target, name, room, { errors: pageErrors });
  browsers.push(u.browser);
  u.userId = (await u.page.getByTestId('my-user-id').textContent()).trim();
  assert.ok(u.userId.length > 0);
  assert.equal(await u.page.getByTestId('call-title').textContent(), `Room ${room}`);
  return u;
}

/** Each page decodes exactly the other two participants' cameras, and keeps decoding them. */
async function everyoneDecodesTheOthers(all, label, timeouts) {
  await Promise.all(all.map((u) => decodesVideoStreams(u.page, 2, `${u.name} ${label}`, timeouts)));
  for (const u of all) {
    const expected = all.filter((o) => o !== u).map((o) => `${o.userId}:camera`).sort();
    assert.deepEqual(await decodedVideoBy(u.page), expected, `${u.name} ${label} decodes the others' cameras`);
  }
}

/** How many SFU participants each node seats, by node id. */
async function seatsByNode() {
  const out = {};
  for (const node of cluster.nodes) out[node.id] = await node.metric('chorus_sfu_participants');
  return out;
}

it('three browsers on three nodes decode each other through the room owner\'s SFU', { timeout: 180_000 }, async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  cluster = await startCluster({ name: 'browser-room' });
  const room = `across-${Date.now().toString(36)}`;
  const names = ['Alice', 'Bob', 'Carol'];
  const all = [];
  for (const [i, name] of names.entries()) all.push(await join(cluster.nodes[i], name, room));

  await everyoneDecodesTheOthers(all, 'across nodes');
  // one SFU carries the room, the owner's: it seats all three, the other nodes none
  const owner = await cluster.ownerOf(`room:${room}`);
  assert.ok(owner, 'the room has an owner in Redis');
  const seats = await seatsByNode();
  assert.deepEqual(
    seats,
    Object.fromEntries(cluster.nodes.map((n) => [n.id, n === owner ? 3 : 0])),
    `only the owner ${owner.id} seats the room's participants`,
  );
  assert.equal(await owner.metric('chorus_cluster_spaces_owned'), 1);

  for (const u of all) await u.page.getByTestId('hangup').click();
  for (const u of all) await u.page.getByTestId('home').waitFor({ state: 'visible' });
  assert.deepEqual(pageErrors, []);
});
