// A 1:1 call across a cluster with real browsers, and the drain of the caller's node in the
// middle of it. Three `chorus` nodes share the Redis at 127.0.0.1:6379 (a prefix of their own,
// deleted at the end); each page reaches them through a load balancer of its own (first choice:
// a node of its own; then the others, by health check).
//
// The caller's node is drained (SIGTERM) while the two talk. Its page is told
// `server:shutdown`, reconnects through its balancer to a live node and takes the call back with
// `call:join` by itself; both pages start their media over and decode each other again. The
// call outlives the reconnect grace period: the server counts the caller as back, not gone.

import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { chromiumAvailable, CHROMIUM, eventually, inboundStreams, launchBrowser } from '../lib/browser.mjs';
import { startBalancer, startCluster } from '../lib/cluster.mjs';
import { sleep } from '../lib/wait.mjs';

/** The server's `calls.reconnect_grace` here: short, so that the test can outlive it. */
const GRACE_MS = 4000;

let cluster = null;
const balancers = [];
const browsers = [];
const pageErrors = [];

after(async () => {
  for (const b of browsers.splice(0)) await b.close();
  for (const b of balancers.splice(0)) await b.close();
  await cluster?.stop();
});

/** A browser for `name` on the demo page at `target.url`, signed in, on the home screen. */
async function signIn(target, name) {
  const browser = await launchBrowser();
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(target.url);
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('home').waitFor({ state: 'visible' });
  await page.locator('[data-testid="conn-state"][data-state="online"]').waitFor();
  const userId = (await page.getByTestId('my-user-id').textContent()).trim();
  return { name, page, userId };
}

/** Waits until `page` decodes remote video on an RTCPeerConnection other than `oldPc`, rising. */
async function decodesOnNewPc(page, oldPc, label, timeoutMs = 30_000) {
  await eventually(() => page.evaluate((old) => !!window.chorus.pc && window.chorus.pc !== old, oldPc), {
    timeoutMs,
    what: `${label} to open a new RTCPeerConnection`,
  });
  return decodesVideo(page, label, timeoutMs);
}

/** Waits until `page` decodes remote video, then until it decoded 10 more frames. */
async function decodesVideo(page, label, timeoutMs = 30_000) {
  const video = async () => (await inboundStreams(page)).find((s) => s.kind === 'video' && s.framesDecoded > 0 && s.frameWidth > 0);
  const first = await eventually(video, { timeoutMs, what: `${label} to decode video` });
  await eventually(async () => (await video())?.framesDecoded > first.framesDecoded + 10, {
    timeoutMs: 15_000,
    what: `${label}: framesDecoded to rise`,
  });
}

const events = (page, name) =>
  page.evaluate((n) => window.chorus.client.log.filter((e) => e.event === n).map((e) => e.data), name);

it('a call outlives the drain of the caller\'s node: the caller\'s page reconnects and takes the call back', { timeout: 180_000 }, async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  cluster = await startCluster({
    name: 'browser-call-drain',
    env: {
      CHORUS_SERVER_DRAIN_TIMEOUT: '3s',
      CHORUS_SERVER_RECONNECT_HINT: '1s',
      CHORUS_CALLS_RECONNECT_GRACE: `${GRACE_MS}ms`,
    },
  });
  const [n1, n2, n3] = cluster.nodes;
  const callerLb = await startBalancer([n1, n2, n3]);
  const calleeLb = await startBalancer([n2, n3, n1]);
  balancers.push(callerLb, calleeLb);
  const alice = await signIn(callerLb, 'Alice');
  const bob = await signIn(calleeLb, 'Bob');

  await alice.page.getByTestId('callee-input').fill(bob.userId);
  await alice.page.getByTestId('call-video').click();
  await bob.page.getByTestId('incoming').waitFor({ state: 'visible' });
  await bob.page.getByTestId('accept').click();
  for (const u of [alice, bob]) {
    await u.page.getByTestId('call-view').waitFor({ state: 'visible' });
    await decodesVideo(u.page, `${u.name} (before the drain)`);
  }
  const callId = await alice.page.evaluate(() => window.chorus.call.callId);
  const owner = await cluster.ownerOf(callId);
  assert.ok(owner, 'the call has an owner in Redis');
  const oldPcs = await Promise.all([alice, bob].map((u) => u.page.evaluateHandle(() => window.chorus.pc)));

  // Alice's node drains (SIGTERM) and exits 0; her page leaves it and comes back through a live node
  await n1.stop();
  assert.ok((await events(alice.page, 'server:shutdown')).length > 0, 'Alice was told server:shutdown');
  await Promise.all([
    decodesOnNewPc(alice.page, oldPcs[0], 'Alice (after the drain)'),
    decodesOnNewPc(bob.page, oldPcs[1], 'Bob (after the drain)'),
  ]);
  // Bob's page saw Alice come back into the call
  const joined = await events(bob.page, 'call:participant:joined');
  assert.ok(joined.some((j) => j.callId === callId && j.participant.userId === alice.userId), 'Bob: Alice joined again');
  const heir = await cluster.ownerOf(callId);
  assert.ok(heir && heir !== n1, `a live node owns the call (was ${owner.id}, now ${heir?.id})`);

  // past the reconnect grace: the call is still on, on both pages, and media keeps flowing
  await sleep(GRACE_MS + 1000);
  for (const u of [alice, bob]) {
    assert.deepEqual(await events(u.page, 'call:ended'), [], `${u.name}: the call did not end`);
    assert.equal(await u.page.evaluate(() => window.chorus.call?.state), 'joined', `${u.name} is still in the call`);
    await decodesVideo(u.page, `${u.name} (past the grace period)`, 10_000);
  }

  await alice.page.getByTestId('hangup').click();
  await bob.page.getByTestId('home').waitFor({ state: 'visible', timeout: 20_000 });
  assert.deepEqual(pageErrors, []);
});
