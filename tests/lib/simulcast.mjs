// Helpers shared by the simulcast tests: a camera that Chromium sends in three layers, and what
// a publisher sends and a subscriber receives of it.

import { open } from 'node:fs/promises';
import { inboundStreams } from './browser.mjs';

/** Chromium sends three simulcast layers only from 640×360 up: the camera is 1280×720. */
export const CAMERA = { width: 1280, height: 720, frames: 20 };

/**
 * Writes a y4m of moving stripes (so the encoder has something to spend its bitrate on), for
 * `--use-file-for-fake-video-capture`.
 */
export async function writeStripesY4m(path, { width, height, frames } = CAMERA) {
  const file = await open(path, 'w');
  await file.write(`YUV4MPEG2 W${width} H${height} F30:1 Ip A1:1 C420jpeg\n`);
  const luma = width * height;
  const frame = Buffer.alloc(luma + luma / 2);
  for (let n = 0; n < frames; n++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        frame[y * width + x] = ((x + y + n * 24) >> 3) & 1 ? 200 : 40;
      }
    }
    frame.fill(128, luma);
    await file.write('FRAME\n');
    await file.write(frame);
  }
  await file.close();
}

/** The publisher's outbound video streams: rid → {bytesSent, frameWidth, active, mimeType}. */
export async function outboundLayers(page) {
  return page.evaluate(async () => {
    const pc = window.chorus?.pc;
    if (!pc) return {};
    const report = await pc.getStats();
    const out = {};
    report.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
        out[s.rid] = {
          bytesSent: s.bytesSent ?? 0,
          frameWidth: s.frameWidth ?? 0,
          active: s.active,
          mimeType: report.get(s.codecId)?.mimeType ?? null,
          keyFramesEncoded: s.keyFramesEncoded ?? 0,
          // Keyframe requests the layer received (the SFU's own, and any it forwards).
          keyframeRequests: (s.pliCount ?? 0) + (s.firCount ?? 0),
        };
      }
    });
    return out;
  });
}

/** The one inbound video stream of a subscriber that has decoded frames, or null. */
export async function inboundVideo(page) {
  return (await inboundStreams(page)).find((s) => s.kind === 'video' && s.framesDecoded > 0) ?? null;
}

/**
 * Sends `track:settings` for the publisher's camera track from the subscriber's page, after
 * stopping the page's tile watchers so that the test alone decides what is asked.
 */
export async function askFor(page, settings) {
  return page.evaluate(async (settings) => {
    const call = window.chorus.call;
    for (const w of call.tileWatches.values()) w.stop();
    const trackId = [...call.trackInfo].find(([, i]) => i.kind === 'video' && i.source === 'camera')?.[0];
    return window.chorus.client.request('track:settings', { callId: call.callId, trackId, ...settings });
  }, settings);
}

/** `track:layer` events the subscriber's client logged, oldest first, with `at`: when it got each. */
export async function layerEvents(page) {
  return page.evaluate(() =>
    (window.chorus.client.log ?? []).filter((e) => e.event === 'track:layer').map((e) => ({ at: e.at, ...e.data })),
  );
}

/**
 * A page setup (for `joinRoomPage`) that makes the page's video transceivers offer only
 * `mimeType` (`video/VP9`, ...): the demo page offers every codec the browser has, and the SFU
 * answers VP8 whenever it is offered (docs/protocol.md). Each simulcast layer is sent as its own
 * stream with temporal layers only (`L1T3`), as browsers do for VP8; with `svc` (a scalability
 * mode such as `L3T3_KEY`) the camera is sent as one stream with those layers, at `maxBitrate`
 * (bit/s), instead. The
 * sender keeps its resolution (`degradationPreference`), so the sizes stay the camera's.
 */
export function offerOnlyCodec(mimeType, { svc, maxBitrate = 1_500_000 } = {}) {
  return (page) =>
    page.addInitScript(
      ({ mimeType, svc, maxBitrate }) => {
        const add = RTCPeerConnection.prototype.addTransceiver;
        RTCPeerConnection.prototype.addTransceiver = function (trackOrKind, init = {}) {
          const kind = typeof trackOrKind === 'string' ? trackOrKind : trackOrKind.kind;
          if (kind === 'video' && init.sendEncodings?.length > 1) {
            const sendEncodings = svc
              ? [{ scalabilityMode: svc, maxBitrate }]
              : init.sendEncodings.map((e) => ({ ...e, scalabilityMode: 'L1T3' }));
            init = { ...init, sendEncodings };
          }
          const transceiver = add.call(this, trackOrKind, init);
          if (kind === 'video') {
            // Only the codec and its helpers: the SFU answers in its own codec order.
            const helpers = ['video/rtx', 'video/red', 'video/ulpfec'];
            const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
            const wanted = codecs.filter((c) => c.mimeType === mimeType);
            if (wanted.length === 0) throw new Error(`this browser cannot receive ${mimeType}`);
            transceiver.setCodecPreferences([...wanted, ...codecs.filter((c) => helpers.includes(c.mimeType))]);
            // The stripes are hard to encode: left to itself, the encoder scales its layers
            // down to keep its quality (H.264 and VP9 here), so neither the layers' sizes nor
            // SVC's spatial layers would be what the test expects. A refusal is an unhandled
            // rejection, which fails the test as a page error.
            transceiver.sender.setParameters({
              ...transceiver.sender.getParameters(),
              degradationPreference: 'maintain-resolution',
            });
          }
          return transceiver;
        };
      },
      { mimeType, svc, maxBitrate },
    );
}
