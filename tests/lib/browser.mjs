// Headless Chromium (the Debian package) through playwright-core, with the launch recipe from
// ENGINEERING.md §5. Each browser gets a fresh profile directory, removed on close.

import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

/** Launches a persistent context on a fresh profile; `close()` also deletes the profile. */
export async function launchBrowser({ viewport = { width: 1280, height: 800 }, extraArgs = [] } = {}) {
  const profile = await mkdtemp(join(tmpdir(), 'chorus-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
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

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually(fn, { timeoutMs = 15_000, intervalMs = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
