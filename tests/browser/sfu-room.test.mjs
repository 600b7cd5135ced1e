// Named rooms through the SFU with real browsers: three headless Chromium instances (fake camera
// and microphone) join one room through the demo page. Each decodes video from the other two
// and receives their audio; mute and camera-off show on the others' tiles (track:muted); a screen share (fake capture) is an
// extra video track shown as its own tile; leaving removes the leaver's tiles everywhere.
// Screenshots at laptop and phone size go to $CHORUS_SCREENSHOT_DIR.

import { after, afterEach, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { startServer } from '../lib/server.mjs';
import {
  chromiumAvailable,
  CHROMIUM,
  decodedVideoBy,
  decodesVideoStreams,
  eventually,
  inboundStreams,
  launchBrowser,
} from '../lib/browser.mjs';

const SHOTS = process.env.CHORUS_SCREENSHOT_DIR ?? join(tmpdir(), 'chorus-screenshots');
const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let server;
const browsers = [];
const pageErrors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  await mkdir(SHOTS, { recursive: true });
  server = await startServer();
});

// each test closes its browsers, so at most three Chromium instances run at once
afterEach(async () => {
  for (const b of browsers.splice(0)) await b.close();
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
});

/** A browser for one user that signs in as `name` and joins `room` from the login form. */
async function joinRoom(name, room, viewport = LAPTOP) {
  const browser = await launchBrowser({ viewport });
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(server.url);
  await page.getByTestId('login').waitFor({ state: 'visible' });
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-room').fill(room);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('call-view').waitFor({ state: 'visible' });
  const userId = (await page.getByTestId('my-user-id').textContent()).trim();
  assert.ok(userId.length > 0);
  assert.equal(await page.getByTestId('call-title').textContent(), `Room ${room}`);
  return { name, page, userId, browser };
}

/** Waits until at least `count` inbound audio streams receive packets, and keep receiving. */
async function receivesAudioStreams(page, count, label) {
  const receiving = async () => (await inboundStreams(page)).filter((s) => s.kind === 'audio' && s.packetsReceived > 0);
  await eventually(async () => (await receiving()).length >= count, {
    timeoutMs: 30_000,
    what: `${label} to receive ${count} audio streams`,
  });
  const first = new Map((await receiving()).map((s) => [s.id, s.packetsReceived]));
  await eventually(
    async () => (await receiving()).filter((s) => first.has(s.id) && s.packetsReceived > first.get(s.id) + 10).length >= count,
    { timeoutMs: 15_000, what: `${label}: audio packetsReceived to rise on ${count} streams` },
  );
}

const cameraTile = (page, userId) => page.locator(`[data-testid="tile-remote"][data-user="${userId}"]`);
const screenTile = (page, userId) => page.locator(`[data-testid="tile-screen"][data-user="${userId}"]`);

