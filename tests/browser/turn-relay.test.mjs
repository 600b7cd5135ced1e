// TURN with a real browser: Chromium restricted to relay candidates (iceTransportPolicy
// 'relay', as a client behind a UDP-hostile NAT would be) joins an SFU room through the demo
// page using the TURN credentials signaling minted into iceServers, relayed by Chorus's own
// TURN server. Each page decodes the other's video, and the selected candidate pair is a relay
// pair. The server allows loopback peers for this test only (the SFU is on 127.0.0.1); by
// default TURN refuses them.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, startServer } from '../lib/server.mjs';
import {
  chromiumAvailable,
  CHROMIUM,
  decodesRemoteVideo,
  eventually,
  joinRoomPage,
  selectedCandidatePair,
} from '../lib/browser.mjs';

let server;
let turnPort;
const browsers = [];
const pageErrors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  turnPort = await freePort();
  server = await startServer({
    args: [
      '--set', `turn.udp_listen=127.0.0.1:${turnPort}`,
      '--set', `turn.tcp_listen=127.0.0.1:${turnPort}`,
      '--set', 'turn.allowed_peer_ranges=127.0.0.0/8',
      '--set', 'ice.turn_secret=browser-test-turn-secret',
      '--set', `ice.turn_urls=turn:127.0.0.1:${turnPort}?transport=udp`,
    ],
  });
});

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  await server?.stop();
});

async function joinRoomThroughRelay(name, room) {
  const u = await joinRoomPage(server, name, room, {
    errors: pageErrors,
    // Every RTCPeerConnection the page makes may use relay candidates only.
    setup: (page) =>
      page.addInitScript(() => {
        const Native = window.RTCPeerConnection;
        window.RTCPeerConnection = function RelayOnly(config, ...rest) {
          return new Native({ ...(config ?? {}), iceTransportPolicy: 'relay' }, ...rest);
        };
        window.RTCPeerConnection.prototype = Native.prototype;
        Object.setPrototypeOf(window.RTCPeerConnection, Native);
      }),
  });
  browsers.push(u.browser);
  return u;
}

it('a relay-only browser joins an SFU room through Chorus TURN and decodes video', { timeout: 120_000 }, async () => {
  const room = `relay-${Date.now().toString(36)}`;
  const a = await joinRoomThroughRelay('Ria', room);
  const b = await joinRoomThroughRelay('Rex', room);

  for (const u of [a, b]) {
    const policy = await u.page.evaluate(() => window.chorus.pc.getConfiguration().iceTransportPolicy);
    assert.equal(policy, 'relay', `${u.name}: the page's peer connection is relay-only`);
    const servers = await u.page.evaluate(() => window.chorus.pc.getConfiguration().iceServers);
    const turn = servers.find((s) => [].concat(s.urls).some((url) => url.startsWith('turn:')));
    assert.ok(turn?.username?.includes(':') && turn.credential, `${u.name}: TURN credentials from signaling`);
  }

  for (const u of [a, b]) {
    await decodesRemoteVideo(u.page, `${u.name} (through the relay)`, { timeoutMs: 45_000 });
    const pair = await eventually(() => selectedCandidatePair(u.page), { what: `${u.name}: a selected candidate pair` });
    assert.equal(pair.local.candidateType, 'relay', `${u.name}: relay pair ${JSON.stringify(pair)}`);
  }

  // The relay really carried it: the TURN server counted relayed packets.
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const relayed = metrics
    .split('\n')
    .filter((l) => l.startsWith('chorus_turn_relayed_packets_total'))
    .map((l) => Number(l.split(' ').pop()))
    .reduce((x, y) => x + y, 0);
  assert.ok(relayed > 100, `TURN relayed ${relayed} packets`);
  assert.ok(/chorus_turn_allocations_active [1-9]/.test(metrics), 'allocations are active');

  await a.page.getByTestId('hangup').click();
  await b.page.getByTestId('hangup').click();
  assert.deepEqual(pageErrors, []);
});
