// The demo page's chat panel (web/chat.js, web/chat.css) with two Chromium pages, one per user.
// The demo page must include the panel itself: the tests fail, and load nothing, when it does not.
// Membership is set up from Node over raw WebSockets (A starts a call to B, B accepts); then each
// page opens the demo page and dispatches `chorus:conversation` itself (the event app.js sends
// when the user enters a call or room), so the panel connects as a second device of that user.
// Covers: history on open, send → exactly one copy on the other page with HTML shown literally,
// typing indicator, reactions with counts on both pages, edit and delete of one's own message,
// no edit/delete controls on others' messages, the unread badge while collapsed, read receipts.
// Screenshots at laptop and phone size go to $CHORUS_SCREENSHOT_DIR (default /tmp/chorus-screenshots).

import { after, afterEach, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { startServer } from '../lib/server.mjs';
import { connectWs } from '../lib/clients.mjs';
import { chromiumAvailable, CHROMIUM, eventually, launchBrowser } from '../lib/browser.mjs';

const SHOTS = process.env.CHORUS_SCREENSHOT_DIR ?? join(tmpdir(), 'chorus-screenshots');
const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const HTML = '<img src=x onerror="window.__xss=1">hi & <b>bold</b>';

let server;
const browsers = [];
const sockets = [];
const pageErrors = [];

before(async () => {
  assert.ok(chromiumAvailable(), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  await mkdir(SHOTS, { recursive: true });
  server = await startServer();
});

async function closeAll() {
  for (const b of browsers.splice(0)) await b.close();
  for (const s of sockets.splice(0)) s.close();
}
afterEach(closeAll);
after(async () => {
  await closeAll();
  await server?.stop();
});

/** A page for `user` with the demo page open and the chat panel entered into `conversationId`. */
async function openPanel(user, conversationId, viewport = LAPTOP) {
  const browser = await launchBrowser({ viewport });
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`${user.name}: ${e.message}`));
  page.on('dialog', (d) => {
    pageErrors.push(`${user.name}: unexpected dialog ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  // `load` waits for the page's own (deferred) scripts and stylesheets.
  await page.goto(server.url, { waitUntil: 'load' });
  // The page must bring the panel itself; the test never injects it.
  assert.equal(await page.locator('script[src="/chat.js"]').count(), 1, 'the demo page includes /chat.js');
  assert.equal(await page.locator('link[rel="stylesheet"][href="/chat.css"]').count(), 1, 'the demo page includes /chat.css');
  assert.ok(await page.evaluate(() => !!window.chorusChat), "the page's /chat.js defines window.chorusChat");
  await page.evaluate(
    (detail) => window.dispatchEvent(new CustomEvent('chorus:conversation', { detail })),
    { conversationId, userId: user.userId, name: user.name },
  );
  await page.getByTestId('chat-root').waitFor({ state: 'attached' });
  await eventually(() => page.evaluate(() => window.chorusChat.state().connected && window.chorusChat.state().historyLoaded), {
    timeoutMs: 10_000,
    what: `${user.name}'s panel to connect and load history`,
  });
  return { page, browser, user };
}

const messages = (page) => page.locator('[data-testid="chat-message"]');
const messageWith = (page, text) => messages(page).filter({ has: page.getByTestId('chat-text').getByText(text, { exact: true }) });
const texts = (page) => page.getByTestId('chat-text').allTextContents();

it('chat panel: history, send, typing, reactions, edit, delete, unread badge', { timeout: 120_000 }, async () => {
  // two users; A calls B and B accepts: both are members of the call's conversation
  const alice = await server.token('Alice');
  const bob = await server.token('Bob');
  const a = await connectWs(server.wsUrl, alice.token, { label: 'ws:alice' });
  const b = await connectWs(server.wsUrl, bob.token, { label: 'ws:bob' });
  sockets.push(a, b);
  const init = await a.ack('call:initiate', { conversationId: 'x', callType: 'audio', participants: [bob.userId] });
  assert.equal(init.error, undefined, JSON.stringify(init.error));
  const callId = init.data.callId;
  await b.next('call:incoming', (d) => d.callId === callId);
  const acc = await b.ack('call:accept', { callId });
  assert.equal(acc.error, undefined, JSON.stringify(acc.error));

  // history that exists before the panels open
  for (const content of ['first from node', 'second from node']) {
    const r = await a.ack('message:send', { conversationId: callId, content, type: 'text', tempId: `seed-${content}` });
    assert.equal(r.error, undefined, JSON.stringify(r.error));
  }

  const A = await openPanel(alice, callId);
  const B = await openPanel(bob, callId);

  // history on open, in order, on both pages; own messages are "You"
  for (const P of [A, B]) {
    await messages(P.page).nth(1).waitFor();
    assert.deepEqual(await texts(P.page), ['first from node', 'second from node']);
    assert.ok(await P.page.getByTestId('chat-panel').isVisible(), 'panel visible on a laptop');
    assert.ok(await P.page.getByTestId('chat-empty').isHidden());
  }
  assert.equal(await messages(A.page).first().getAttribute('data-own'), 'true');
  assert.equal(await messages(B.page).first().getAttribute('data-own'), 'false');
  assert.equal(await messages(B.page).first().getByTestId('chat-sender').textContent(), 'Alice');

  // typing: A types → B sees "Alice is typing…"; A clears the input → it goes away
  await A.page.getByTestId('chat-input').fill('hel');
  await B.page.getByTestId('chat-typing').filter({ hasText: 'Alice is typing' }).waitFor({ timeout: 5000 });
  await A.page.getByTestId('chat-input').fill('');
  await B.page.getByTestId('chat-typing').waitFor({ state: 'hidden', timeout: 5000 });

  // A sends an HTML payload through the input: exactly one copy on B, shown literally
  await A.page.getByTestId('chat-input').fill(HTML);
  await B.page.getByTestId('chat-typing').filter({ hasText: 'Alice is typing' }).waitFor({ timeout: 5000 });
  await A.page.getByTestId('chat-send').click();
  await messageWith(B.page, HTML).waitFor({ timeout: 5000 });
  await messageWith(A.page, HTML).and(A.page.locator('[data-status="sent"]')).waitFor({ timeout: 5000 });
  await B.page.getByTestId('chat-typing').waitFor({ state: 'hidden', timeout: 5000 }); // stops on send
  assert.equal(await A.page.getByTestId('chat-input').inputValue(), '');
  // A barrier on B's panel connection: A types again, and B's "typing" event comes through the
  // same ordered path (hub -> B's outbox -> B's socket) after any duplicate of the message.
  await A.page.getByTestId('chat-input').fill('x');
  await B.page.getByTestId('chat-typing').filter({ hasText: 'Alice is typing' }).waitFor({ timeout: 5000 });
  await A.page.getByTestId('chat-input').fill('');
  await B.page.getByTestId('chat-typing').waitFor({ state: 'hidden', timeout: 5000 });
  assert.equal(await messageWith(B.page, HTML).count(), 1, 'exactly one copy on B');
  assert.equal(await messageWith(A.page, HTML).count(), 1, 'exactly one copy on A (no pending leftover)');
  for (const P of [A, B]) {
    assert.equal(await P.page.locator('.cc-list img, .cc-list b').count(), 0, 'no HTML elements from content');
    assert.equal(await P.page.evaluate(() => window.__xss), undefined);
  }
  assert.deepEqual(await texts(B.page), ['first from node', 'second from node', HTML]);

  // the test hook: B sends, A sees it once; sequence numbers in order on both
  const ack = await B.page.evaluate(() => window.chorusChat.send('reply from bob'));
  assert.equal(ack.error, undefined, JSON.stringify(ack.error));
  assert.equal(ack.data.sequenceNumber, 4);
  await messageWith(A.page, 'reply from bob').waitFor({ timeout: 5000 });
  for (const P of [A, B]) {
    const seqs = await messages(P.page).evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, [1, 2, 3, 4]);
  }

  // read receipts: both panels are visible, so A's newest own message gets "Seen by Bob"
  await A.page.getByTestId('chat-seen').filter({ hasText: 'Bob' }).waitFor({ timeout: 5000 });

  // B cannot edit or delete A's message; B can react
  const onB = messageWith(B.page, HTML);
  assert.equal(await onB.getByTestId('chat-edit').count(), 0, 'no edit control on someone else’s message');
  assert.equal(await onB.getByTestId('chat-delete').count(), 0, 'no delete control on someone else’s message');
  await onB.hover();
  await onB.getByTestId('chat-react').click();
  await onB.locator('[data-testid="chat-emoji"][data-emoji="👍"]').click();
  const chip = (P) => messageWith(P.page, HTML).locator('[data-testid="chat-reaction"][data-emoji="👍"]');
  await chip(B).and(B.page.locator('[data-count="1"][aria-pressed="true"]')).waitFor({ timeout: 5000 });
  await chip(A).and(A.page.locator('[data-count="1"][aria-pressed="false"]')).waitFor({ timeout: 5000 });
  // A adds the same reaction by clicking the chip: 2 on both
  await chip(A).click();
  await chip(A).and(A.page.locator('[data-count="2"][aria-pressed="true"]')).waitFor({ timeout: 5000 });
  await chip(B).and(B.page.locator('[data-count="2"]')).waitFor({ timeout: 5000 });
  assert.equal(await chip(B).getByTestId('chat-reaction-count').textContent(), '2');
  await messageWith(A.page, HTML).hover();
  await messageWith(A.page, HTML).getByTestId('chat-react').click();
  await A.page.getByTestId('chat-picker').waitFor();
  await A.page.screenshot({ path: join(SHOTS, 'chat-laptop.png') });
  await A.page.setViewportSize(PHONE);
  await A.page.screenshot({ path: join(SHOTS, 'chat-phone-picker.png') });
  await A.page.setViewportSize(LAPTOP);
  await A.page.getByTestId('chat-input').click(); // closes the picker
  await A.page.getByTestId('chat-picker').waitFor({ state: 'detached' });
  // B toggles its reaction off: 1 on both
  await chip(B).click();
  await chip(B).and(B.page.locator('[data-count="1"][aria-pressed="false"]')).waitFor({ timeout: 5000 });
  await chip(A).and(A.page.locator('[data-count="1"][aria-pressed="true"]')).waitFor({ timeout: 5000 });

  // A edits its own message; B sees the new text and the "edited" mark
  const mine = messageWith(A.page, 'second from node');
  await mine.hover();
  await mine.getByTestId('chat-edit').click();
  const editInput = A.page.getByTestId('chat-edit-input');
  await editInput.fill('second, edited <i>literally</i>');
  await editInput.press('Enter');
  const editedB = messageWith(B.page, 'second, edited <i>literally</i>');
  await editedB.waitFor({ timeout: 5000 });
  assert.equal(await editedB.getByTestId('chat-edited').count(), 1);
  await messageWith(A.page, 'second, edited <i>literally</i>').getByTestId('chat-edited').waitFor();
  assert.equal(await messageWith(B.page, 'second from node').count(), 0);

  // A deletes its first message (two clicks: Delete, then Delete?); B sees "message deleted"
  const first = messageWith(A.page, 'first from node');
  await first.hover();
  await first.getByTestId('chat-delete').click();
  await first.locator('[data-testid="chat-delete"][data-confirm="true"]').click();
  const deletedB = B.page.locator('[data-testid="chat-message"][data-seq="1"]');
  await deletedB.and(B.page.locator('[data-status="deleted"]')).waitFor({ timeout: 5000 });
  assert.equal(await deletedB.getByTestId('chat-text').textContent(), 'message deleted');
  assert.equal(await messageWith(B.page, 'first from node').count(), 0);
  await A.page.locator('[data-testid="chat-message"][data-seq="1"][data-status="deleted"]').waitFor();
  assert.equal(await deletedB.getByTestId('chat-react').count(), 0, 'no actions on a deleted message');

  // unread badge: B collapses, A sends two, B's badge shows 2; opening clears it
  await B.page.getByTestId('chat-collapse').click();
  await B.page.getByTestId('chat-panel').waitFor({ state: 'hidden' });
  assert.ok(await B.page.getByTestId('chat-unread').isHidden(), 'no badge before new messages');
  for (const t of ['while you were away 1', 'while you were away 2']) {
    const r = await A.page.evaluate((x) => window.chorusChat.send(x), t);
    assert.equal(r.error, undefined, JSON.stringify(r.error));
  }
  await B.page.getByTestId('chat-unread').filter({ hasText: /^2$/ }).waitFor({ timeout: 5000 });
  assert.equal(await B.page.evaluate(() => window.chorusChat.unread), 2);
  // own messages from another device of B do not count
  const r = await b.ack('message:send', { conversationId: callId, content: 'from bob’s phone', type: 'text', tempId: 'bob-phone-1' });
  assert.equal(r.error, undefined);
  await messageWith(A.page, 'from bob’s phone').waitFor({ timeout: 5000 });
  // B's collapsed panel has handled that message (it counts unread as it handles one), so the
  // badge shows whether it counted it
  await eventually(
    () => B.page.evaluate(() => window.chorusChat.messages().some((m) => m.content === 'from bob’s phone')),
    { timeoutMs: 5000, what: "B's panel to receive bob's own message from his phone" },
  );
  assert.equal((await B.page.getByTestId('chat-unread').textContent()).trim(), '2');
  await B.page.setViewportSize(PHONE);
  await B.page.screenshot({ path: join(SHOTS, 'chat-phone-collapsed.png') });
  await B.page.getByTestId('chat-toggle').click();
  await B.page.getByTestId('chat-panel').waitFor({ state: 'visible' });
  await B.page.getByTestId('chat-unread').waitFor({ state: 'hidden' });
  await messageWith(B.page, 'from bob’s phone').waitFor();
  assert.equal(await messageWith(B.page, 'from bob’s phone').getAttribute('data-own'), 'true');
  await B.page.screenshot({ path: join(SHOTS, 'chat-phone-open.png') });
  await B.page.setViewportSize(LAPTOP);
  await B.page.screenshot({ path: join(SHOTS, 'chat-laptop-b.png') });

  // leaving: {detail: null} hides the panel and closes its connection
  await B.page.evaluate(() => window.dispatchEvent(new CustomEvent('chorus:conversation', { detail: null })));
  await B.page.getByTestId('chat-root').waitFor({ state: 'hidden' });
  assert.equal(await B.page.evaluate(() => window.chorusChat.state().conversationId), null);

  assert.deepEqual(pageErrors, []);
});

