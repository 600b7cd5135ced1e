// Test clients for both transports with one interface:
//   await c.ack(event, data)      -> the ack payload (success or {error}), bounded by a timeout
//   c.emit(event, data)           -> fire and forget
//   await c.next(event, pred?)    -> the first received (and not yet taken) matching event
//   await c.barrier()             -> every event the server sent before it answered has arrived
//   await c.none(event, pred?)    -> after a barrier, asserts no such event arrived
//   c.close()
//
// Events are recorded from the moment the connection exists, so a test can wait for an event
// that already arrived (no races between "send" and "start listening").
//
// The barrier is an acked `activity:ping`. The server's hub handles commands one at a time, in
// order, and queues each command's events for their connections before it takes the next one;
// the server then writes an ack only after every event that was queued for the connection when
// the ack was produced (docs/protocol.md, "Order of acks and events"; ADR 0046). On Socket.IO
// that holds on the wire too: socketioxide's emit and ack both take a slot on the engine.io
// socket's one channel, which one writer drains in order. So when the ping's ack arrives, every
// event caused by anything the hub received before the ping has arrived: a request from any
// client whose ack the test already awaited, or a disconnect or timer whose consequence the test
// has seen. It does not cover an event another client emitted without an ack (await that
// client's barrier first), a close the server may not have noticed yet, or a timer not yet due.

import { io } from 'socket.io-client';
import WebSocket from 'ws';
import assert from 'node:assert/strict';

export const EVENT_TIMEOUT_MS = 5000;

class Recorder {
  constructor(label) {
    this.label = label;
    this.events = []; // {event, data, taken}
    this.waiters = [];
  }

  push(event, data) {
    const entry = { event, data, taken: false };
    this.events.push(entry);
    for (const w of [...this.waiters]) {
      if (!entry.taken && w.event === event && w.pred(data)) {
        entry.taken = true;
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(data);
      }
    }
  }

  next(event, pred = () => true, timeoutMs = EVENT_TIMEOUT_MS) {
    const found = this.events.find((e) => !e.taken && e.event === event && pred(e.data));
    if (found) {
      found.taken = true;
      return Promise.resolve(found.data);
    }
    return new Promise((resolve, reject) => {
      const waiter = { event, pred, resolve };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        const seen = this.events.map((e) => e.event).join(', ') || 'nothing';
        reject(new Error(`${this.label}: no \`${event}\` within ${timeoutMs} ms (received: ${seen})`));
      }, timeoutMs);
      waiter.resolve = (data) => {
        clearTimeout(timer);
        resolve(data);
      };
      this.waiters.push(waiter);
    });
  }

  /** Asserts that no matching event is recorded and not yet taken (see `barrier` above). */
  assertNone(event, pred = () => true) {
    const hit = this.events.find((e) => !e.taken && e.event === event && pred(e.data));
    assert.equal(hit, undefined, `${this.label}: unexpected \`${event}\` ${JSON.stringify(hit?.data)}`);
  }

  /** All received events with this name, taken or not. */
  all(event) {
    return this.events.filter((e) => e.event === event).map((e) => e.data);
  }
}

/**
 * The delivery barrier: `ack` of `activity:ping`, which must be served (a refused ping, e.g.
 * `rate_limited`, never reached the hub and orders nothing).
 */
async function barrier(client) {
  const reply = await client.ack('activity:ping', {});
  const error = reply?.error ?? null;
  assert.equal(error, null, `${client.label}: the barrier's activity:ping was refused: ${JSON.stringify(error)}`);
}

/** Adds `barrier()` and `none(event, pred?)` to a client. */
function withBarrier(client) {
  client.barrier = () => barrier(client);
  client.none = async (event, pred) => {
    if (typeof pred !== 'undefined' && typeof pred !== 'function') {
      throw new TypeError('none(event, pred?): no time bound; it waits for a barrier');
    }
    await barrier(client);
    client.rec.assertNone(event, pred);
  };
  return client;
}

/**
 * A socket.io-client 4.x connection. Resolves once connected; rejects with the
 * `connect_error` (err.message is the server's error code) when refused.
 */
export function connectSocketIo(url, token, { label = 'sio', auth } = {}) {
  const socket = io(url, {
    auth: auth ?? (token === undefined ? {} : { token }),
    transports: ['websocket'],
    reconnection: false,
    timeout: EVENT_TIMEOUT_MS,
    forceNew: true,
  });
  const rec = new Recorder(label);
  socket.onAny((event, data) => rec.push(event, data));
  const client = withBarrier({
    kind: 'socket.io',
    label,
    socket,
    rec,
    next: (e, p, t) => rec.next(e, p, t),
    all: (e) => rec.all(e),
    emit: (event, data) => socket.emit(event, data),
    ack: (event, data, timeoutMs = EVENT_TIMEOUT_MS) =>
      socket
        .timeout(timeoutMs)
        .emitWithAck(event, data)
        .catch((e) => {
          throw new Error(`${label}: no ack for \`${event}\` within ${timeoutMs} ms (${e.message})`);
        }),
    close: () => socket.disconnect(),
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.disconnect();
      reject(new Error(`${label}: socket.io connect timed out`));
    }, EVENT_TIMEOUT_MS * 2);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(client);
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      socket.disconnect();
      reject(err);
    });
  });
}

/**
 * A raw WebSocket connection to /ws with the token as `?access_token=`.
 * Acks resolve to `{data}` or `{error}` exactly as the server framed them.
 */
export function connectWs(wsUrl, token, { label = 'ws' } = {}) {
  const url = token === undefined ? wsUrl : `${wsUrl}?access_token=${encodeURIComponent(token)}`;
  const socket = new WebSocket(url);
  const rec = new Recorder(label);
  const pending = new Map();
  let nextId = 1;
  socket.on('message', (raw) => {
    const frame = JSON.parse(raw.toString());
    if (frame.ack !== undefined) {
      const p = pending.get(frame.ack);
      if (p) {
        pending.delete(frame.ack);
        p(frame);
      }
      return;
    }
    rec.push(frame.event, frame.data);
  });
  const client = withBarrier({
    kind: 'ws',
    label,
    socket,
    rec,
    next: (e, p, t) => rec.next(e, p, t),
    all: (e) => rec.all(e),
    emit: (event, data) => socket.send(JSON.stringify({ event, data })),
    send: (text) => socket.send(text),
    ack(event, data, timeoutMs = EVENT_TIMEOUT_MS) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${label}: no ack for \`${event}\` (id ${id}) within ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, (frame) => {
          clearTimeout(timer);
          resolve(frame);
        });
        socket.send(JSON.stringify({ event, data, id }));
      });
    },
    close: () => socket.close(),
  });
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(client));
    socket.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        const err = new Error(`${label}: HTTP ${res.statusCode} ${body}`);
        err.status = res.statusCode;
        try {
          err.body = JSON.parse(body);
        } catch {
          err.body = body;
        }
        reject(err);
      });
    });
    socket.once('error', reject);
  });
}

/** A fake but well-formed SDP / candidate payload for relay tests (the server passes it through). */
export const fakeOffer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n' };
export const fakeAnswer = { type: 'answer', sdp: 'v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n' };
export const fakeCandidate = {
  candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host',
  sdpMid: '0',
  sdpMLineIndex: 0,
};
