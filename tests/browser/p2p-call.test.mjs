// Real browsers through the demo page: two headless Chromium instances (two users, separate
// profiles) sign in, one calls the other, both decode each other's video over P2P WebRTC, mute
// state and screen share show up on the other side, and hanging up ends the call for both.
// Screenshots at laptop and phone size go to $CHORUS_SCREENSHOT_DIR (default: the OS temp dir).

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { startServer } from '../lib/server.mjs';
import { chromiumAvailable, CHROMIUM, eventually, inboundStats, launchBrowser } from '../lib/browser.mjs';

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

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
});

/** A browser for one user, with the demo page open and signed in as `name`. */
async function user(name, viewport = LAPTOP, loginShot = null) {
  const browser = await launchBrowser({ viewport });
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(server.url);
  await page.getByTestId('login').waitFor({ state: 'visible' });
  if (loginShot) await page.screenshot({ path: join(SHOTS, loginShot) });
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('home').waitFor({ state: 'visible' });
  await page.locator('[data-testid="conn-state"][data-state="online"]').waitFor();
  const userId = (await page.getByTestId('my-user-id').textContent()).trim();
  assert.ok(userId.length > 0);
  return { page, userId, browser };
}

async function decodesVideo(page, label) {
  const first = await eventually(
    async () => {
      const s = await inboundStats(page);
      return s && s.framesDecoded > 0 && s.frameWidth > 0 ? s : false;
    },
    { timeoutMs: 20_000, what: `${label} to decode remote video` },
  );
  // frames keep coming
  const later = await eventually(
    async () => {
      const s = await inboundStats(page);
      return s && s.framesDecoded > first.framesDecoded + 10 ? s : false;
    },
    { timeoutMs: 10_000, what: `${label} framesDecoded to rise` },
  );
  assert.ok(later.frameWidth > 0, `${label} frameWidth ${later.frameWidth}`);
  return later;
}

const remoteTile = (page) => page.locator('[data-testid="tile-remote"]');

