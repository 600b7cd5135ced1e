// Simulcast through the SFU with real browsers. A publisher's fake camera plays a generated
// 960×540 y4m (Chromium sends three layers only from 640×360 up), and the demo page publishes
// it in three layers (q, h, f), in VP8 or, offered alone, VP9, H.264 or AV1. A subscriber asks, with `track:settings`, for a small tile and
// then a large one, and decodes what it asked for without a pause in decoding; when it pauses
// the track, the publisher is told to stop its layers (dynacast: its outbound streams stop),
// and when it resumes, a layer comes back. A subscriber that asks for fewer frames per second
// decodes fewer (VP8's temporal layers), and every frame again when it lifts the ask.
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
import {
  CAMERA,
  askFor,
  inboundVideo,
  layerEvents,
  outboundLayers,
  offerOnlyCodec,
  writeStripesY4m,
} from '../lib/simulcast.mjs';

let server;
/** A server without congestion control, for the VP9 spatial layer and frame rate tests (see there). */
let svcServer;
let dir;
let y4m;
let y4mSvc;
/** The quarter layer's intended size. */
const SMALL_TILE = { width: 240, height: 135 };
/** Width of the camera's half layer: a large tile gets at least this once bandwidth allows. */
const HALF_WIDTH = 480;
const browsers = [];
const errors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  dir = await mkdtemp(join(tmpdir(), 'chorus-simulcast-'));
  y4m = join(dir, 'camera.y4m');
  // 960×540 rather than the usual 1280×720: every layer is then smaller than the SFU's nominal
  // size for its rank (320×180, 640×360, 1280×720), so a `track:layer` size that matches the
  // decoded frames shows the SFU read it from the keyframe.
  await writeStripesY4m(y4m, { ...CAMERA, width: 960, height: 540 });
  y4mSvc = join(dir, 'camera-svc.y4m');
  await writeStripesY4m(y4mSvc, { ...CAMERA, width: 640, height: 360 });
  server = await startServer();
  svcServer = await startServer({ args: ['--set', 'sfu.congestion_control=false'] });
});

