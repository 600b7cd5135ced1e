// Active speaker with real browsers: two headless Chromium instances join one room through the
// demo page, each with its own fake microphone from a WAV file this test writes: one silent,
// one playing a tone. Chromium puts RFC 6464 audio levels in its Opus packets; the SFU ranks
// the speakers from them. The silent page must get `room:speakers` with the tone's owner first
// (and the silent user never listed), and highlight the tone owner's tile; the tone's own page
// highlights its local tile; the speaker-change counter moves.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { startServer } from '../lib/server.mjs';
import { chromiumAvailable, CHROMIUM, eventually, launchBrowser } from '../lib/browser.mjs';

let server;
let wavDir;
const browsers = [];
const pageErrors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  server = await startServer();
  wavDir = await mkdtemp(join(tmpdir(), 'chorus-wav-'));
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
  if (wavDir) await rm(wavDir, { recursive: true, force: true });
});

/**
 * A 16-bit mono PCM WAV of `seconds` at 48 kHz: a sine of `hz` at `amplitude` (0..1 of full
 * scale), or silence for amplitude 0. Chromium loops the file.
 */
function wav({ seconds, hz = 440, amplitude }) {
  const rate = 48_000;
  const samples = rate * seconds;
  const buf = Buffer.alloc(44 + samples * 2);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + samples * 2, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16); // fmt chunk size
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28); // byte rate
  buf.writeUInt16LE(2, 32); // block align
  buf.writeUInt16LE(16, 34); // bits per sample
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) {
    const v = Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * hz * i) / rate));
    buf.writeInt16LE(v, 44 + i * 2);
  }
  return buf;
}

/** A browser whose fake microphone plays `file`, signed in as `name`, joined to `room`. */
async function joinWithMicrophone(name, room, file) {
  const browser = await launchBrowser({ extraArgs: [`--use-file-for-fake-audio-capture=${file}`] });
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(server.url);
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-room').fill(room);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('call-view').waitFor({ state: 'visible' });
  const userId = (await page.getByTestId('my-user-id').textContent()).trim();
  assert.ok(userId.length > 0);
  return { name, page, userId };
}

/** Every `room:speakers` payload the page received, oldest first. */
const speakerEvents = (page) =>
  page.evaluate(() => window.chorus.client.log.filter((e) => e.event === 'room:speakers').map((e) => e.data));

it('the participant playing a tone is reported first, the silent one never', { timeout: 120_000 }, async () => {
  const silent = join(wavDir, 'silence.wav');
  const tone = join(wavDir, 'tone.wav');
  await writeFile(silent, wav({ seconds: 5, amplitude: 0 }));
  await writeFile(tone, wav({ seconds: 5, amplitude: 0.5 }));

  const room = `speakers-${Date.now().toString(36)}`;
  const quiet = await joinWithMicrophone('Quiet', room, silent);
  const loud = await joinWithMicrophone('Loud', room, tone);

  // The quiet page hears that Loud speaks, first in the list.
  const got = await eventually(
    async () => {
      const events = await speakerEvents(quiet.page);
      return events.find((e) => e.speakers.length > 0) ?? false;
    },
    { timeoutMs: 30_000, what: 'room:speakers naming a speaker on the quiet page' },
  );
  assert.equal(got.speakers[0].userId, loud.userId, `tone owner first: ${JSON.stringify(got)}`);
  assert.ok(got.callId.endsWith(room), `callId names the room: ${got.callId}`);
  // A 0.5 full-scale sine is about -9 dBov RMS: a linear level near 0.35.
  assert.ok(got.speakers[0].level > 0.05 && got.speakers[0].level <= 1, `level ${got.speakers[0].level}`);

  // The highlight: Loud's tile on the quiet page, the local tile on Loud's own page.
  await quiet.page.locator(`[data-testid="tile-remote"][data-user="${loud.userId}"][data-speaking="active"]`).waitFor();
  await loud.page.locator('[data-testid="tile-local"][data-speaking="active"]').waitFor();

  // Keep both talking (and silent) a little longer: the silent user is never listed.
  await new Promise((r) => setTimeout(r, 2_000));
  for (const p of [quiet, loud]) {
    const events = await speakerEvents(p.page);
    assert.ok(events.length > 0, `${p.name} got room:speakers`);
    for (const e of events) {
      assert.ok(!e.speakers.some((s) => s.userId === quiet.userId), `${p.name}: silent user listed: ${JSON.stringify(e)}`);
    }
    assert.equal(events.at(-1).speakers[0]?.userId, loud.userId, `${p.name}: Loud still first`);
  }

  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const changes = Number(/^chorus_sfu_speaker_changes_total (\d+)/m.exec(metrics)?.[1] ?? 0);
  assert.ok(changes >= 1, `chorus_sfu_speaker_changes_total ${changes}`);
  assert.deepEqual(pageErrors, []);
});
