// Data channels through the SFU, and in-call reactions on top of them.
//
// The server relays what a participant sends on its `chorus-reliable` (ordered, retransmitted)
// or `chorus-lossy` (unordered, no retransmission) channel to every other participant of the
// room, on the same kind of channel, in an envelope that names the sender (docs/protocol.md,
// "Data channels"): text arrives as `{"from": userId, "data": text}`, binary as
// `[1][sender length u16][sender][payload]`. The sender never names itself, so it cannot lie.
//
// Reactions are text messages `{"type":"reaction","emoji":"🎉"}` on the reliable channel: every
// press shows, on every other page, as a burst of the emoji over the sender's tile with their name.
(() => {
  'use strict';

  const RELIABLE = 'chorus-reliable';
  const LOSSY = 'chorus-lossy';
  const EMOJI = ['👍', '👏', '🎉', '😂', '❤️'];
  const BURST_MS = 2400;
  const decoder = new TextDecoder();

  /**
   * Opens the two relayed channels on `pc`. Call before the first offer: the channels put the
   * `m=application` line in it. `onMessage({kind, from, data, binary})` gets each relayed message.
   */
  function openChannels(pc, onMessage) {
    const channels = {
      reliable: pc.createDataChannel(RELIABLE),
      lossy: pc.createDataChannel(LOSSY, { ordered: false, maxRetransmits: 0 }),
    };
    for (const [kind, channel] of Object.entries(channels)) {
      channel.binaryType = 'arraybuffer';
      channel.onmessage = (e) => {
        const message = decode(e.data);
        if (message) onMessage({ kind, ...message });
      };
    }
    return {
      channels,
      /** Sends text or binary on `kind` ('reliable' | 'lossy'); false when it is not open yet. */
      send(kind, data) {
        const channel = channels[kind];
        if (channel?.readyState !== 'open') return false;
        channel.send(data);
        return true;
      },
      /** Resolves once `kind` is open. */
      whenOpen(kind) {
        const channel = channels[kind];
        if (channel.readyState === 'open') return Promise.resolve();
        return new Promise((resolve) => channel.addEventListener('open', () => resolve(), { once: true }));
      },
    };
  }

  /** A relayed message as `{from, data, binary}`, or null when it is not an envelope. */
  function decode(data) {
    if (typeof data === 'string') {
      try {
        const o = JSON.parse(data);
        if (typeof o?.from === 'string' && typeof o.data === 'string') return { from: o.from, data: o.data, binary: false };
      } catch {
        // not an envelope
      }
      return null;
    }
    const bytes = new Uint8Array(data);
    if (bytes.length < 3 || bytes[0] !== 1) return null;
    const n = (bytes[1] << 8) | bytes[2];
    if (bytes.length < 3 + n) return null;
    return { from: decoder.decode(bytes.subarray(3, 3 + n)), data: bytes.slice(3 + n), binary: true };
  }

  const Reactions = {
    EMOJI,

    /** Sends `emoji` from `call` and shows it on our own tile. */
    send(call, emoji) {
      if (!call?.sfu?.data) return false;
      const sent = call.sfu.data.send('reliable', JSON.stringify({ type: 'reaction', emoji }));
      if (sent) this.burst(call.tiles.get('local')?.el, emoji, 'You', 'local');
      return sent;
    },

    /** A relayed message for `call`: a reaction bursts over its sender's tile. */
    receive(call, message) {
      if (message.binary) return;
      let body;
      try {
        body = JSON.parse(message.data);
      } catch {
        return;
      }
      if (body?.type !== 'reaction' || !EMOJI.includes(body.emoji)) return;
      const tile = call.tiles.get(message.from)?.el;
      this.burst(tile, body.emoji, call.nameOf(message.from), message.from);
    },

    /** A few copies of `emoji` floating up over `tile`, with `name` under them. */
    burst(tile, emoji, name, from) {
      if (!tile) return;
      const el = document.createElement('div');
      el.className = 'reaction-burst';
      el.dataset.testid = 'reaction';
      el.dataset.from = from;
      el.dataset.emoji = emoji;
      for (let i = 0; i < 6; i++) {
        const e = document.createElement('span');
        e.className = 'reaction-emoji';
        e.textContent = emoji;
        e.style.left = `${10 + Math.random() * 70}%`;
        e.style.animationDelay = `${i * 90}ms`;
        el.append(e);
      }
      const label = document.createElement('span');
      label.className = 'reaction-name';
      label.dataset.testid = 'reaction-name';
      label.textContent = name;
      el.append(label);
      tile.append(el);
      setTimeout(() => el.remove(), BURST_MS);
    },

    /** The emoji buttons of the call toolbar. */
    mount(container) {
      for (const emoji of EMOJI) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'reaction-button';
        b.dataset.testid = 'reaction-button';
        b.dataset.emoji = emoji;
        b.title = `React with ${emoji}`;
        b.textContent = emoji;
        b.addEventListener('click', () => {
          const call = window.chorus?.call;
          if (!this.send(call, emoji)) window.chorus?.toast('Reactions need a call through the server', 'warn');
        });
        container.append(b);
      }
    },
  };

  window.ChorusData = { RELIABLE, LOSSY, openChannels, decode, Reactions };
  document.addEventListener('DOMContentLoaded', () => {
    const bar = document.getElementById('reactions');
    if (bar) Reactions.mount(bar);
  });
})();