/** A page signed in through the login form that joins `room` right away (the app's own flow). */
async function roomUser(name, room, viewport = LAPTOP) {
  const browser = await launchBrowser({ viewport });
  browsers.push(browser);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(server.url);
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-room').fill(room);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('call-view').waitFor({ state: 'visible', timeout: 20_000 });
  const userId = (await page.getByTestId('my-user-id').textContent()).trim();
  await page.evaluate(async () => {
    const load = (tag, attrs) =>
      new Promise((ok, fail) => {
        const n = Object.assign(document.createElement(tag), attrs);
        n.onload = ok;
        n.onerror = () => fail(new Error('load failed'));
        document.head.append(n);
      });
    if (!document.querySelector('link[href="/chat.css"]')) await load('link', { rel: 'stylesheet', href: '/chat.css' });
    if (!window.chorusChat) await load('script', { src: '/chat.js' });
  });
  // what app.js will dispatch once it is wired: the room's conversation id is its callId
  const conversationId = await page.evaluate(() => window.chorus.call.callId);
  assert.equal(conversationId, `room:${room}`);
  await page.evaluate((detail) => window.dispatchEvent(new CustomEvent('chorus:conversation', { detail })), {
    conversationId,
    userId,
    name,
  });
  await eventually(() => page.evaluate(() => window.chorusChat.state().historyLoaded), {
    timeoutMs: 10_000,
    what: `${name}'s panel to load the room's history`,
  });
  return { page, userId };
}

