// Data channels through the SFU with real browsers: pages in one room open the two relayed
// channels (`chorus-reliable`, `chorus-lossy`) with their SFU link. A reaction from one page
// bursts over the sender's tile on the two others, named; raw text and binary messages arrive
// with the sender's user id stamped by the server. An over-size message and a message from a
// token without `canPublishData` are refused with an `error` event (limit_exceeded, forbidden)
// and reach nobody.

import { after, afterEach, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { startServer } from '../lib/server.mjs';
import { chromiumAvailable, CHROMIUM, eventually, joinRoomPage } from '../lib/browser.mjs';

const SHOTS = process.env.CHORUS_SCREENSHOT_DIR ?? joinPath(tmpdir(), 'chorus-screenshots');

let server;
const browsers = [];
const pageErrors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  await mkdir(SHOTS, { recursive: true });
  server = await startServer();
});

afterEach(async () => {
  for (const b of browsers.splice(0)) await b.close();
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
});

/**
 * A page that joined `room` as `name`, with both data channels open. `noData`: its token lacks
 * `canPublishData` (the dev token the page asks for is swapped for one signed here).
 */
async function join(name, room, { noData = false } = {}) {
  const setup = noData
    ? (page) =>
        page.route('**/api/v1/dev/token', async (route) => {
          const body = JSON.parse(route.request().postData() ?? '{}');
          const minted = await (await route.fetch()).json();
          const now = Math.floor(Date.now() / 1000);
          const claims = { sub: minted.userId, name: minted.name, exp: now + 3600, iat: now, canPublishData: false };
          if (body.room) claims.room = body.room;
          const token = await server.signToken(claims);
          await route.fulfill({ json: { ...minted, token } });
        })
    : undefined;
  const u = await joinRoomPage(server, name, room, { setup, errors: pageErrors });
  browsers.push(u.browser);
  u.userId = (await u.page.getByTestId('my-user-id').textContent()).trim();
  await u.page.waitForFunction(
    () => {
      const d = window.chorus.call?.sfu?.data;
      return d?.channels.reliable.readyState === 'open' && d.channels.lossy.readyState === 'open';
    },
    null,
    { timeout: 30_000 },
  );
  // record every relayed message as it arrives: [channel, text | byte array]
  await u.page.evaluate(() => {
    window.relayed = [];
    for (const [kind, ch] of Object.entries(window.chorus.call.sfu.data.channels)) {
      ch.addEventListener('message', (e) =>
        window.relayed.push([kind, typeof e.data === 'string' ? e.data : Array.from(new Uint8Array(e.data))]),
      );
    }
  });
  return u;
}

const relayed = (u) => u.page.evaluate(() => window.relayed);
const errors = (u) =>
  u.page.evaluate(() => window.chorus.client.log.filter((e) => e.event === 'error').map((e) => e.data));
const burst = (page, userId, emoji) =>
  page.locator(`[data-testid="tile-remote"][data-user="${userId}"] [data-testid="reaction"][data-from="${userId}"][data-emoji="${emoji}"]`);