it('three browsers in one room see and hear each other, share a screen, and leave', { timeout: 240_000 }, async () => {
  const room = `standup-${Date.now().toString(36)}`;
  const alice = await joinRoom('Alice', room);
  const bob = await joinRoom('Bob', room);
  const carol = await joinRoom('Carol', room, PHONE);
  const all = [alice, bob, carol];
  const others = (u) => all.filter((x) => x !== u);

  // every page: a named tile for each of the other two, decoding their video and audio
  for (const u of all) {
    for (const o of others(u)) {
      await cameraTile(u.page, o.userId).waitFor();
      assert.equal(await cameraTile(u.page, o.userId).getByTestId('tile-name').textContent(), o.name);
    }
  }
  await Promise.all(all.map((u) => decodesVideoStreams(u.page, 2, u.name)));
  await Promise.all(all.map((u) => receivesAudioStreams(u.page, 2, u.name)));
  for (const u of all) {
    // the two decoded streams are the other two participants' cameras
    const expected = others(u).map((o) => `${o.userId}:camera`).sort();
    assert.deepEqual(await decodedVideoBy(u.page), expected, `${u.name} decodes the others' cameras`);
  }
  for (const u of all) {
    assert.equal(await u.page.locator('[data-testid="tile-remote"]').count(), 2, `${u.name}: two remote tiles`);
    assert.equal(await u.page.getByTestId('call-people').textContent(), '3 people');
    // the remote tiles show video, not the avatar placeholder
    for (const o of others(u)) {
      await cameraTile(u.page, o.userId).and(u.page.locator('[data-flowing="yes"]')).waitFor();
    }
  }
  await carol.page.screenshot({ path: join(SHOTS, 'room-3-phone.png') });

  // Bob mutes his microphone and turns his camera off: the others see both on his tile
  // (`track:muted` for his microphone and camera tracks), then he turns both back on
  await bob.page.getByTestId('toggle-mic').click();
  await bob.page.getByTestId('toggle-cam').click();
  for (const u of others(bob)) {
    await cameraTile(u.page, bob.userId).and(u.page.locator('[data-audio="off"][data-video="off"]')).waitFor();
    assert.ok(await cameraTile(u.page, bob.userId).getByTestId('badge-mic').isVisible());
    assert.ok(await cameraTile(u.page, bob.userId).getByTestId('badge-cam').isVisible());
    const muted = await eventually(
      () =>
        u.page.evaluate((id) => {
          const got = window.chorus.client.log.filter((e) => e.event === 'track:muted' && e.data.userId === id);
          return got.length >= 2 ? got.map((e) => e.data) : false;
        }, bob.userId),
      { what: `${u.name}: track:muted for Bob's microphone and camera` },
    );
    const sources = await u.page.evaluate(
      (ids) => ids.map((id) => window.chorus.call.trackInfo.get(id)?.source).sort(),
      muted.map((m) => m.trackId),
    );
    assert.deepEqual(sources, ['camera', 'microphone']);
  }
  await bob.page.getByTestId('toggle-mic').click();
  await bob.page.getByTestId('toggle-cam').click();
  for (const u of others(bob)) {
    await cameraTile(u.page, bob.userId).and(u.page.locator('[data-audio="on"][data-video="on"]')).waitFor();
    assert.ok(await cameraTile(u.page, bob.userId).getByTestId('badge-mic').isHidden());
  }
  await cameraTile(alice.page, bob.userId).and(alice.page.locator('[data-flowing="yes"]')).waitFor();

  // Alice shares her screen (fake capture): a separate published track; the others get a third
  // inbound video stream and show it as a screen tile; Alice keeps her camera tile too
  const before = new Map();
  for (const u of others(alice)) before.set(u, new Set((await inboundStreams(u.page)).map((s) => s.id)));
  await alice.page.getByTestId('toggle-screen').click();
  await alice.page.getByTestId('tile-local-screen').waitFor();
  for (const u of others(alice)) {
    await screenTile(u.page, alice.userId).waitFor();
    assert.match(await screenTile(u.page, alice.userId).getByTestId('tile-name').textContent(), /Alice · screen/);
    await decodesVideoStreams(u.page, 3, `${u.name} (with Alice's screen)`);
    const fresh = (await inboundStreams(u.page)).filter((s) => s.kind === 'video' && !before.get(u).has(s.id));
    assert.ok(fresh.length >= 1, `${u.name}: a new inbound video stream for the screen share`);
    const decoded = await decodedVideoBy(u.page);
    assert.ok(decoded.includes(`${alice.userId}:screen`), `${u.name} decodes Alice's screen: ${decoded}`);
    assert.ok(decoded.includes(`${alice.userId}:camera`), `${u.name} still decodes Alice's camera: ${decoded}`);
    await screenTile(u.page, alice.userId).and(u.page.locator('[data-flowing="yes"]')).waitFor();
    await cameraTile(u.page, alice.userId).and(u.page.locator('[data-screen="on"]')).waitFor();
    // the camera keeps coming next to the screen
    await cameraTile(u.page, alice.userId).and(u.page.locator('[data-flowing="yes"]')).waitFor();
  }
  await bob.page.mouse.move(5, 400);
  await bob.page.screenshot({ path: join(SHOTS, 'room-screen-laptop.png') });
  await carol.page.screenshot({ path: join(SHOTS, 'room-screen-phone.png') });

  // Alice stops sharing: the screen tiles go away, the cameras stay
  await alice.page.getByTestId('toggle-screen').click();
  await alice.page.getByTestId('tile-local-screen').waitFor({ state: 'detached' });
  for (const u of others(alice)) {
    await screenTile(u.page, alice.userId).waitFor({ state: 'detached', timeout: 20_000 });
    await cameraTile(u.page, alice.userId).and(u.page.locator('[data-screen="off"]')).waitFor();
  }

  // Carol leaves: her tiles disappear on the other pages; the two left keep decoding each other
  await carol.page.getByTestId('hangup').click();
  await carol.page.getByTestId('home').waitFor({ state: 'visible' });
  assert.match(await carol.page.getByTestId('last-call').textContent(), /left room/);
  for (const u of [alice, bob]) {
    await cameraTile(u.page, carol.userId).waitFor({ state: 'detached', timeout: 20_000 });
    assert.equal(await u.page.locator(`[data-user="${carol.userId}"]`).count(), 0);
    assert.equal(await u.page.getByTestId('call-people').textContent(), '2 people');
  }
  await decodesVideoStreams(alice.page, 1, 'Alice (after Carol left)');
  await alice.page.mouse.move(5, 400);
  await alice.page.screenshot({ path: join(SHOTS, 'room-2-laptop.png') });

  // Carol comes back from the home screen (the room name is still filled in): a fresh SFU
  // session; everyone decodes two streams again
  assert.equal(await carol.page.getByTestId('room-input').inputValue(), room);
  await carol.page.getByTestId('room-join').click();
  await carol.page.getByTestId('call-view').waitFor({ state: 'visible' });
  for (const u of all) {
    for (const o of others(u)) await cameraTile(u.page, o.userId).and(u.page.locator('[data-flowing="yes"]')).waitFor({ timeout: 30_000 });
  }
  await Promise.all(all.map((u) => decodesVideoStreams(u.page, 2, `${u.name} (Carol back)`)));
  await carol.page.getByTestId('hangup').click();

  await alice.page.getByTestId('hangup').click();
  await bob.page.getByTestId('hangup').click();
  await bob.page.getByTestId('home').waitFor({ state: 'visible' });
  assert.deepEqual(pageErrors, []);
});