it('chat panel beside a room call: both participants chat; laptop and phone layouts', { timeout: 120_000 }, async () => {
  const A = await roomUser('Ada', 'chat-room');
  const B = await roomUser('Grace', 'chat-room', PHONE);
  await A.page.getByTestId('chat-panel').waitFor({ state: 'visible' });
  // phone: collapsed to a button by default, the call controls stay usable
  await B.page.getByTestId('chat-toggle').waitFor({ state: 'visible' });
  assert.ok(await B.page.getByTestId('chat-panel').isHidden());
  assert.ok(await B.page.getByTestId('hangup').isVisible());

  await A.page.getByTestId('chat-input').fill('Can you hear me? 🎧');
  await A.page.getByTestId('chat-input').press('Enter');
  await B.page.getByTestId('chat-unread').filter({ hasText: /^1$/ }).waitFor({ timeout: 5000 });
  await B.page.screenshot({ path: join(SHOTS, 'chat-room-phone-collapsed.png') });
  await B.page.getByTestId('chat-toggle').click();
  await messageWith(B.page, 'Can you hear me? 🎧').waitFor();
  await B.page.getByTestId('chat-input').fill('Loud and clear — a long reply that wraps over several lines on a phone, with a link https://example.com/a/very/long/path/that/should/wrap/nicely');
  await B.page.getByTestId('chat-send').click();
  await A.page.getByText(/Loud and clear/).waitFor({ timeout: 5000 });
  await A.page.getByTestId('chat-input').fill('typing…');
  await B.page.getByTestId('chat-typing').filter({ hasText: 'Ada is typing' }).waitFor({ timeout: 5000 });
  await B.page.screenshot({ path: join(SHOTS, 'chat-room-phone-open.png') });
  await A.page.screenshot({ path: join(SHOTS, 'chat-room-laptop.png') });
  assert.deepEqual(pageErrors, []);
});