it('reactions and messages reach the others with the sender stamped; over-limit and no-grant messages are refused', { timeout: 240_000 }, async () => {
  const room = `react-${Date.now().toString(36)}`;
  const alice = await join('Alice', room);
  const bob = await join('Bob', room);
  const carol = await join('Carol', room);
  for (const u of [alice, bob, carol]) {
    for (const o of [alice, bob, carol].filter((x) => x !== u)) {
      await u.page.locator(`[data-testid="tile-remote"][data-user="${o.userId}"]`).waitFor({ timeout: 30_000 });
    }
  }

  // Alice presses 🎉: a burst over her tile, with her name, on both other pages
  await alice.page.locator('[data-testid="reaction-button"][data-emoji="🎉"]').click();
  for (const u of [bob, carol]) {
    await burst(u.page, alice.userId, '🎉').first().waitFor({ timeout: 10_000 });
    assert.equal(await burst(u.page, alice.userId, '🎉').first().getByTestId('reaction-name').textContent(), 'Alice');
  }
  await alice.page.locator('[data-testid="tile-local"] [data-testid="reaction"][data-emoji="🎉"]').first().waitFor();
  await bob.page.waitForTimeout(600); // mid-flight, for the picture
  await bob.page.screenshot({ path: joinPath(SHOTS, 'reactions-laptop.png') });

  // raw messages: text on the reliable channel, binary on the lossy one; the envelope names
  // the sender, whatever the sender put in its message
  await bob.page.evaluate(() => {
    const d = window.chorus.call.sfu.data;
    d.send('reliable', JSON.stringify({ from: 'somebody-else', text: 'hi' }));
    d.send('lossy', new Uint8Array([7, 8, 9]));
  });
  const fromBob = JSON.stringify({ from: bob.userId, data: JSON.stringify({ from: 'somebody-else', text: 'hi' }) });
  const bobBinary = [1, 0, bob.userId.length, ...Buffer.from(bob.userId), 7, 8, 9];
  for (const u of [alice, carol]) {
    const got = await eventually(async () => {
      const r = await relayed(u);
      return r.some(([k, d]) => k === 'lossy' && Array.isArray(d)) && r.some(([k, d]) => k === 'reliable' && d === fromBob) ? r : false;
    }, { what: `${u.name} to get Bob's two messages` });
    assert.deepEqual(got.find(([k]) => k === 'lossy')[1], bobBinary);
    const decoded = await u.page.evaluate(
      (bytes) => {
        const m = window.ChorusData.decode(new Uint8Array(bytes).buffer);
        return { from: m.from, data: Array.from(m.data) };
      },
      bobBinary,
    );
    assert.deepEqual(decoded, { from: bob.userId, data: [7, 8, 9] });
  }
  assert.ok(!(await relayed(bob)).some(([, d]) => d === fromBob), 'Bob does not get his own message back');

  // over the size limit (16 KiB by default): refused with limit_exceeded, relayed to nobody
  await carol.page.evaluate(() => window.chorus.call.sfu.data.send('reliable', 'x'.repeat(20_000)));
  const tooBig = await eventually(async () => (await errors(carol)).find((e) => e.code === 'limit_exceeded'), {
    what: 'Carol to get limit_exceeded',
  });
  assert.equal(tooBig.event, 'chorus-reliable');
  // a message sent after it arrives, the big one never did
  await carol.page.evaluate(() => window.chorus.call.sfu.data.send('reliable', 'after'));
  for (const u of [alice, bob]) {
    await eventually(async () => (await relayed(u)).some(([, d]) => typeof d === 'string' && d.includes('"after"')), {
      what: `${u.name} to get Carol's next message`,
    });
    assert.ok(!(await relayed(u)).some(([, d]) => d.length > 16_000), `${u.name} got no over-size message`);
  }

  // Carol leaves; Dave's token has no canPublishData: his reaction is refused (forbidden) and
  // bursts nowhere, but he still receives the others'
  await carol.page.getByTestId('hangup').click();
  const dave = await join('Dave', room, { noData: true });
  await dave.page.locator(`[data-testid="tile-remote"][data-user="${alice.userId}"]`).waitFor({ timeout: 30_000 });
  await dave.page.locator('[data-testid="reaction-button"][data-emoji="👍"]').click();
  const forbidden = await eventually(async () => (await errors(dave)).find((e) => e.code === 'forbidden'), {
    what: 'Dave to get forbidden',
  });
  assert.equal(forbidden.event, 'chorus-reliable');
  assert.match(forbidden.message, /canPublishData/);
  await alice.page.locator('[data-testid="reaction-button"][data-emoji="👏"]').click();
  await burst(dave.page, alice.userId, '👏').first().waitFor({ timeout: 10_000 });
  for (const u of [alice, bob]) {
    assert.equal(await burst(u.page, dave.userId, '👍').count(), 0, `${u.name} saw no reaction from Dave`);
    assert.ok(!(await relayed(u)).some(([, d]) => typeof d === 'string' && d.includes(dave.userId)));
  }

  assert.ok((await server.metric('chorus_sfu_data_refused_total')) >= 2);
  assert.ok((await server.metric('chorus_sfu_data_messages_total')) >= 8);
  for (const u of [alice, bob, dave]) await u.page.getByTestId('hangup').click();
  assert.deepEqual(pageErrors, []);
});
