// WHIP ingest with real browsers: one headless Chromium publishes its fake camera and microphone
// over WHIP (RFC 9725: POST the offer, apply the answer, DELETE at the end) from a plain page,
// with no signaling connection; another joins the same room through the demo page and decodes
// the WHIP stream's video and receives its audio like any publisher's. DELETE removes the
// stream's tile from the member's page. And WHEP: a plain page offers receive-only audio and
// video to /whep/v1/rooms/{room}/participants/{user} and decodes a demo-page member's camera.

import { after, afterEach, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  chromiumAvailable,
  CHROMIUM,
  decodedVideoBy,
  decodesRemoteVideo,
  eventually,
  inboundStreams,
  joinRoomPage,
  launchBrowser,
} from '../lib/browser.mjs';

let server;
const browsers = [];
const pageErrors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  server = await startServer();
});

afterEach(async () => {
  for (const b of browsers.splice(0)) await b.close();
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
});

/** A browser page that publishes into `room` over WHIP as `name`; returns the page and ids. */
async function whipEncoder(name, room) {
  const browser = await launchBrowser();
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  // Any page of the server's origin: a secure context (loopback) for getUserMedia.
  await page.goto(`${server.url}/health`);
  return page.evaluate(
    async ({ name, room }) => {
      const minted = await fetch('/api/v1/dev/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name, room }),
      }).then((r) => r.json());
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      const pc = new RTCPeerConnection();
      for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      // Wait for host candidates so the offer carries them (no trickle needed on loopback).
      await new Promise((done) => {
        if (pc.iceGatheringState === 'complete') return done();
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && done());
        setTimeout(done, 3000);
      });
      const reply = await fetch(`/whip/v1/rooms/${room}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${minted.token}` },
        body: pc.localDescription.sdp,
      });
      const answer = await reply.text();
      if (reply.status !== 201) return { status: reply.status, body: answer };
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      window.whip = { pc, token: minted.token, location: reply.headers.get('Location') };
      return {
        status: reply.status,
        userId: minted.userId,
        location: reply.headers.get('Location'),
        etag: reply.headers.get('ETag'),
        links: reply.headers.get('Link'),
      };
    },
    { name, room },
  ).then((result) => ({ page, ...result }));
}

