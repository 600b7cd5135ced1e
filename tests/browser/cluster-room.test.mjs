// Named rooms across a cluster with real browsers: three `chorus` nodes share the Redis at
// 127.0.0.1:6379 (a prefix of their own, deleted at the end), and three headless Chromium pages,
// each opened on a different node, join one room through the demo page. The room's media goes
// through its owner node's SFU, whichever node a page is connected to; each page decodes the
// other two participants' cameras.
//
// Failures: the node that owns the room is drained (SIGTERM) or killed (SIGKILL) while two pages
// are in it: Dan on the owner node (he created the room) and Eve on another; the third node can
// take the room over too. Each page reaches the nodes through a load balancer of its own (first
// choice: its node; then the others, by health check), as pages behind an operator's balancer
// would. Within 10 s of the owner's exit every page decodes the other again, with nothing done
// to the pages: the page on a surviving node renegotiates with the new owner on `media:moved`,
// the page whose node went away reconnects through its balancer and rejoins the room by itself.
//
// The browsers share the machine's cores with the three servers, which a deployment never does,
// and on a 2-core machine three pages encoding simulcast at the demo page's 1280x720 and 30
// frames/s starved everything else: the browsers' bandwidth estimates fell on loopback, the SFU
// paused and resumed their video every second, and the recovery time measured the machine
// rather than the servers (over 10 s in about one run in three). So the owner-loss tests use two
// pages, not three; every page's camera is capped at 640x360 and 15 frames/s (SMALL_CAMERA); and
// the owner-loss clusters run the SFU without congestion control (`sfu.congestion_control`), as
// a loopback link never congests. Layer choice under a constrained link is tested in
// simulcast.test.mjs; three participants losing their owner, in the whole-server test
// `a_killed_room_owner_is_replaced_and_media_flows_again`.