it('chat panel: "load earlier" pages back through history; a refused send shows its error inline', { timeout: 60_000 }, async () => {
  const alice = await server.token('Alice');
  const bob = await server.token('Bob');
  const a = await connectWs(server.wsUrl, alice.token, { label: 'ws:alice' });
  const b = await connectWs(server.wsUrl, bob.token, { label: 'ws:bob' });
  sockets.push(a, b);
  const init = await a.ack('call:initiate', { conversationId: 'paging', callType: 'audio', participants: [bob.userId] });
  const callId = init.data.callId;
  await b.next('call:incoming', (d) => d.callId === callId);
  assert.equal((await b.ack('call:accept', { callId })).error, undefined);
  // 60 messages; the per-user rate limit (10/s) is honoured by retrying the same tempId
  for (let i = 1; i <= 60; i++) {
    for (let tries = 0; ; tries++) {
      const r = await a.ack('message:send', { conversationId: callId, content: `m${i}`, type: 'text', tempId: `p-${i}` });
      if (!r.error) break;
      assert.equal(r.error.code, 'rate_limited', JSON.stringify(r.error));
      assert.ok(tries < 50, 'rate limit never let up');
      await new Promise((ok) => setTimeout(ok, 150));
    }
  }
  const A = await openPanel(alice, callId);
  await eventually(async () => (await messages(A.page).count()) === 50, { timeoutMs: 5000, what: 'the first page of 50' });
  assert.equal((await texts(A.page))[0], 'm11');
  await A.page.getByTestId('chat-load-earlier').click();
  await eventually(async () => (await messages(A.page).count()) === 60, { timeoutMs: 5000, what: 'all 60 after load earlier' });
  assert.deepEqual(await texts(A.page), Array.from({ length: 60 }, (_, i) => `m${i + 1}`));
  await A.page.getByTestId('chat-load-earlier').waitFor({ state: 'hidden' });

  // over the content limit (4,000 characters; the input's maxlength stops typing it, the hook does not)
  const res = await A.page.evaluate(() => window.chorusChat.send('x'.repeat(4001)));
  assert.equal(res.error?.code, 'content_too_long');
  const failed = A.page.locator('[data-testid="chat-message"][data-status="failed"]');
  await failed.getByTestId('chat-error').waitFor();
  assert.equal(await failed.getByTestId('chat-retry').count(), 0, 'no retry for a permanent refusal');
  await failed.getByTestId('chat-discard').click();
  await failed.waitFor({ state: 'detached' });
  assert.equal(await messages(A.page).count(), 60);

  // the connection drops; a message typed meanwhile waits as pending and goes out once, after
  // the panel reconnected by itself
  await A.page.evaluate(() => window.chorusChat.disconnect());
  await A.page.locator('[data-testid="chat-status"][data-state="offline"]').waitFor({ timeout: 5000 });
  await A.page.getByTestId('chat-input').fill('sent while offline');
  await A.page.getByTestId('chat-send').click();
  await A.page.locator('[data-testid="chat-status"][data-state="online"]').waitFor({ timeout: 10_000 });
  await messageWith(A.page, 'sent while offline').and(A.page.locator('[data-status="sent"][data-seq="61"]')).waitFor({ timeout: 10_000 });
  const hist = await a.ack('message:history', { conversationId: callId, limit: 5 });
  assert.deepEqual(hist.data.messages.map((m) => m.content).slice(-1), ['sent while offline']);
  assert.equal(hist.data.messages.filter((m) => m.content === 'sent while offline').length, 1);
  assert.equal(await messageWith(A.page, 'sent while offline').count(), 1);
  assert.deepEqual(pageErrors, []);
});
