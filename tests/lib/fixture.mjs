// One chorus server per test file, plus helpers that open clients and close them all after each
// test, so tests in a file do not see each other's connections.

import { after, afterEach, before } from 'node:test';
import { startServer } from './server.mjs';
import { connectSocketIo, connectWs } from './clients.mjs';

/**
 * Registers before/after hooks in the current file (or describe block) and returns a handle.
 * `h.server` is set once `before` ran.
 */
export function useServer(opts = {}) {
  const h = {
    server: null,
    open: [],
    /** A user: mints a token (fresh user id unless `userId` given). */
    user: (name, extra) => h.server.token(name, extra),
    /** A socket.io-client connection for `user` ({token}). */
    async sio(user, label) {
      const c = await connectSocketIo(h.server.url, user.token, { label: label ?? `sio:${user.name}` });
      h.open.push(c);
      return c;
    },
    /** A raw WebSocket connection for `user`. */
    async ws(user, label) {
      const c = await connectWs(h.server.wsUrl, user.token, { label: label ?? `ws:${user.name}` });
      h.open.push(c);
      return c;
    },
    closeAll() {
      for (const c of h.open.splice(0)) c.close();
    },
  };
  before(async () => {
    h.server = await startServer(opts);
  });
  afterEach(() => h.closeAll());
  after(async () => {
    h.closeAll();
    await h.server?.stop();
  });
  return h;
}