/** A browser for one user, signed in as `name` on the home screen (no room). */
async function signIn(name, viewport = LAPTOP) {
  const browser = await launchBrowser({ viewport });
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(server.url);
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('home').waitFor({ state: 'visible' });
  await page.locator('[data-testid="conn-state"][data-state="online"]').waitFor();
  const userId = (await page.getByTestId('my-user-id').textContent()).trim();
  return { name, page, userId, browser };
}

it('a group call starts P2P and moves to the SFU when the third person joins', { timeout: 180_000 }, async () => {
  const dan = await signIn('Dan');
  const eve = await signIn('Eve');
  const fay = await signIn('Fay');

  // Dan calls Eve and Fay at once; Eve answers first: two people, direct (P2P)
  await dan.page.getByTestId('callee-input').fill(`${eve.userId}, ${fay.userId}`);
  await dan.page.getByTestId('call-video').click();
  await eve.page.getByTestId('incoming').waitFor({ state: 'visible' });
  await eve.page.getByTestId('accept').click();
  await dan.page.getByTestId('call-view').waitFor({ state: 'visible' });
  for (const u of [dan, eve]) {
    await decodesVideoStreams(u.page, 1, `${u.name} (P2P)`);  // one P2P connection, one video
    assert.equal(await u.page.getByTestId('call-mode').getAttribute('data-mode'), 'p2p');
  }

  // Dan shares his screen while the call is P2P: it replaces his camera on the P2P link
  await dan.page.getByTestId('toggle-screen').click();
  await cameraTile(eve.page, dan.userId).and(eve.page.locator('[data-screen="on"]')).waitFor();

  // Fay answers: the server says `call:mode sfu`; everyone renegotiates with the server, and
  // Dan's share becomes a track of its own next to his camera
  await fay.page.getByTestId('incoming').waitFor({ state: 'visible' });
  await fay.page.getByTestId('accept').click();
  const all = [dan, eve, fay];
  for (const u of all) {
    await u.page.locator('[data-testid="call-mode"][data-mode="sfu"]').waitFor({ timeout: 20_000 });
  }
  await dan.page.getByTestId('tile-local-screen').waitFor();
  for (const u of [eve, fay]) {
    await screenTile(u.page, dan.userId).and(u.page.locator('[data-flowing="yes"]')).waitFor({ timeout: 30_000 });
    await decodesVideoStreams(u.page, 3, `${u.name} (SFU, with Dan's screen)`);
    const decoded = await decodedVideoBy(u.page);
    assert.ok(decoded.includes(`${dan.userId}:screen`) && decoded.includes(`${dan.userId}:camera`), `${u.name}: ${decoded}`);
  }
  await dan.page.getByTestId('toggle-screen').click();
  for (const u of [eve, fay]) await screenTile(u.page, dan.userId).waitFor({ state: 'detached', timeout: 20_000 });
  await Promise.all(all.map((u) => decodesVideoStreams(u.page, 2, `${u.name} (SFU)`)));
  await Promise.all(all.map((u) => receivesAudioStreams(u.page, 2, `${u.name} (SFU)`)));
  for (const u of all) {
    // one RTCPeerConnection, to the server
    assert.equal(await u.page.evaluate(() => window.chorus.call.links.size), 0, `${u.name}: P2P links closed`);
    for (const o of all.filter((x) => x !== u)) {
      await cameraTile(u.page, o.userId).and(u.page.locator('[data-flowing="yes"]')).waitFor();
    }
    assert.equal(await u.page.locator('[data-testid="tile-remote"]').count(), 2, `${u.name}: two remote tiles`);
  }
  await dan.page.mouse.move(5, 400);
  await dan.page.screenshot({ path: join(SHOTS, 'group-call-sfu-laptop.png') });

  // Eve mutes her microphone and turns her camera off: the others see both on her tile
  await eve.page.getByTestId('toggle-mic').click();
  await eve.page.getByTestId('toggle-cam').click();
  for (const u of [dan, fay]) {
    await cameraTile(u.page, eve.userId).and(u.page.locator('[data-audio="off"][data-video="off"]')).waitFor();
    assert.ok(await cameraTile(u.page, eve.userId).getByTestId('badge-mic').isVisible());
  }
  await eve.page.getByTestId('toggle-mic').click();
  await eve.page.getByTestId('toggle-cam').click();
  for (const u of [dan, fay]) {
    await cameraTile(u.page, eve.userId).and(u.page.locator('[data-audio="on"][data-video="on"]')).waitFor();
  }

  // Fay hangs up (leaves the group call): her tile goes away on the others
  await fay.page.getByTestId('hangup').click();
  for (const u of [dan, eve]) await cameraTile(u.page, fay.userId).waitFor({ state: 'detached', timeout: 20_000 });
  await dan.page.getByTestId('hangup').click();
  await dan.page.getByTestId('home').waitFor({ state: 'visible' });
  // Eve is the last one in the group call: she hangs up too (unless the server ended it already)
  await eve.page.evaluate(() => window.chorus.call?.hangUp());
  await eve.page.getByTestId('home').waitFor({ state: 'visible' });

  // then both join a room from the home screen: their tokens had no room grant, so the page
  // gets a token for the room and reconnects first
  const room = `after-${Date.now().toString(36)}`;
  for (const u of [dan, eve]) {
    await u.page.getByTestId('room-input').fill(room);
    await u.page.getByTestId('room-join').click();
    await u.page.getByTestId('call-view').waitFor({ state: 'visible' });
    assert.equal(await u.page.getByTestId('call-title').textContent(), `Room ${room}`);
  }
  await Promise.all([decodesVideoStreams(dan.page, 1, 'Dan (room)'), decodesVideoStreams(eve.page, 1, 'Eve (room)')]);
  for (const u of [dan, eve]) await u.page.getByTestId('hangup').click();
  assert.deepEqual(pageErrors, []);
});

