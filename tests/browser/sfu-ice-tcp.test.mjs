// ICE over TCP (RFC 4571 framing) with a real browser: the server advertises only TCP
// candidates (`--set sfu.candidates=tcp`), two Chromium pages join one room through the demo
// page, each still decodes the other's video, and the selected candidate pair is TCP on both
// ends.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  chromiumAvailable,
  CHROMIUM,
  decodesRemoteVideo,
  eventually,
  joinRoomPage,
  selectedCandidatePair,
} from '../lib/browser.mjs';

let server;
const browsers = [];
const pageErrors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  server = await startServer({ args: ['--set', 'sfu.candidates=tcp'] });
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
});

async function joinRoom(name, room) {
  const u = await joinRoomPage(server, name, room, { errors: pageErrors });
  browsers.push(u.browser);
  return u;
}

it('a room of two decodes video when the server offers only TCP candidates', { timeout: 120_000 }, async () => {
  const room = `tcp-${Date.now().toString(36)}`;
  const a = await joinRoom('Ann', room);
  const b = await joinRoom('Ben', room);

  // the server's offer-answer carried only TCP candidates (the page counts as joined once the
  // server acked the join; its answer may still be on the way, so wait for it)
  for (const u of [a, b]) {
    const remote = await eventually(
      () => u.page.evaluate(() => window.chorus.pc?.remoteDescription?.sdp ?? ''),
      { what: `${u.name}: the server's answer` },
    );
    const cands = remote.split('\r\n').filter((l) => l.startsWith('a=candidate:'));
    assert.ok(cands.length > 0, `${u.name}: the server advertised candidates`);
    for (const c of cands) assert.match(c, / tcp /i, `${u.name}: only TCP candidates: ${c}`);
  }

  await Promise.all([decodesRemoteVideo(a.page, 'Ann'), decodesRemoteVideo(b.page, 'Ben')]);
  for (const u of [a, b]) {
    const pair = await eventually(() => selectedCandidatePair(u.page), { what: `${u.name}: a selected candidate pair` });
    assert.equal(pair.local.protocol, 'tcp', `${u.name}: local candidate ${JSON.stringify(pair)}`);
    assert.equal(pair.remote.protocol, 'tcp', `${u.name}: remote candidate ${JSON.stringify(pair)}`);
    assert.equal(pair.remote.address, '127.0.0.1');
  }

  await a.page.getByTestId('hangup').click();
  await b.page.getByTestId('hangup').click();
  await b.page.getByTestId('home').waitFor({ state: 'visible' });
  assert.deepEqual(pageErrors, []);
});
