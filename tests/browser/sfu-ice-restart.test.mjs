// ICE restart in a room (issue 12, item 6): two Chromium pages in one room decode each other;
// one restarts ICE mid-call (`RTCPeerConnection.restartIce()` and a new offer, what the demo page
// does by itself when its connection goes `disconnected` or `failed`). The server answers with
// new credentials on the same seat: both pages keep decoding (framesDecoded rising through the
// restart), nobody sees a participant leave or join, and the server counts the restart.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  chromiumAvailable,
  CHROMIUM,
  decodesVideoStreams,
  eventually,
  inboundStreams,
  joinRoomPage,
} from '../lib/browser.mjs';

let server;
const browsers = [];
const errors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  server = await startServer();
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
});

/** The ICE ufrag of a description's first media section (or session level). */
const ufrag = (sdp) => /a=ice-ufrag:(\S+)/.exec(sdp ?? '')?.[1] ?? null;

/** Frames decoded so far, per inbound video stream id. */
async function decoded(page) {
  return new Map((await inboundStreams(page)).filter((s) => s.kind === 'video').map((s) => [s.id, s.framesDecoded]));
}

/** Waits until the stream that decoded `before` frames decodes `more` beyond it. */
async function keepsDecoding(page, before, more, label) {
  await eventually(
    async () => {
      const now = await decoded(page);
      return [...before].every(([id, n]) => (now.get(id) ?? 0) > n + more);
    },
    { timeoutMs: 20_000, what: `${label}: framesDecoded to keep rising on the same streams` },
  );
}

it('a participant restarts ICE mid-call and media keeps flowing without a leave', { timeout: 180_000 }, async () => {
  const room = `ice-${Date.now().toString(36)}`;
  const alice = await joinRoomPage(server, 'Alice', room, { errors });
  browsers.push(alice.browser);
  const bob = await joinRoomPage(server, 'Bob', room, { errors });
  browsers.push(bob.browser);
  await decodesVideoStreams(alice.page, 1, 'Alice');
  await decodesVideoStreams(bob.page, 1, 'Bob');
  const restartsBefore = await server.metric('chorus_sfu_ice_restarts_total');

  const creds = () =>
    alice.page.evaluate(() => {
      const pc = window.chorus.call.sfu.pc;
      return { local: pc.localDescription?.sdp, remote: pc.remoteDescription?.sdp };
    });
  const old = await creds();
  const aliceBefore = await decoded(alice.page);
  const bobBefore = await decoded(bob.page);

  // the restart: a new offer with new credentials, answered on the same seat
  const restartedAt = await alice.page.evaluate(() => Date.now());
  await alice.page.evaluate(() => window.chorus.call.sfu.restartIce('test'));
  const fresh = await creds();
  assert.notEqual(ufrag(fresh.local), ufrag(old.local), 'Alice offered new ICE credentials');
  assert.notEqual(ufrag(fresh.remote), ufrag(old.remote), 'the server answered with new ICE credentials');
  await eventually(() => alice.page.evaluate(() => window.chorus.call.sfu.pc.connectionState === 'connected'), {
    what: 'Alice connected again after the restart',
  });

  // media flows on the same streams in both directions, well past the restart
  await keepsDecoding(alice.page, aliceBefore, 60, 'Alice');
  await keepsDecoding(bob.page, bobBefore, 60, 'Bob');
  assert.equal(await server.metric('chorus_sfu_ice_restarts_total'), restartsBefore + 1);

  // nobody left or joined since the restart, and the pages still show each other
  for (const u of [alice, bob]) {
    const seen = await u.page.evaluate(
      (t0) =>
        window.chorus.client.log
          .filter((e) => e.at >= t0 && /^call:participant:(left|joined)$/.test(e.event))
          .map((e) => e.event),
      restartedAt,
    );
    assert.deepEqual(seen, [], `${u.name} saw nobody leave or join`);
    assert.equal(await u.page.locator('[data-testid="tile-remote"]').count(), 1, `${u.name}: one remote tile`);
  }
  assert.deepEqual(errors, []);
});

it('a reload rejoins the room within 3 s and the old seat goes at once', { timeout: 120_000 }, async () => {
  const room = `reload-${Date.now().toString(36)}`;
  const alice = await joinRoomPage(server, 'Alice', room, { errors });
  browsers.push(alice.browser);
  const bob = await joinRoomPage(server, 'Bob', room, { errors });
  browsers.push(bob.browser);
  await decodesVideoStreams(alice.page, 1, 'Alice');
  const bobId = (await bob.page.getByTestId('my-user-id').textContent()).trim();

  const reloadAt = Date.now();
  await bob.page.reload();
  // Bob's page signs in again and joins the room by itself
  await bob.page.getByTestId('call-view').waitFor({ state: 'visible', timeout: 10_000 });
  await eventually(() => bob.page.evaluate(() => window.chorus.call?.state === 'joined'), { what: 'Bob joined again' });
  // When the page entered the room by its own clock (the same machine's), not when this
  // test's polling noticed: the poll adds up to its interval and two round trips to the page.
  const rejoinedIn = (await bob.page.evaluate(() => window.chorus.call.startedAt)) - reloadAt;
  // Alice saw the old seat leave (the browser closed the old WebSocket with the page) and sees
  // one tile for Bob, with video flowing again
  await eventually(
    () =>
      alice.page.evaluate(
        ({ t0, id }) => window.chorus.client.log.some((e) => e.at >= t0 && e.event === 'call:participant:left' && e.data.userId === id),
        { t0: reloadAt, id: bobId },
      ),
    { what: 'Alice to see the old seat leave', timeoutMs: 5_000 },
  );
  const cameraTile = alice.page.locator(`[data-testid="tile-remote"][data-user="${bobId}"]`);
  await cameraTile.and(alice.page.locator('[data-flowing="yes"]')).waitFor({ timeout: 20_000 });
  const flowingIn = Date.now() - reloadAt;
  assert.equal(await alice.page.locator('[data-testid="tile-remote"]').count(), 1, 'Alice: one tile for Bob');
  console.log(`reload: rejoined the room in ${rejoinedIn} ms, video flowing to the other page in ${flowingIn} ms`);
  assert.ok(rejoinedIn <= 3000, `the reload rejoined the room in ${rejoinedIn} ms (at most 3 s)`);
  assert.deepEqual(errors, []);
});