it('a page whose connection drops rejoins its room by itself, and media flows again', { timeout: 120_000 }, async () => {
  const room = `drop-${Date.now().toString(36)}`;
  const gil = await joinRoom('Gil', room);
  const hana = await joinRoom('Hana', room);
  await Promise.all([decodesVideoStreams(gil.page, 1, 'Gil'), decodesVideoStreams(hana.page, 1, 'Hana')]);
  const firstPc = await hana.page.evaluateHandle(() => window.chorus.pc);

  // the WebSocket drops (as on a network change): the server removes Hana from the room at
  // once; her page leaves the call view's old session, reconnects and joins again
  await hana.page.evaluate(() => window.chorus.client.ws.close());
  await cameraTile(gil.page, hana.userId).waitFor({ state: 'detached', timeout: 20_000 });
  await hana.page.locator('[data-testid="conn-state"][data-state="online"]').waitFor({ timeout: 20_000 });
  await hana.page.getByTestId('call-view').waitFor({ state: 'visible', timeout: 20_000 });
  await cameraTile(gil.page, hana.userId).and(gil.page.locator('[data-flowing="yes"]')).waitFor({ timeout: 30_000 });
  await cameraTile(hana.page, gil.userId).and(hana.page.locator('[data-flowing="yes"]')).waitFor({ timeout: 30_000 });
  assert.ok(await hana.page.evaluate((old) => window.chorus.pc !== old && old.connectionState === 'closed', firstPc));
  await Promise.all([decodesVideoStreams(gil.page, 1, 'Gil (Hana back)'), decodesVideoStreams(hana.page, 1, 'Hana (back)')]);
  assert.equal(await gil.page.locator('[data-testid="tile-remote"]').count(), 1);

  for (const u of [gil, hana]) await u.page.getByTestId('hangup').click();
  assert.deepEqual(pageErrors, []);
});
