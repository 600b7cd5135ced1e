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
import { mkdtemp, open, rm } from 'node:fs/promises';
import { startServer } from '../lib/server.mjs';
import { chromiumAvailable, CHROMIUM, eventually, inboundStreams, joinRoomPage, launchBrowser } from '../lib/browser.mjs';

const WIDTH = 1280;
const HEIGHT = 720;
const FRAMES = 20;

let server;
let dir;
let y4m;
const browsers = [];
const errors = [];

/** A y4m of moving stripes (so the encoder has something to spend its bitrate on). */
async function writeY4m(path) {
  const file = await open(path, 'w');
  await file.write(`YUV4MPEG2 W${WIDTH} H${HEIGHT} F30:1 Ip A1:1 C420jpeg\n`);
  const luma = WIDTH * HEIGHT;
  const frame = Buffer.alloc(luma + luma / 2);
  for (let n = 0; n < FRAMES; n++) {
    for (let y = 0; y < HEIGHT; y++) {
      for (let x = 0; x < WIDTH; x++) {
        frame[y * WIDTH + x] = ((x + y + n * 24) >> 3) & 1 ? 200 : 40;
      }
    }
    frame.fill(128, luma);
    await file.write('FRAME\n');
    await file.write(frame);
  }
  await file.close();
}

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  dir = await mkdtemp(join(tmpdir(), 'chorus-simulcast-'));
  y4m = join(dir, 'camera.y4m');
  await writeY4m(y4m);
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
  const browser = await launchBrowser({ extraArgs: [`--use-file-for-fake-video-capture=${y4m}`] });
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => errors.push(`publisher: ${e.message}`));
  await page.goto(server.url);
  await page.getByTestId('login-name').fill('pub');
  await page.getByTestId('login-room').fill(room);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('call-view').waitFor({ state: 'visible' });
  return page;
}

/** The publisher's outbound video streams: rid → {bytesSent, frameWidth, active}. */
async function outboundLayers(page) {
  return page.evaluate(async () => {
    const pc = window.chorus?.pc;
    if (!pc) return {};
    const report = await pc.getStats();
    const out = {};
    report.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
        out[s.rid] = { bytesSent: s.bytesSent ?? 0, frameWidth: s.frameWidth ?? 0, active: s.active };
      }
    });
    return out;
  });
}

/** The one inbound video stream of the subscriber (the publisher's camera). */
async function inboundVideo(page) {
  return (await inboundStreams(page)).find((s) => s.kind === 'video' && s.framesDecoded > 0) ?? null;
}

/** Sends `track:settings` for the publisher's camera track from the subscriber's page. */
async function askFor(page, settings) {
  return page.evaluate(async (settings) => {
    const call = window.chorus.call;
    for (const w of call.tileWatches.values()) w.stop();
    const trackId = [...call.trackInfo].find(([, i]) => i.kind === 'video' && i.source === 'camera')?.[0];
    return window.chorus.client.request('track:settings', { callId: call.callId, trackId, ...settings });
  }, settings);
}

/** `track:layer` events the subscriber's client logged, newest last. */
async function layerEvents(page) {
  return page.evaluate(() =>
    (window.chorus.client.log ?? []).filter((e) => e.event === 'track:layer').map((e) => e.data),
  );
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