it('a browser publishes over WHIP and a room member decodes it', async () => {
  const room = 'whip-stage';
  const member = await joinRoomPage(server, 'Member', room, { errors: pageErrors });
  browsers.push(member.browser);

  const encoder = await whipEncoder('Stage camera', room);
  assert.equal(encoder.status, 201, JSON.stringify(encoder));
  assert.match(encoder.location, /^\/whip\/v1\/sessions\/[0-9a-f]{32}$/);
  assert.match(encoder.etag, /^"[0-9a-f]{32}"$/);
  await eventually(
    () => encoder.page.evaluate(() => window.whip.pc.connectionState === 'connected'),
    { timeoutMs: 15_000, what: 'the WHIP peer to connect' },
  );

  // The member decodes the WHIP stream's camera and receives its audio.
  await decodesRemoteVideo(member.page, 'member');
  await eventually(async () => (await decodedVideoBy(member.page)).includes(`${encoder.userId}:camera`), {
    timeoutMs: 15_000,
    what: 'the decoded video to be the WHIP stream',
  });
  await eventually(
    async () => (await inboundStreams(member.page)).some((s) => s.kind === 'audio' && s.packetsReceived > 20),
    { timeoutMs: 15_000, what: 'the member to receive the WHIP audio' },
  );
  const tile = member.page.locator(`[data-testid="tile-remote"][data-user="${encoder.userId}"]`);
  await tile.waitFor({ state: 'visible' });

  // DELETE ends the session: the stream leaves the room, its tile goes.
  const status = await encoder.page.evaluate(async () => {
    const r = await fetch(window.whip.location, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${window.whip.token}` },
    });
    return r.status;
  });
  assert.equal(status, 200);
  await tile.waitFor({ state: 'detached', timeout: 15_000 });
  assert.deepEqual(pageErrors, []);
});

it('a browser views a participant over WHEP and decodes its camera', async () => {
  const room = 'whep-stage';
  const presenter = await joinRoomPage(server, 'Presenter', room, { errors: pageErrors });
  browsers.push(presenter.browser);
  const presenterId = (await presenter.page.getByTestId('my-user-id').textContent()).trim();

  const browser = await launchBrowser();
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`viewer: ${e.message}`));
  await page.goto(`${server.url}/health`);
  const result = await page.evaluate(
    async ({ room, presenterId }) => {
      const minted = await fetch('/api/v1/dev/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: 'Viewer', room }),
      }).then((r) => r.json());
      const pc = new RTCPeerConnection();
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((done) => {
        if (pc.iceGatheringState === 'complete') return done();
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && done());
        setTimeout(done, 3000);
      });
      const reply = await fetch(`/whep/v1/rooms/${room}/participants/${presenterId}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${minted.token}` },
        body: pc.localDescription.sdp,
      });
      const answer = await reply.text();
      if (reply.status !== 201) return { status: reply.status, body: answer };
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      window.whep = { pc, token: minted.token, location: reply.headers.get('Location') };
      return { status: reply.status, location: reply.headers.get('Location') };
    },
    { room, presenterId },
  );
  assert.equal(result.status, 201, JSON.stringify(result));
  assert.match(result.location, /^\/whep\/v1\/sessions\/[0-9a-f]{32}$/);

  const video = () =>
    page.evaluate(async () => {
      const report = await window.whep.pc.getStats();
      let found = null;
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') found = { frames: s.framesDecoded ?? 0, width: s.frameWidth ?? 0 };
      });
      return found;
    });
  const first = await eventually(async () => {
    const v = await video();
    return v && v.frames > 0 && v.width > 0 ? v : null;
  }, { timeoutMs: 30_000, what: 'the WHEP viewer to decode the presenter camera' });
  await eventually(async () => (await video()).frames > first.frames + 10, {
    timeoutMs: 15_000,
    what: 'the WHEP viewer: framesDecoded to rise',
  });
  const status = await page.evaluate(async () => {
    const r = await fetch(window.whep.location, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${window.whep.token}` },
    });
    return r.status;
  });
  assert.equal(status, 200);
  assert.deepEqual(pageErrors, []);
});

it("the demo page's watch link plays a member's camera over WHEP", async () => {
  const room = 'whep-link';
  const presenter = await joinRoomPage(server, 'Presenter', room, { errors: pageErrors });
  browsers.push(presenter.browser);
  const presenterId = (await presenter.page.getByTestId('my-user-id').textContent()).trim();
  const member = await joinRoomPage(server, 'Member', room, { errors: pageErrors });
  browsers.push(member.browser);
  // The member sees the presenter's tile, with a watch link for them; none on its own tile.
  const link = member.page.locator(`[data-testid="tile-remote"][data-user="${presenterId}"] [data-testid="tile-watch"]`);
  await link.waitFor({ state: 'visible', timeout: 30_000 });
  const href = await link.getAttribute('href');
  assert.equal(href, `/watch?room=${room}&user=${encodeURIComponent(presenterId)}`);
  assert.equal(await member.page.locator('[data-testid="tile-local"] [data-testid="tile-watch"]:visible').count(), 0);

  const browser = await launchBrowser();
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`watch page: ${e.message}`));
  await page.goto(`${server.url}${href}`);
  await eventually(
    async () => (await page.getByTestId('watch-status').getAttribute('data-state')) === 'playing',
    { timeoutMs: 30_000, what: 'the watch page to connect' },
  );
  const frames = () =>
    page.evaluate(() => {
      const v = document.querySelector('[data-testid="watch-video"]');
      const q = v.getVideoPlaybackQuality?.();
      return { width: v.videoWidth, frames: q ? q.totalVideoFrames : 0 };
    });
  const first = await eventually(async () => {
    const f = await frames();
    return f.width > 0 && f.frames > 0 ? f : null;
  }, { timeoutMs: 30_000, what: "the watch page to show the presenter's video" });
  await eventually(async () => (await frames()).frames > first.frames + 10, {
    timeoutMs: 15_000,
    what: 'the watch page: frames to keep coming',
  });
  assert.deepEqual(pageErrors, []);
});