import { after, afterEach, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  chromiumAvailable,
  CHROMIUM,
  decodedVideoBy,
  decodesVideoStreams,
  eventually,
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

/** Caps the page's camera (see the header): runs before the demo page's scripts. */
const SMALL_CAMERA = (page) =>
  page.addInitScript(() => {
    const devices = navigator.mediaDevices;
    const open = devices.getUserMedia.bind(devices);
    devices.getUserMedia = (constraints) =>
      open(constraints?.video ? { ...constraints, video: { width: 640, height: 360, frameRate: 15 } } : constraints);
  });

/** Signs `name` in on the page at `target.url` and joins `room`; `{name, page, userId}`. */
async function join(target, name, room) {
  const u = await joinRoomPage(target, name, room, { errors: pageErrors, setup: SMALL_CAMERA });
  browsers.push(u.browser);
  u.userId = (await u.page.getByTestId('my-user-id').textContent()).trim();
  assert.ok(u.userId.length > 0);
  assert.equal(await u.page.getByTestId('call-title').textContent(), `Room ${room}`);
  return u;
}

/** Each page decodes exactly the other participants' cameras, and keeps decoding them. */
async function everyoneDecodesTheOthers(all, label, timeouts) {
  await Promise.all(all.map((u) => decodesVideoStreams(u.page, all.length - 1, `${u.name} ${label}`, timeouts)));
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

/** Awaits `promise`; if it fails, adds what each page last heard and showed to the error. */
async function explained(all, promise) {
  try {
    return await promise;
  } catch (e) {
    for (const u of all) {
      const seen = await u.page
        .evaluate(() => ({
          events: window.chorus.client.log.slice(-25).map((e) => `${e.event}${e.data?.code ? `(${e.data.code}: ${e.data.message})` : ''}`),
          toasts: window.chorus.toasts.slice(-10),
          screen: document.body.dataset.screen,
          pc: window.chorus.pc?.connectionState ?? null,
        }))
        .catch((err) => ({ unavailable: err.message }));
      e.message += `\n${u.name} (home ${u.home?.id}): ${JSON.stringify(seen)}`;
    }
    for (const n of cluster?.nodes ?? []) e.message += `\n--- ${n.id} ---\n${n.output().slice(-2000)}`;
    throw e;
  }
}

/** Milliseconds within which media must flow again after the owner node exits (issue 11). */
const RECOVERY_MS = 10_000;

/**
 * Two pages in one room, each behind its own balancer (first choice: a node of its own); the
 * room's owner node goes away by `stopOwner`. Every page must decode the other again on a new
 * RTCPeerConnection within RECOVERY_MS of the owner's exit, without the test touching them.
 */
async function ownerGoesAway(t, { name, reason, stopOwner }) {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  cluster = await startCluster({
    name,
    env: { CHORUS_SERVER_DRAIN_TIMEOUT: '3s', CHORUS_SERVER_RECONNECT_HINT: '1s', CHORUS_SFU_CONGESTION_CONTROL: 'false' },
  });
  const room = `${reason}-${Date.now().toString(36)}`;
  const all = [];
  for (const [i, person] of ['Dan', 'Eve'].entries()) {
    const home = cluster.nodes[i];
    const balancer = await startBalancer([home, ...cluster.nodes.filter((n) => n !== home)]);
    balancers.push(balancer);
    const u = await join(balancer, person, room);
    u.home = home;
    all.push(u);
  }
  await everyoneDecodesTheOthers(all, 'before the owner goes');
  const owner = await cluster.ownerOf(`room:${room}`);
  assert.ok(owner, 'the room has an owner in Redis');
  const stranded = all.find((u) => u.home === owner);
  const survivors = all.filter((u) => u !== stranded);
  const oldPcs = await Promise.all(all.map((u) => u.page.evaluateHandle(() => window.chorus.pc)));

  await stopOwner(owner);
  const exitedAt = Date.now();
  const left = () => Math.max(1, exitedAt + RECOVERY_MS - Date.now());
  await explained(all, Promise.all(
    all.map(async (u, i) => {
      await eventually(() => u.page.evaluate((old) => !!window.chorus.pc && window.chorus.pc !== old, oldPcs[i]), {
        timeoutMs: left(),
        intervalMs: 100,
        what: `${u.name} to open a new RTCPeerConnection`,
      });
      await decodesVideoStreams(u.page, all.length - 1, `${u.name} after the owner left`, { timeoutMs: left(), risingTimeoutMs: left() });
      u.recoveredMs = Date.now() - exitedAt;
    }),
  ));
  const took = Date.now() - exitedAt;
  const each = all.map((u) => `${u.name}${u === stranded ? ' (on the owner)' : ''} ${u.recoveredMs} ms`).join(', ');
  t.diagnostic(`every page decoded the others again ${took} ms after the owner (${owner.id}) exited: ${each}`);
  for (const u of all) t.diagnostic(`${u.name} showed: ${(await u.page.evaluate(() => window.chorus.toasts)).join(' | ')}`);
  assert.ok(took <= RECOVERY_MS, `media flowing again ${took} ms after the owner's exit (at most ${RECOVERY_MS})`);
  await everyoneDecodesTheOthers(all, 'after the owner left');

  // the pages on surviving nodes were told to move their media; the one whose node went away
  // came back through its balancer and joined again
  for (const u of survivors) {
    const moved = await u.page.evaluate(() => window.chorus.client.log.filter((e) => e.event === 'media:moved').map((e) => e.data));
    assert.deepEqual(moved, [{ callId: `room:${room}`, reason }], `${u.name} got media:moved`);
  }
  assert.equal(await stranded.page.getByTestId('call-title').textContent(), `Room ${room}`);
  // a surviving node owns the room now, and its SFU seats all three
  const heir = await cluster.ownerOf(`room:${room}`);
  assert.ok(heir && heir !== owner, `a surviving node owns the room (was ${owner.id}, now ${heir?.id})`);
  assert.equal(await heir.metric('chorus_sfu_participants'), all.length);
  assert.equal(await heir.metric('chorus_cluster_ownership_moves_total'), 1);

  for (const u of all) await u.page.getByTestId('hangup').click();
  for (const u of all) await u.page.getByTestId('home').waitFor({ state: 'visible' });
  assert.deepEqual(pageErrors, []);
  return { owner, stranded };
}

it('the room owner is drained: every page decodes the others again within 10 s of its exit', { timeout: 180_000 }, async (t) => {
  const { stranded } = await ownerGoesAway(t, {
    name: 'browser-room-drain',
    reason: 'node_drained',
    // SIGTERM; resolves once the node exited 0 after its drain
    stopOwner: (owner) => owner.stop(),
  });
  const told = await stranded.page.evaluate(() => window.chorus.client.log.some((e) => e.event === 'server:shutdown'));
  assert.ok(told, `${stranded.name} was told server:shutdown by its draining node`);
});

it('the room owner is killed: every page decodes the others again within 10 s', { timeout: 180_000 }, async (t) => {
  await ownerGoesAway(t, {
    name: 'browser-room-crash',
    reason: 'node_failed',
    stopOwner: (owner) => owner.crash(),
  });
});