it('two browsers complete a P2P video call through the demo page', { timeout: 120_000 }, async () => {
  const alice = await user('Alice', LAPTOP, 'login-laptop.png');
  const bob = await user('Bob');
  assert.notEqual(alice.userId, bob.userId);
  await alice.page.screenshot({ path: join(SHOTS, 'home-laptop.png') });

  // Alice calls Bob (video)
  await alice.page.getByTestId('callee-input').fill(bob.userId);
  await alice.page.getByTestId('call-video').click();
  await alice.page.getByTestId('outgoing').waitFor({ state: 'visible' });

  // Bob rings, sees who calls, accepts
  await bob.page.getByTestId('incoming').waitFor({ state: 'visible' });
  assert.match(await bob.page.getByTestId('incoming-from').textContent(), /Alice/);
  assert.equal((await bob.page.getByTestId('incoming-from-id').textContent()).trim(), alice.userId);
  await bob.page.setViewportSize(PHONE);
  await bob.page.screenshot({ path: join(SHOTS, 'incoming-phone.png') });
  await bob.page.setViewportSize(LAPTOP);
  await bob.page.getByTestId('accept').click();

  // both in the call view, decoding each other's video
  await alice.page.getByTestId('call-view').waitFor({ state: 'visible' });
  await bob.page.getByTestId('call-view').waitFor({ state: 'visible' });
  const [aStats, bStats] = await Promise.all([decodesVideo(alice.page, 'Alice'), decodesVideo(bob.page, 'Bob')]);
  assert.ok(aStats.audioPackets > 0 || bStats.audioPackets > 0, 'audio packets should arrive too');
  assert.match(await remoteTile(alice.page).locator('[data-testid="tile-name"]').textContent(), /Bob/);
  assert.match(await remoteTile(bob.page).locator('[data-testid="tile-name"]').textContent(), /Alice/);
  await alice.page.locator('[data-testid="call-state"]').filter({ hasText: 'connected' }).waitFor();

  // Alice mutes her microphone: Bob sees it; unmutes: Bob sees that too
  await alice.page.getByTestId('toggle-mic').click();
  await remoteTile(bob.page).and(bob.page.locator('[data-audio="off"]')).waitFor();
  assert.ok(await remoteTile(bob.page).getByTestId('badge-mic').isVisible());
  assert.equal(await alice.page.getByTestId('toggle-mic').getAttribute('aria-pressed'), 'true');
  await alice.page.getByTestId('toggle-mic').click();
  await remoteTile(bob.page).and(bob.page.locator('[data-audio="on"]')).waitFor();
  assert.ok(await remoteTile(bob.page).getByTestId('badge-mic').isHidden());

  // Bob turns his camera off: Alice sees the placeholder
  await bob.page.getByTestId('toggle-cam').click();
  await remoteTile(alice.page).and(alice.page.locator('[data-video="off"]')).waitFor();
  assert.ok(await remoteTile(alice.page).getByTestId('badge-cam').isVisible());
  await alice.page.setViewportSize(PHONE);
  await alice.page.screenshot({ path: join(SHOTS, 'call-camera-off-phone.png') });
  await alice.page.setViewportSize(LAPTOP);
  await bob.page.getByTestId('toggle-cam').click();
  await remoteTile(alice.page).and(alice.page.locator('[data-video="on"]')).waitFor();

  // Alice shares her (fake) screen: the video sender switches track, Bob sees the badge and keeps
  // decoding; stopping restores the camera
  const framesBefore = (await inboundStats(bob.page)).framesDecoded;
  await alice.page.getByTestId('toggle-screen').click();
  await remoteTile(bob.page).and(bob.page.locator('[data-screen="on"]')).waitFor();
  const sentLabel = await alice.page.evaluate(() => {
    const t = window.chorus.pc.getTransceivers().find((x) => x.receiver.track?.kind === 'video');
    return t?.sender.track?.label ?? null;
  });
  assert.ok(sentLabel !== null, 'a video track is being sent while sharing');
  await eventually(async () => (await inboundStats(bob.page)).framesDecoded > framesBefore + 10, {
    what: 'Bob to keep decoding during screen share',
  });
  await alice.page.screenshot({ path: join(SHOTS, 'call-sharing-laptop.png') });
  await alice.page.getByTestId('toggle-screen').click();
  await remoteTile(bob.page).and(bob.page.locator('[data-screen="off"]')).waitFor();
  assert.equal(await alice.page.getByTestId('toggle-screen').getAttribute('aria-pressed'), 'false');

  // screenshots of a live call at both sizes
  await bob.page.setViewportSize(PHONE);
  await decodesVideo(bob.page, 'Bob (phone size)');
  await bob.page.screenshot({ path: join(SHOTS, 'call-phone.png') });
  await bob.page.setViewportSize({ width: PHONE.height, height: PHONE.width });
  await bob.page.screenshot({ path: join(SHOTS, 'call-phone-landscape.png') });
  await alice.page.mouse.move(5, 400); // no hover state in the picture
  await alice.page.screenshot({ path: join(SHOTS, 'call-laptop.png') });

  // Alice hangs up: both leave the call view; Bob is told why
  await alice.page.getByTestId('hangup').click();
  await alice.page.getByTestId('home').waitFor({ state: 'visible' });
  await bob.page.getByTestId('home').waitFor({ state: 'visible' });
  const bobNotice = bob.page.getByTestId('last-call');
  assert.equal(await bobNotice.getAttribute('data-reason'), 'ended');
  assert.match(await bobNotice.textContent(), /ended/i);
  assert.match(await alice.page.getByTestId('last-call').textContent(), /ended/i);
  assert.equal(await alice.page.evaluate(() => window.chorus.pc), null);
  await bob.page.screenshot({ path: join(SHOTS, 'ended-phone.png') });

  // a reload keeps the identity
  await bob.page.reload();
  await bob.page.locator('[data-testid="conn-state"][data-state="online"]').waitFor();
  assert.equal((await bob.page.getByTestId('my-user-id').textContent()).trim(), bob.userId);

  assert.deepEqual(pageErrors, []);
});

