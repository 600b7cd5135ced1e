// Headless Chromium (the Debian package) through playwright-core, with the launch recipe from
// ENGINEERING.md §5. Each browser gets a fresh profile directory, removed on close.

import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { eventually } from './wait.mjs';

export { eventually };

export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

export const chromiumAvailable = () => existsSync(CHROMIUM);

/**
 * Launches a persistent context on a fresh profile; `close()` also deletes the profile.
 * `executablePath` replaces Chromium (e.g. a wrapper that starts it in a network namespace).
 */
export async function launchBrowser({ viewport = { width: 1280, height: 800 }, extraArgs = [], executablePath = CHROMIUM } = {}) {
  const profile = await mkdtemp(join(tmpdir(), 'chorus-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    viewport,
    timeout: 30_000,
  });
  context.setDefaultTimeout(15_000);
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Inbound video stats of the page's `window.chorus.pc`: the sum over inbound-rtp video streams
 * of framesDecoded, the largest frameWidth, and packetsReceived for audio.
 */
export async function inboundStats(page) {
  return page.evaluate(async () => {
    const pc = window.chorus?.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    const out = { framesDecoded: 0, frameWidth: 0, audioPackets: 0, connectionState: pc.connectionState };
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const kind = s.kind ?? s.mediaType;
      if (kind === 'video') {
        out.framesDecoded += s.framesDecoded ?? 0;
        out.frameWidth = Math.max(out.frameWidth, s.frameWidth ?? 0);
      } else if (kind === 'audio') {
        out.audioPackets += s.packetsReceived ?? 0;
      }
    });
    return out;
  });
}

/**
 * Every inbound-rtp stream of the page's `window.chorus.pc`, one entry each:
 * `{id, kind, mid, trackIdentifier, framesDecoded, frameWidth, packetsReceived}`.
 */
export async function inboundStreams(page) {
  return page.evaluate(async () => {
    const pc = window.chorus?.pc;
    if (!pc) return [];
    const report = await pc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      out.push({
        id: s.id,
        kind: s.kind ?? s.mediaType,
        mid: s.mid ?? null,
        trackIdentifier: s.trackIdentifier ?? null,
        framesDecoded: s.framesDecoded ?? 0,
        frameWidth: s.frameWidth ?? 0,
        packetsReceived: s.packetsReceived ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
        mimeType: report.get(s.codecId)?.mimeType ?? null,
      });
    });
    return out;
  });
}

/**
 * The selected ICE candidate pair of `window.chorus.pc` (transport's selectedCandidatePairId,
 * else the nominated succeeded pair) with its local and remote candidates:
 * `{state, nominated, local: {protocol, address, port, candidateType}, remote: {...}}`.
 */
export async function selectedCandidatePair(page) {
  return page.evaluate(async () => {
    const pc = window.chorus?.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let pair = null;
    for (const s of byId.values()) {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    }
    if (!pair) {
      for (const s of byId.values()) {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
      }
    }
    if (!pair) return null;
    const cand = (id) => {
      const c = byId.get(id);
      return c ? { protocol: c.protocol, address: c.address, port: c.port, candidateType: c.candidateType, tcpType: c.tcpType ?? null } : null;
    };
    return {
      state: pair.state,
      nominated: !!pair.nominated,
      local: cand(pair.localCandidateId),
      remote: cand(pair.remoteCandidateId),
    };
  });
}

/**
 * A fresh browser for `name` that opens the demo page of `server` and joins `room` from the
 * login form. `setup(page)` runs before the page loads (init scripts); page errors are pushed
 * to `errors`; `launch` adds options of `launchBrowser` and `url` replaces the server's. Returns
 * `{name, page, browser}`; the caller closes the browser.
 */
export async function joinRoomPage(server, name, room, { viewport, setup, errors = [], launch = {}, url = server.url } = {}) {
  const browser = await launchBrowser({ ...(viewport ? { viewport } : {}), ...launch });
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  if (setup) await setup(page);
  await page.goto(url);
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-room').fill(room);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('call-view').waitFor({ state: 'visible' });
  return { name, page, browser };
}

/** Waits until `page` decodes a remote video stream, then until that stream keeps decoding. */
export async function decodesRemoteVideo(page, label, { timeoutMs = 30_000 } = {}) {
  const first = await eventually(
    async () => (await inboundStreams(page)).find((s) => s.kind === 'video' && s.framesDecoded > 0 && s.frameWidth > 0),
    { timeoutMs, what: `${label} to decode video` },
  );
  return eventually(
    async () => (await inboundStreams(page)).find((s) => s.id === first.id && s.framesDecoded > first.framesDecoded + 10),
    { timeoutMs: 15_000, what: `${label}: framesDecoded to rise` },
  );
}

/**
 * Waits until `count` distinct inbound video streams have decoded frames with a width, then
 * until at least `count` of them have each decoded 10 more: video keeps flowing from that many
 * senders (a stream of a stopped track may linger in the stats, but it does not rise).
 * `timeoutMs` and `risingTimeoutMs` bound the two waits.
 */
export async function decodesVideoStreams(page, count, label, { timeoutMs = 30_000, risingTimeoutMs = 15_000 } = {}) {
  const decoding = async () =>
    (await inboundStreams(page)).filter((s) => s.kind === 'video' && s.framesDecoded > 0 && s.frameWidth > 0);
  await eventually(async () => (await decoding()).length >= count, {
    timeoutMs,
    what: `${label} to decode ${count} video streams`,
  });
  // Each stream is measured from when it was first seen here: a stream that appears later (the
  // page renegotiated, or opened a new RTCPeerConnection) counts from its own first sight.
  const first = new Map();
  await eventually(
    async () => {
      const now = await decoding();
      for (const s of now) if (!first.has(s.id)) first.set(s.id, s.framesDecoded);
      return now.filter((s) => s.framesDecoded > first.get(s.id) + 10).length >= count;
    },
    { timeoutMs: risingTimeoutMs, what: `${label}: framesDecoded to rise on ${count} video streams` },
  );
}

/**
 * Which users' video the page decodes, by source (`<userId>:camera`, sorted): each inbound video
 * stream's `mid` mapped to its track (the server offer's `tracks`) and that track's publisher
 * (`track:published`).
 */
export async function decodedVideoBy(page) {
  return page.evaluate(async () => {
    const call = window.chorus.call;
    if (!call?.pc) return [];
    const report = await call.pc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'video' || !(s.framesDecoded > 0)) return;
      const info = call.trackInfo.get(call.sfu?.midToTrack.get(s.mid));
      out.push(`${info?.userId ?? '?'}:${info?.source ?? '?'}`);
    });
    return out.sort();
  });
}