afterEach(async () => {
  for (const b of browsers.splice(0)) await b.close();
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
  await svcServer?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The publisher's page with a y4m camera; `setup` as for `joinRoomPage`. */
async function joinAsPublisher(room, setup, camera = y4m, on = server) {
  const publisher = await joinRoomPage(on, 'pub', room, {
    errors,
    setup,
    launch: { extraArgs: [`--use-file-for-fake-video-capture=${camera}`] },
  });
  browsers.push(publisher.browser);
  return publisher.page;
}

/**
 * A `track:layer` size read from the camera's keyframes: below `nominal` (the size the SFU
 * assumes for the layer's rank when the codec does not tell) and 16:9 like the camera, give or
 * take the encoder's rounding to even sizes.
 */
function assertKeyframeSize(layer, nominal) {
  assert.ok(layer && layer.width > 0 && layer.width < nominal, `track:layer ${JSON.stringify(layer)}`);
  assert.ok(Math.abs(layer.width * 9 - layer.height * 16) <= 32, `track:layer ${JSON.stringify(layer)}`);
}

// Every codec the SFU switches layers in. The demo page sends VP8 by default; for the others
// the publisher's page offers only that codec, and each layer is its own stream (RFC 8853
// simulcast, not VP9's or AV1's spatial layers), switched at that layer's keyframes.
for (const codec of ['VP8', 'VP9', 'H264', 'AV1']) {
  it(`${codec}: a subscriber decodes the layer its tile asks for, switched without a pause`, { timeout: 150_000 }, async () => {
    const room = `sim${codec}${Date.now() % 100000}`;
    const mimeType = `video/${codec}`;
    const publisher = await joinAsPublisher(room, codec === 'VP8' ? undefined : offerOnlyCodec(mimeType));
    const sub = await joinRoomPage(server, 'sub', room, { errors });
    browsers.push(sub.browser);

    // The publisher sends three layers in the codec.
    const sent = await eventually(
      async () => {
        const layers = await outboundLayers(publisher);
        return Object.keys(layers).length === 3 && Object.values(layers).every((l) => l.mimeType) ? layers : null;
      },
      { timeoutMs: 30_000, what: 'the publisher to send three simulcast layers' },
    );
    assert.deepEqual(Object.values(sent).map((l) => l.mimeType), [mimeType, mimeType, mimeType], JSON.stringify(sent));
    const first = await eventually(async () => {
      const v = await inboundVideo(sub.page);
      return v?.framesDecoded > 10 ? v : null;
    }, {
      timeoutMs: 30_000,
      what: 'the subscriber to decode the camera',
    });
    assert.equal(first.mimeType, mimeType, JSON.stringify(first));

    // A small tile: the quarter layer. The SFU picks the smallest layer that covers the tile
    // (so a 320×180 tile would get the half layer of this camera), give or take 5 % for the
    // encoder's rounding: H.264's quarter layer is 240×134.
    await askFor(sub.page, SMALL_TILE);
    const small = await eventually(
      async () => {
        const v = await inboundVideo(sub.page);
        return v && v.frameWidth > 0 && v.frameWidth <= 320 ? v : null;
      },
      { timeoutMs: 20_000, what: 'the subscriber to decode at most 320 wide' },
    );
    const layers = await layerEvents(sub.page);
    assert.equal(layers.at(-1)?.rid, 'q', `track:layer events: ${JSON.stringify(layers)}`);
    assertKeyframeSize(layers.at(-1), 320);

    // A big tile: at least the half layer; decoding never stops on the way.
    await askFor(sub.page, { width: 1280, height: 720 });
    let last = small.framesDecoded;
    const big = await eventually(
      async () => {
        const v = await inboundVideo(sub.page);
        if (!v) return null;
        assert.ok(v.framesDecoded >= last, 'framesDecoded never goes back');
        last = v.framesDecoded;
        return v.frameWidth >= HALF_WIDTH ? v : null;
      },
      { timeoutMs: 45_000, what: `the subscriber to decode at least ${HALF_WIDTH} wide` },
    );
    await eventually(async () => (await inboundVideo(sub.page)).framesDecoded > big.framesDecoded + 10, {
      timeoutMs: 15_000,
      what: 'framesDecoded to keep rising after the switch',
    });
    assertKeyframeSize((await layerEvents(sub.page)).at(-1), 1280);
    // One continuous stream through both switches: the same receiver, the same codec.
    assert.equal(big.id, first.id);
    assert.equal(big.mimeType, mimeType);
    console.log(`${codec}: ${JSON.stringify(await layerEvents(sub.page))}`);
    assert.deepEqual(errors, []);
  });
}

// Spatial and temporal layers inside one stream (SVC), with the dependency descriptor
// extension the publisher sends with them: a subscriber that asks for nothing in particular
// decodes the top spatial layer, and learns its size (the nominal size of a track without
// simulcast is 1280×720). Without the descriptor, Chromium decodes no frame of AV1 with
// spatial layers and only part of VP9's (ADR 0090). The camera is 640×360 at 600 kbit/s, so
// that two browsers encoding and decoding three spatial layers fit in this machine's cores
// and a subscriber's first estimate.
//
// Spatial layers are chosen per subscriber: VP9's (ADR 0093) by its payload descriptor, which
// names each packet's layer, and a keyframe's scalability structure, which gives their sizes;
// AV1's (ADR 0102) by the dependency descriptor, whose template structure gives each
// template's layer and the layers' sizes. Chromium encodes this camera in two spatial layers,
// not three (320×180 and 640×360). A small tile gets the base layer alone, then a big one
// both, in one stream that never stops decoding. Here the tile alone decides: this server runs
// without congestion control. With it, the subscriber's estimate sinks to the base layer's
// rate while only that flows, and on this loaded machine took 10 s or more to grow back to both
// layers' (or did not within 45 s): that is the bandwidth tests' subject, not this one's.
for (const codec of ['VP9', 'AV1']) {
  const title = `${codec} with spatial layers in one stream (L3T3_KEY): a small tile gets the base layer, a big one all of them`;
  it(title, { timeout: 150_000 }, async () => {
    const room = `svc${codec}${Date.now() % 100000}`;
    const mimeType = `video/${codec}`;
    const publisher = await joinAsPublisher(
      room,
      offerOnlyCodec(mimeType, { svc: 'L3T3_KEY', maxBitrate: 600_000 }),
      y4mSvc,
      svcServer,
    );
    const sub = await joinRoomPage(svcServer, 'sub', room, { errors });
    browsers.push(sub.browser);
    const full = await eventually(
      async () => {
        const v = await inboundVideo(sub.page);
        return v?.frameWidth === 640 && v.framesDecoded > 10 ? v : null;
      },
      { timeoutMs: 45_000, what: 'the subscriber to decode the top spatial layer, 640 wide' },
    );
    assert.equal(full.mimeType, mimeType, JSON.stringify(full));
    const sent = await outboundLayers(publisher);
    assert.deepEqual(Object.keys(sent), [], `one stream, no rids: ${JSON.stringify(sent)}`);
    await eventually(async () => (await inboundVideo(sub.page)).framesDecoded > full.framesDecoded + 30, {
      timeoutMs: 15_000,
      what: 'framesDecoded to keep rising',
    });
    // The size is the top layer's.
    const shown = (l) => (({ rid, width, height }) => ({ rid, width, height }))(l ?? {});
    const layers = await eventually(
      async () => {
        const all = await layerEvents(sub.page);
        return shown(all.at(-1)).width === 640 ? all : null;
      },
      { timeoutMs: 15_000, what: 'track:layer to say 640 wide' },
    );
    console.log(`${codec} SVC: ${JSON.stringify(layers)}, ${JSON.stringify(await inboundVideo(sub.page))}`);
    assert.deepEqual(shown(layers.at(-1)), { rid: null, width: 640, height: 360 }, JSON.stringify(layers));
    // What a subscriber receives per second, measured over 2 s.
    const rate = async () => {
      const a = await inboundVideo(sub.page);
      await new Promise((r) => setTimeout(r, 2000));
      const b = await inboundVideo(sub.page);
      return ((b.bytesReceived - a.bytesReceived) * 8) / 2;
    };
    const fullRate = await rate();

    // A tile of 320×180: the base layer alone, told by `track:layer`, at a fraction of the
    // cost, decoding all along.
    await askFor(sub.page, { width: 320, height: 180 });
    let last = 0;
    const small = await eventually(
      async () => {
        const v = await inboundVideo(sub.page);
        assert.ok(v.framesDecoded >= last, 'framesDecoded never goes back');
        last = v.framesDecoded;
        return v.frameWidth > 0 && v.frameWidth <= 320 ? v : null;
      },
      { timeoutMs: 20_000, what: 'the subscriber to decode the base layer, at most 320 wide' },
    );
    await eventually(async () => (await inboundVideo(sub.page)).framesDecoded > small.framesDecoded + 30, {
      timeoutMs: 15_000,
      what: 'framesDecoded to keep rising on the base layer',
    });
    const baseRate = await rate();
    const onBase = await inboundVideo(sub.page);
    assert.ok(onBase.frameWidth <= 320, JSON.stringify(onBase));
    assert.deepEqual(shown((await layerEvents(sub.page)).at(-1)), { rid: null, width: 320, height: 180 });

    // A big tile: both layers again from the next keyframe, in the same stream, decoding all
    // along.
    const asked = Date.now();
    await askFor(sub.page, { width: 1280, height: 720 });
    last = onBase.framesDecoded;
    const big = await eventually(
      async () => {
        const v = await inboundVideo(sub.page);
        assert.ok(v.framesDecoded >= last, 'framesDecoded never goes back');
        last = v.framesDecoded;
        return v.frameWidth === 640 ? v : null;
      },
      { timeoutMs: 20_000, what: 'the subscriber to decode the top layer again' },
    );
    const steppedUp = (await layerEvents(sub.page)).at(-1);
    assert.deepEqual(shown(steppedUp), { rid: null, width: 640, height: 360 });
    console.log(
      `${codec} SVC: stepped up ${steppedUp.at - asked} ms and the top layer decoded ${Date.now() - asked} ms after the big tile was asked for`,
    );
    // VP9 only (open, issue 12): in some runs Chromium receives both layers after the step up
    // but drops most frames for several seconds (framesDecoded still for 3-4 s while
    // framesReceived rises by 30 a second) until its own PLI brings a keyframe; one CI run
    // did not see 30 more frames within 15 s. The rise is still required, within 30 s.
    await eventually(async () => (await inboundVideo(sub.page)).framesDecoded > big.framesDecoded + 30, {
      timeoutMs: 30_000,
      what: 'framesDecoded to keep rising after the step up',
    });
    // The publisher's encoder may still be ramping up when the first full rate is measured
    // (one CI-like run measured 171 kbit/s there against 340-576 in three runs after it): the
    // base layer is compared with the higher of the full rates before and after it.
    const fullAgain = await rate();
    const kbit = (r) => Math.round(r / 1000);
    console.log(
      `${codec} SVC: all layers ${kbit(fullRate)} then ${kbit(fullAgain)} kbit/s, base layer ${kbit(baseRate)} kbit/s`,
    );
    const fullest = Math.max(fullRate, fullAgain);
    assert.ok(baseRate < fullest / 2, `base ${baseRate} bit/s, all ${fullRate} then ${fullAgain} bit/s`);
    assert.equal(big.id, full.id, 'one receiver throughout');
    assert.deepEqual(errors, []);
  });
}

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

  await askFor(sub.page, SMALL_TILE);
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

// A subscriber that asks for fewer frames (`track:settings {frameRate}`) gets fewer of the
// layer's temporal layers: Chromium sends each VP8 or VP9 simulcast layer as `L1T3`, so 5 frames
// per second is reached by the base temporal layer alone, a quarter of the frames (7.5 of 30).
// `track:layer` says the rate, and the subscriber's decoder shows it; without `frameRate` every
// frame comes back, from the next frame the stream marks as a switch point (VP9's `U` bit, the
// dependency descriptor's indications for VP8 and AV1), with no keyframe asked of the publisher.
// On the server without congestion control, so that only what is asked decides.
for (const codec of ['VP8', 'VP9', 'AV1']) {
  it(`${codec}: a subscriber that asks for fewer frames decodes fewer, and every frame again when it lifts`, { timeout: 150_000 }, async () => {
    const room = `fps${codec}${Date.now() % 100000}`;
    const publisher = await joinAsPublisher(room, codec === 'VP8' ? undefined : offerOnlyCodec(`video/${codec}`), y4m, svcServer);
    const sub = await joinRoomPage(svcServer, 'sub', room, { errors });
    browsers.push(sub.browser);
    await askFor(sub.page, SMALL_TILE);
    await eventually(async () => (await inboundVideo(sub.page))?.framesDecoded > 30, {
      timeoutMs: 30_000,
      what: 'the subscriber to decode the quarter layer',
    });
    /** Frames decoded per second over 3 s. */
    const decodedRate = async () => {
      const a = await inboundVideo(sub.page);
      await new Promise((r) => setTimeout(r, 3000));
      const b = await inboundVideo(sub.page);
      return (b.framesDecoded - a.framesDecoded) / 3;
    };
    let seen = [];
    const latestLayer = async () => {
      seen = await layerEvents(sub.page);
      return seen.at(-1) ?? {};
    };
    const withEvents = (e) => {
      throw new Error(`${e.message}; track:layer events: ${JSON.stringify(seen)}`);
    };
    const full = await decodedRate();

    await askFor(sub.page, { ...SMALL_TILE, frameRate: 5 });
    const told = await eventually(
      async () => {
        const l = await latestLayer();
        return l.rid === 'q' && l.frameRate > 0 && l.frameRate <= 10 ? l : null;
      },
      { timeoutMs: 15_000, what: 'track:layer to announce at most 10 frames per second' },
    ).catch(withEvents);
    await new Promise((r) => setTimeout(r, 1000));
    const reduced = await decodedRate();

    const before = (await outboundLayers(publisher)).q;
    await askFor(sub.page, SMALL_TILE);
    const back = await eventually(
      async () => {
        const l = await latestLayer();
        return l.rid === 'q' && l.frameRate >= told.frameRate * 2 ? l : null;
      },
      { timeoutMs: 15_000, what: 'track:layer to announce every frame again' },
    ).catch(withEvents);
    const after = (await outboundLayers(publisher)).q;
    await new Promise((r) => setTimeout(r, 1000));
    const again = await decodedRate();
    console.log(
      `${codec} frame rate: ${full.toFixed(1)} decoded/s; asked for 5: told ${told.frameRate}, ${reduced.toFixed(1)} decoded/s; ` +
        `lifted: told ${back.frameRate}, ${again.toFixed(1)} decoded/s; keyframe requests to the q layer ` +
        `${before.keyframeRequests} -> ${after.keyframeRequests}, keyframes encoded ${before.keyFramesEncoded} -> ${after.keyFramesEncoded}`,
    );
    assert.equal(after.keyframeRequests, before.keyframeRequests, `${codec}: the rise asked for no keyframe`);
    assert.ok(reduced > 2, `still decoding: ${reduced} frames/s`);
    // `frameRate` is measured when the event is sent and the publisher's own rate moves under
    // load (a clean-clone CI run saw the quarter layer announced at 19 while 29.7 were decoded,
    // then 5 announced and 7.3 decoded), so the decoded rate is held to the bound waited for.
    assert.ok(reduced <= 12, `${reduced} frames/s decoded, ${told.frameRate} announced: ${JSON.stringify(seen)}`);
    assert.ok(full >= reduced * 1.8, `${full} frames/s before the ask, ${reduced} after`);
    assert.ok(again >= reduced * 1.8, `${again} frames/s after the lift, ${reduced} before`);
    assert.deepEqual(errors, []);
  });
}

// The demo page itself asks for fewer frames for a camera thumbnail (a tile whose shorter side
// is under 180 CSS pixels): 15 per second, which VP8's `L1T3` gives with its two lower temporal
// layers; a bigger tile asks for every frame again. The tile watcher decides here, not the test:
// the test only resizes the tile and records what the page sends.
it('the demo page asks for half the frames for a camera thumbnail, and every frame for a bigger tile', { timeout: 150_000 }, async () => {
  const room = `thumb${Date.now() % 100000}`;
  await joinAsPublisher(room, undefined, y4m, svcServer);
  const sub = await joinRoomPage(svcServer, 'sub', room, { errors });
  browsers.push(sub.browser);
  await sub.page.evaluate(() => {
    const client = window.chorus.client;
    const request = client.request.bind(client);
    window.sentSettings = [];
    client.request = (event, data, ...rest) => {
      if (event === 'track:settings') window.sentSettings.push(data);
      return request(event, data, ...rest);
    };
  });
  const resizeTile = (width, height) =>
    sub.page.evaluate(
      ([width, height]) => {
        const tile = document.querySelector('[data-testid=tile-remote]');
        Object.assign(tile.style, { position: 'fixed', left: '0', top: '0', zIndex: '9', width: `${width}px`, height: `${height}px` });
      },
      [width, height],
    );
  await eventually(async () => (await inboundVideo(sub.page))?.framesDecoded > 30, {
    timeoutMs: 30_000,
    what: 'the subscriber to decode the camera',
  });
  const sent = () => sub.page.evaluate(() => window.sentSettings);
  let seen = [];
  const latestLayer = async () => {
    seen = await layerEvents(sub.page);
    return seen.at(-1) ?? {};
  };

  const dpr = await sub.page.evaluate(() => window.devicePixelRatio || 1);
  // The page's clock, which stamps its `track:layer` log: only an announcement after the
  // thumbnail's ask counts (one before it may be low while the publisher's encoder warms up).
  const resizedAt = await sub.page.evaluate(() => Date.now());
  await resizeTile(240, 135);
  const asked = await eventually(async () => (await sent()).find((s) => s.frameRate === 15 && s.paused === false), {
    timeoutMs: 5_000,
    what: 'the page to ask for 15 frames per second for the thumbnail',
  });
  assert.equal(asked.width, Math.round(240 * dpr), JSON.stringify(asked));
  const thumbnailAsks = (await sent()).length;
  // Measured from the publisher: 15 of its 30 (up to 5 % short), or every frame when its
  // encoder runs slower under load and only all of them reach 15.
  const thinned = await eventually(
    async () => {
      const l = await latestLayer();
      return l.at >= resizedAt && l.frameRate > 0 && l.frameRate <= 20 ? l : null;
    },
    { timeoutMs: 15_000, what: 'track:layer to announce the thumbnail rate' },
  ).catch((e) => {
    throw new Error(`${e.message}; track:layer events: ${JSON.stringify(seen)}`);
  });

  await resizeTile(640, 360);
  const lifted = await eventually(
    async () =>
      (await sent())
        .slice(thumbnailAsks)
        .find((s) => s.width === Math.round(640 * dpr) && s.paused === false && s.frameRate === undefined),
    { timeoutMs: 5_000, what: 'the page to ask for every frame for the bigger tile' },
  );
  console.log(`thumbnail: asked ${JSON.stringify(asked)}, told ${thinned.frameRate} fps; bigger tile: asked ${JSON.stringify(lifted)}`);
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
  await eventually(async () => (await inboundVideo(sub.page))?.frameWidth >= HALF_WIDTH, {
    timeoutMs: 45_000,
    what: `the subscriber to decode at least ${HALF_WIDTH} wide`,
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
  await eventually(async () => (await inboundVideo(sub.page))?.frameWidth >= HALF_WIDTH, {
    timeoutMs: 45_000,
    what: `the subscriber to recover at least ${HALF_WIDTH} wide once the cap is lifted`,
  });
  // Measured figures, as test diagnostics (decoded width, so they include the decoder).
  console.log(`capped at 250 kbit/s: decoding ≤320 wide after ${dropped} ms; cap lifted: ≥${HALF_WIDTH} wide after ${Date.now() - lifted} ms`);
  assert.deepEqual(errors, []);
});

