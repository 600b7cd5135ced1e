// The demo page is served by the binary itself, and the dev token endpoint it relies on keeps a
// user id across reloads.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from '../lib/fixture.mjs';

const h = useServer();

it('serves /, /app.js and /style.css with their content types', async () => {
  for (const [path, type, marker] of [
    ['/', 'text/html', 'data-testid="login-name"'],
    ['/app.js', 'javascript', 'class ChorusClient'],
    ['/style.css', 'text/css', '.tile'],
  ]) {
    const res = await fetch(h.server.url + path);
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get('content-type'), new RegExp(type), path);
    assert.ok((await res.text()).includes(marker), `${path} should contain ${marker}`);
  }
});

it('the page references no external resources', async () => {
  const html = await (await fetch(h.server.url + '/')).text();
  const js = await (await fetch(h.server.url + '/app.js')).text();
  const css = await (await fetch(h.server.url + '/style.css')).text();
  for (const text of [html, css]) assert.doesNotMatch(text, /(src|href)=["']?https?:|url\(\s*["']?https?:|@import/);
  assert.doesNotMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
});

it('dev tokens keep a requested user id and validate input', async () => {
  const first = await h.user('Reloader');
  assert.match(first.userId, /^reloader-/);
  const again = await h.user('Reloader', { userId: first.userId });
  assert.equal(again.userId, first.userId);
  assert.equal(again.name, 'Reloader');
  const bad = await fetch(`${h.server.url}/api/v1/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: '' }),
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).code, 'invalid_payload');
});
