// Session resume (issue 12, item 6): Alice's page reaches the server through a TCP proxy that
// the test cuts mid-call, as a network change does (no WebSocket close frame). The demo page
// reconnects and sends `session:resume` by itself; the server kept her room seat and SFU seat:
// Bob never sees her leave, video from her keeps decoding on Bob's page through the outage (the
// media path does not use the WebSocket), and the event she missed (Bob muting his microphone)
// reaches her page after the resume.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer } from 'node:net';
import { startServer } from '../lib/server.mjs';
import { chromiumAvailable, CHROMIUM, decodesVideoStreams, eventually, inboundStreams, joinRoomPage } from '../lib/browser.mjs';

let server;
let proxy;
const browsers = [];
const errors = [];

/** A TCP proxy to the server whose open connections the test can cut at once. */
async function startProxy(port) {
  const sockets = new Set();
  const tcp = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((ok, fail) => {
    tcp.once('error', fail);
    tcp.listen(0, '127.0.0.1', ok);
  });
  return {
    url: `http://127.0.0.1:${tcp.address().port}`,
    /** Drops every connection through the proxy without a close frame. */
    cut() {
      for (const s of sockets) s.destroy();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => tcp.close(r));
    },
  };
}

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  server = await startServer();
  proxy = await startProxy(server.port);
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await proxy?.close();
  await server?.stop();
});

/** Frames decoded so far on the page's inbound video streams, summed. */
async function framesDecoded(page) {
  return (await inboundStreams(page)).filter((s) => s.kind === 'video').reduce((n, s) => n + s.framesDecoded, 0);
}

it('a dropped WebSocket resumes the session: no leave, media never stops, missed events arrive', { timeout: 180_000 }, async () => {
  const room = `resume-${Date.now().toString(36)}`;
  const alice = await joinRoomPage({ url: proxy.url }, 'Alice', room, { errors });
  browsers.push(alice.browser);
  const bob = await joinRoomPage(server, 'Bob', room, { errors });
  browsers.push(bob.browser);
  await decodesVideoStreams(alice.page, 1, 'Alice');
  await decodesVideoStreams(bob.page, 1, 'Bob');
  const aliceId = (await alice.page.getByTestId('my-user-id').textContent()).trim();
  const bobId = (await bob.page.getByTestId('my-user-id').textContent()).trim();
  const sessionId = await alice.page.evaluate(() => window.chorus.client.sessionId);
  assert.match(sessionId ?? '', /^[0-9a-f]{32}$/);
  const resumesBefore = await server.metric('chorus_session_resumes_total');

  // the network drops under Alice's WebSocket; Bob mutes his microphone meanwhile
  const cutAt = Date.now();
  proxy.cut();
  await eventually(() => alice.page.evaluate(() => !window.chorus.client.connected), { what: 'Alice to notice the drop' });
  await bob.page.getByTestId('toggle-mic').click();

  // Bob's page decodes Alice's video all along: sampled through the drop and the resume
  let frames = await framesDecoded(bob.page);
  const until = Date.now() + 4000;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 500));
    const now = await framesDecoded(bob.page);
    assert.ok(now > frames, `Bob's decoding of Alice stalled ${Date.now() - cutAt} ms after the drop (${frames} -> ${now})`);
    frames = now;
  }

  // Alice is back on the same session
  await eventually(() => alice.page.evaluate(() => window.chorus.client.connected), { what: 'Alice reconnected' });
  await eventually(
    () => alice.page.evaluate(() => window.chorus.client.log.some((e) => e.event === 'session:ready')),
    { what: 'Alice got session:ready again' },
  );
  assert.equal(await alice.page.evaluate(() => window.chorus.client.sessionId), sessionId, 'the resumed session keeps its id');
  await eventually(async () => (await server.metric('chorus_session_resumes_total')) === resumesBefore + 1, {
    what: 'the server to count one resume',
  });
  assert.equal(await alice.page.evaluate(() => window.chorus.call?.state), 'joined', 'Alice never left the room on her page');

  // the event she missed was replayed: Bob's microphone shows off on her page
  const bobTile = alice.page.locator(`[data-testid="tile-remote"][data-user="${bobId}"]`);
  await bobTile.and(alice.page.locator('[data-audio="off"]')).waitFor({ timeout: 10_000 });

  // nobody left or joined since the drop, on either page
  for (const [u, other] of [
    [bob, aliceId],
    [alice, bobId],
  ]) {
    const seen = await u.page.evaluate(
      ({ t0, id }) =>
        window.chorus.client.log
          .filter((e) => e.at >= t0 && /^call:participant:(left|joined)$/.test(e.event) && e.data.userId === id)
          .map((e) => e.event),
      { t0: cutAt, id: other },
    );
    assert.deepEqual(seen, [], `${u.name} saw nobody leave or join`);
  }
  // and video still flows both ways on the same streams
  await decodesVideoStreams(alice.page, 1, 'Alice after the resume');
  await decodesVideoStreams(bob.page, 1, 'Bob after the resume');
  assert.deepEqual(errors, []);
});
