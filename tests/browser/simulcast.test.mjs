// Simulcast through the SFU with real browsers. A publisher's fake camera plays a generated
// 1280×720 y4m (Chromium sends three layers only from 640×360 up), and the demo page publishes
// it in three layers (q, h, f). A subscriber asks, with `track:settings`, for a small tile and
// then a large one, and decodes what it asked for without a pause in decoding; when it pauses
// the track, the publisher is told to stop its layers (dynacast: its outbound streams stop),
// and when it resumes, a layer comes back.
//
// The demo page normally sends `track:settings` from its tiles' sizes; the subscriber's tile
// watchers are stopped here so that the test alone decides what is asked.

import { after, afterEach, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { startServer } from '../lib/server.mjs';
import { chromiumAvailable, CHROMIUM, eventually, joinRoomPage } from '../lib/browser.mjs';
import { askFor, inboundVideo, layerEvents, outboundLayers, writeStripesY4m } from '../lib/simulcast.mjs';

let server;
let dir;
let y4m;
const browsers = [];
const errors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  dir = await mkdtemp(join(tmpdir(), 'chorus-simulcast-'));
  y4m = join(dir, 'camera.y4m');
  await writeStripesY4m(y4m);
  server = await startServer();
});

afterEach(async () => {
  for (const b of browsers.splice(0)) await b.close();
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The publisher's page with the y4m camera. */
async function joinAsPublisher(room) {
  const publisher = await joinRoomPage(server, 'pub', room, {
    errors,
    launch: { extraArgs: [`--use-file-for-fake-video-capture=${y4m}`] },
  });
  browsers.push(publisher.browser);
  return publisher.page;
}

it('a subscriber decodes the layer its tile asks for, switched without a pause', { timeout: 150_000 }, async () => {
  const room = `sim${Date.now() % 100000}`;
  const publisher = await joinAsPublisher(room);
  const sub = await joinRoomPage(server, 'sub', room, { errors });
  browsers.push(sub.browser);

  // The publisher sends three layers.
  await eventually(async () => Object.keys(await outboundLayers(publisher)).length === 3, {
    timeoutMs: 30_000,
    what: 'the publisher to send three simulcast layers',
  });
  await eventually(async () => (await inboundVideo(sub.page))?.framesDecoded > 10, {
    timeoutMs: 30_000,
    what: 'the subscriber to decode the camera',
  });

  // A small tile: the quarter layer.
  await askFor(sub.page, { width: 320, height: 180 });
  const small = await eventually(
    async () => {
      const v = await inboundVideo(sub.page);
      return v && v.frameWidth > 0 && v.frameWidth <= 320 ? v : null;
    },
    { timeoutMs: 20_000, what: 'the subscriber to decode at most 320 wide' },
  );
  const layers = await layerEvents(sub.page);
  assert.equal(layers.at(-1)?.rid, 'q', `track:layer events: ${JSON.stringify(layers)}`);
  assert.ok(layers.at(-1).width <= 320, JSON.stringify(layers.at(-1)));

  // A big tile: at least the half layer; decoding never stops on the way.
  await askFor(sub.page, { width: 1280, height: 720 });
  let last = small.framesDecoded;
  const big = await eventually(
    async () => {
      const v = await inboundVideo(sub.page);
      if (!v) return null;
      assert.ok(v.framesDecoded >= last, 'framesDecoded never goes back');
      last = v.framesDecoded;
      return v.frameWidth >= 640 ? v : null;
    },
    { timeoutMs: 45_000, what: 'the subscriber to decode at least 640 wide' },
  );
  await eventually(async () => (await inboundVideo(sub.page)).framesDecoded > big.framesDecoded + 10, {
    timeoutMs: 15_000,
    what: 'framesDecoded to keep rising after the switch',
  });
  assert.deepEqual(errors, []);
});

it('a paused track stops the publisher’s layers, and resuming brings one back', { timeout: 150_000 }, async () => {
  const room = `dyn${Date.now() % 100000}`;
  const publisher = await joinAsPublisher(room);
  const sub = await joinRoomPage(server, 'sub', room, { errors });
  browsers.push(sub.browser);
  await eventually(async () => (await inboundVideo(sub.page))?.framesDecoded > 10, {
    timeoutMs: 30_000,
    what: 'the subscriber to decode the camera',
  });

  await askFor(sub.page, { paused: true });
  // Stopped layers send nothing: no byte grows over two seconds.
  const sentNow = async () => Object.values(await outboundLayers(publisher)).reduce((n, l) => n + l.bytesSent, 0);
  await eventually(
    async () => {
      const before = await sentNow();
      await new Promise((r) => setTimeout(r, 2000));
      return (await sentNow()) === before;
    },
    { timeoutMs: 30_000, what: 'the publisher to stop every layer' },
  );
  const stopped = await outboundLayers(publisher);
  assert.ok(
    Object.values(stopped).every((l) => l.active === false || l.active === undefined),
    JSON.stringify(stopped),
  );
  const paused = await layerEvents(sub.page);
  assert.equal(paused.at(-1)?.paused, true, JSON.stringify(paused));

  await askFor(sub.page, { width: 320, height: 180 });
  const before = (await inboundVideo(sub.page)).framesDecoded;
  await eventually(async () => (await outboundLayers(publisher)).q?.active === true, {
    timeoutMs: 10_000,
    what: 'the quarter layer to be resumed',
  });
  await eventually(async () => (await inboundVideo(sub.page)).framesDecoded > before + 10, {
    timeoutMs: 20_000,
    what: 'the subscriber to decode again',
  });
  assert.deepEqual(errors, []);
});

// The downlink is limited by the server's own per-subscriber cap (`media:bandwidth`), which the
// test sets and lifts; the allocator treats it like a lower bandwidth estimate.
it('a subscriber whose downlink is capped drops to a lower layer and recovers when it lifts', { timeout: 150_000 }, async () => {
  const room = `bw${Date.now() % 100000}`;
  await joinAsPublisher(room);
  const sub = await joinRoomPage(server, 'sub', room, { errors });
  browsers.push(sub.browser);
  await askFor(sub.page, { width: 1280, height: 720 });
  await eventually(async () => (await inboundVideo(sub.page))?.frameWidth >= 640, {
    timeoutMs: 45_000,
    what: 'the subscriber to decode at least 640 wide',
  });

  const cap = (maxBitrate) =>
    sub.page.evaluate(
      (maxBitrate) => window.chorus.client.request('media:bandwidth', { callId: window.chorus.call.callId, maxBitrate }),
      maxBitrate,
    );
  await cap(250_000);
  const capped = Date.now();
  const low = await eventually(
    async () => {
      const v = await inboundVideo(sub.page);
      return v && v.frameWidth > 0 && v.frameWidth <= 320 ? v : null;
    },
    { timeoutMs: 20_000, what: 'the capped subscriber to drop to the quarter layer' },
  );
  const dropped = Date.now() - capped;
  await eventually(async () => (await inboundVideo(sub.page)).framesDecoded > low.framesDecoded + 10, {
    timeoutMs: 15_000,
    what: 'the capped subscriber to keep decoding',
  });

  await cap(null);
  const lifted = Date.now();
  await eventually(async () => (await inboundVideo(sub.page))?.frameWidth >= 640, {
    timeoutMs: 45_000,
    what: 'the subscriber to recover at least 640 wide once the cap is lifted',
  });
  // Measured figures, as test diagnostics (decoded width, so they include the decoder).
  console.log(`capped at 250 kbit/s: decoding ≤320 wide after ${dropped} ms; cap lifted: ≥640 wide after ${Date.now() - lifted} ms`);
  assert.deepEqual(errors, []);
});