it('a declined call tells the caller', { timeout: 60_000 }, async () => {
  const carol = await user('Carol');
  const dave = await user('Dave <script>alert(1)</script>', PHONE, 'login-phone.png');
  // calling yourself is caught on the page with a toast
  await carol.page.getByTestId('callee-input').fill(carol.userId);
  await carol.page.getByTestId('call-video').click();
  await carol.page.locator('[data-testid="toast"]').filter({ hasText: 'your own user id' }).waitFor();
  await carol.page.getByTestId('callee-input').fill(dave.userId);
  await carol.page.getByTestId('call-audio').click();
  await dave.page.getByTestId('incoming').waitFor({ state: 'visible' });
  assert.match(await dave.page.getByTestId('incoming-kind').textContent(), /Audio/);
  await dave.page.getByTestId('reject').click();
  await dave.page.getByTestId('incoming').waitFor({ state: 'hidden' });
  await carol.page.getByTestId('home').waitFor({ state: 'visible' });
  const notice = carol.page.getByTestId('last-call');
  await notice.waitFor({ state: 'visible' });
  assert.equal(await notice.getAttribute('data-reason'), 'rejected');
  // user text is rendered as text, never as markup
  assert.equal(await dave.page.locator('script:not([src])').count(), 0);
  await dave.page.screenshot({ path: join(SHOTS, 'home-phone.png') });
  assert.deepEqual(pageErrors, []);
});

it('a reload during a call offers to rejoin, and media flows again', { timeout: 90_000 }, async () => {
  const erin = await user('Erin');
  const frank = await user('Frank');
  await erin.page.getByTestId('callee-input').fill(frank.userId);
  await erin.page.getByTestId('call-video').click();
  await frank.page.getByTestId('accept').click();
  await Promise.all([decodesVideo(erin.page, 'Erin'), decodesVideo(frank.page, 'Frank')]);

  // Frank reloads: same identity, the server says the call is resumable (grace period)
  await frank.page.reload();
  await frank.page.getByTestId('resumable').waitFor({ state: 'visible' });
  await frank.page.getByTestId('resume').click();
  await frank.page.getByTestId('call-view').waitFor({ state: 'visible' });
  await Promise.all([decodesVideo(frank.page, 'Frank (rejoined)'), decodesVideo(erin.page, 'Erin (after rejoin)')]);
  assert.match(await remoteTile(frank.page).locator('[data-testid="tile-name"]').textContent(), /Erin/);

  await frank.page.getByTestId('hangup').click();
  await erin.page.getByTestId('home').waitFor({ state: 'visible' });
  assert.deepEqual(pageErrors, []);
});

it('an audio call carries audio, shows avatars, and can still share a screen', { timeout: 90_000 }, async () => {
  const gina = await user('Gina');
  const hal = await user('Hal');
  await gina.page.getByTestId('callee-input').fill(hal.userId);
  await gina.page.getByTestId('call-audio').click();
  await hal.page.getByTestId('accept').click();
  for (const [page, label] of [[gina.page, 'Gina'], [hal.page, 'Hal']]) {
    await eventually(async () => (await inboundStats(page))?.audioPackets > 20, { timeoutMs: 20_000, what: `${label} to receive audio` });
    // no camera in an audio call: the remote tile shows the avatar, and the camera control is off
    await remoteTile(page).and(page.locator('.no-video')).waitFor();
    assert.ok(await page.getByTestId('toggle-cam').isDisabled());
  }
  // screen share in an audio call: the video transceiver exists already, no renegotiation
  await gina.page.getByTestId('toggle-screen').click();
  await remoteTile(hal.page).and(hal.page.locator('[data-screen="on"]')).waitFor();
  await decodesVideo(hal.page, 'Hal (screen in audio call)');
  await gina.page.getByTestId('hangup').click();
  await hal.page.getByTestId('home').waitFor({ state: 'visible' });
  assert.deepEqual(pageErrors, []);
});
