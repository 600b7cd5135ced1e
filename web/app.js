// Chorus demo page: plain JavaScript, no build step, no dependencies.
//
// Layers, bottom up:
//   ChorusClient  - the raw WebSocket protocol (/ws): events in, events out, acks as promises.
//   Media         - the local camera/microphone stream and screen capture.
//   PeerLink      - one RTCPeerConnection to one remote user (P2P calls); trickle ICE.
//   SfuLink       - one RTCPeerConnection to the server's SFU (rooms, calls in SFU mode).
//   CallController- one call or room: ringing, joined, ended; owns the links and the tiles. A
//                   call runs P2P (one PeerLink per user) until the server says `call:mode sfu`;
//                   a room (`room:<name>`) is always SFU. Remote tracks are put on tiles by the
//                   `track:published` events (trackId -> user and source: camera or screen).
//   UI functions  - screens, tiles, toasts. All user-provided text goes through textContent.
//
// Failures: the client reconnects by itself (after a drop, and after `server:shutdown` from a
// draining node) to the same URL, which behind a load balancer reaches a live node. After a drop
// without a close frame it first sends `session:resume` with the id from `session:ready`: the
// server kept its rooms, calls and media seat, and replays what it missed, so nothing else
// happens (media never stopped). Otherwise the app rejoins the room it was in, or takes its call
// back with `call:join`. An SFU link whose ICE connection fails (a network change) restarts ICE
// on the same seat. A reload rejoins the room the tab was in. `media:moved` (the node
// carrying a call's or room's media failed or was drained) starts the SFU link over with the
// node that took the space over. See docs/protocol.md, "Server lifecycle".
//
// For tests, `window.chorus` exposes the client, the current call and its RTCPeerConnection.

'use strict';

(() => {
  const STORAGE_KEY = 'chorus.identity';
  /** The room this tab is in (sessionStorage: survives a reload of the tab, not a new tab). */
  const ROOM_KEY = 'chorus.room';
  const ACK_TIMEOUT_MS = 10000;
  /** How long an SFU link may stay `disconnected` before it restarts ICE. */
  const ICE_DISCONNECTED_GRACE_MS = 2000;
  /**
   * A camera tile whose shorter side is under this many CSS pixels is a thumbnail (a crowded
   * grid, a phone's strip): motion at that size looks the same at half the frames, and the
   * server then sends half of them (`track:settings {frameRate}`), saving the link and the
   * decoder. Screen share keeps every frame.
   */
  const THUMBNAIL_SHORT_SIDE = 180;
  const THUMBNAIL_FRAME_RATE = 15;

  // ---------------------------------------------------------------------------------------------
  // ChorusClient: raw WebSocket protocol
  // ---------------------------------------------------------------------------------------------

  /** An error from the server (ack or `error` event) or from the transport. */
  class ChorusError extends Error {
    constructor(code, message, event) {
      super(message || code);
      this.code = code;
      this.event = event;
    }
  }

  /**
   * `{"event", "data", "id"}` frames out; `{"event", "data"}` and `{"ack", "data"|"error"}` in.
   * `request()` resolves with the ack's data or rejects with a ChorusError.
   * Reconnects with backoff (and jitter) until `close()`, always to the same URL: behind a load
   * balancer that reaches a live node. On `server:shutdown` it does not wait for the draining
   * server to close the socket: it closes it itself after `reconnectInMs` and reconnects.
   * Emits `open`, `close` and every server event.
   */
  class ChorusClient {
    constructor(url) {
      this.url = url;
      this.ws = null;
      this.nextId = 1;
      this.pending = new Map();
      this.handlers = new Map();
      this.closed = false;
      this.retryMs = 500;
      this.reconnectHintMs = null;
      this.shutdownTimer = null;
      this.log = [];
      // Session resume (docs/protocol.md, "Resuming a session after a drop"): the id from
      // `session:ready`, and after a drop without a close frame, what to resume and until when.
      this.sessionId = null;
      this.resumeWithinMs = 0;
      this.resumable = null; // {sessionId, until}
      this.resuming = false;
      this.freshSessionId = null;
      // Events received in this session (all but `error` and `session:expiring`, as the server
      // counts them), so a resume gets back those in flight when the connection broke.
      this.received = 0;
      this.receivedFresh = 0;
    }

    /** Whether the connection dropped and the next one will try `session:resume`. */
    get willResume() {
      return !!this.resumable && Date.now() < this.resumable.until;
    }

    /**
     * On a new connection after a drop: takes the old session back (its rooms, calls and media
     * seat, and the events it missed, which arrive as ordinary events before the ack).
     * Resolves to whether it worked; if not, the caller joins afresh.
     */
    async tryResume() {
      const r = this.resumable;
      this.resumable = null;
      if (!r || Date.now() >= r.until) return false;
      this.resuming = true;
      this.receivedFresh = 0;
      try {
        const ack = await this.request('session:resume', { sessionId: r.sessionId, received: r.received });
        // The old session's events follow the ack: count on from what we had.
        this.sessionId = ack.sessionId;
        this.received = r.received;
        return true;
      } catch (e) {
        console.info(`session:resume refused (${e.code}); joining afresh`);
        this.sessionId = this.freshSessionId ?? this.sessionId;
        this.received = this.receivedFresh;
        return false;
      } finally {
        this.resuming = false;
        this.freshSessionId = null;
      }
    }

    on(event, fn) {
      if (!this.handlers.has(event)) this.handlers.set(event, new Set());
      this.handlers.get(event).add(fn);
      return () => this.handlers.get(event).delete(fn);
    }

    dispatch(event, data) {
      for (const fn of this.handlers.get(event) ?? []) {
        try {
          fn(data);
        } catch (e) {
          console.error(`handler for ${event} failed`, e);
        }
      }
    }

    get connected() {
      return this.ws?.readyState === WebSocket.OPEN;
    }

    connect() {
      this.closed = false;
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = async () => {
        this.retryMs = 500;
        const resumed = await this.tryResume();
        if (this.ws !== ws) return;
        this.dispatch('open', { resumed });
      };
      ws.onmessage = (msg) => this.receive(msg.data);
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        clearTimeout(this.shutdownTimer);
        for (const [, p] of this.pending) p.reject(new ChorusError('disconnected', 'connection lost'));
        this.pending.clear();
        // 1006: no close frame, the network broke. Every other close was meant (ours, or the
        // server's: token expired, too slow, draining) and ends the session.
        this.resumable =
          ev.code === 1006 && !this.closed && this.sessionId && this.resumeWithinMs > 0
            ? { sessionId: this.sessionId, until: Date.now() + this.resumeWithinMs, received: this.received }
            : null;
        this.dispatch('close', { code: ev.code, reason: ev.reason });
        if (this.closed) return;
        // Spread the reconnects of many clients of one failed node over a little time.
        const wait = (this.reconnectHintMs ?? this.retryMs) * (1 + 0.25 * Math.random());
        this.reconnectHintMs = null;
        this.retryMs = Math.min(this.retryMs * 2, 10000);
        setTimeout(() => !this.closed && this.connect(), wait);
      };
    }

    /**
     * `server:shutdown {reconnectInMs}`: this server is draining. Leave it after `reconnectInMs`
     * (a little jitter added) and connect again at once; the server closes the socket itself at
     * the end of its drain if that comes first, and then the reconnect waits no longer.
     */
    leaveDrainingServer(reconnectInMs) {
      const ws = this.ws;
      clearTimeout(this.shutdownTimer);
      this.shutdownTimer = setTimeout(
        () => {
          if (this.ws !== ws || this.closed) return;
          this.reconnectHintMs = 0;
          this.retryMs = 500;
          ws.close(1000, 'server draining');
        },
        Math.max(0, reconnectInMs ?? 0) * (1 + 0.25 * Math.random()),
      );
      this.reconnectHintMs = 0;
    }

    receive(text) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch {
        return;
      }
      if (frame.ack !== undefined) {
        const p = this.pending.get(frame.ack);
        if (!p) return;
        this.pending.delete(frame.ack);
        clearTimeout(p.timer);
        if (frame.error) p.reject(new ChorusError(frame.error.code, frame.error.message, p.event));
        else p.resolve(frame.data);
        return;
      }
      if (frame.event === 'server:shutdown') this.leaveDrainingServer(frame.data?.reconnectInMs);
      if (frame.event === 'session:ready') {
        this.resumeWithinMs = frame.data?.resumeWithinMs ?? 0;
        if (this.resuming) this.freshSessionId = frame.data?.sessionId;
        else {
          this.sessionId = frame.data?.sessionId;
          this.received = 0;
        }
      }
      if (frame.event !== 'error' && frame.event !== 'session:expiring') {
        // Before a resume's ack, events are the new connection's own.
        if (this.resuming) this.receivedFresh++;
        else this.received++;
      }
      // The last events, for debugging (and test failure reports): `window.chorus.client.log`.
      this.log.push({ at: Date.now(), event: frame.event, data: frame.data });
      if (this.log.length > 200) this.log.shift();
      this.dispatch(frame.event, frame.data);
    }

    /** Fire and forget. */
    send(event, data) {
      if (!this.connected) return false;
      this.ws.send(JSON.stringify({ event, data }));
      return true;
    }

    /** Sends with an ack id; resolves with the ack's data. */
    request(event, data, timeoutMs = ACK_TIMEOUT_MS) {
      if (!this.connected) return Promise.reject(new ChorusError('disconnected', 'not connected', event));
      const id = this.nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new ChorusError('timeout', `no answer to ${event}`, event));
        }, timeoutMs);
        this.pending.set(id, { resolve, reject, timer, event });
        this.ws.send(JSON.stringify({ event, data, id }));
      });
    }

    close() {
      this.closed = true;
      clearTimeout(this.shutdownTimer);
      this.ws?.close();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Media: local camera/mic and screen capture
  // ---------------------------------------------------------------------------------------------

  const Media = {
    /** Camera (for video calls) and microphone; falls back to what is available. */
    async local(callType) {
      const wantVideo = callType === 'video';
      const attempts = wantVideo
        ? [{ audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } }, { audio: true }, { video: true }]
        : [{ audio: true }];
      let lastError;
      for (const constraints of attempts) {
        try {
          return await navigator.mediaDevices.getUserMedia(constraints);
        } catch (e) {
          lastError = e;
        }
      }
      toast(`No camera/microphone: ${lastError?.message ?? 'unavailable'}. Joining without media.`, 'warn');
      return new MediaStream();
    },

    async screen() {
      return navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    },

    stop(stream) {
      stream?.getTracks().forEach((t) => t.stop());
    },
  };

  // ---------------------------------------------------------------------------------------------
  // PeerLink: one RTCPeerConnection to one remote user
  // ---------------------------------------------------------------------------------------------

  /**
   * A P2P link. Both sides create one audio and one video transceiver (sendrecv) even for audio
   * calls or without a camera, so screen share later is a replaceTrack, never a renegotiation.
   * The caller makes the offer; candidates that arrive before the remote description are queued.
   */
  class PeerLink {
    constructor({ client, callId, peerId, iceServers, onTrack, onState }) {
      this.client = client;
      this.callId = callId;
      this.peerId = peerId;
      this.pendingCandidates = [];
      this.remoteStream = new MediaStream();
      this.pc = new RTCPeerConnection({ iceServers: iceServers ?? [] });
      this.pc.onicecandidate = (e) => {
        if (e.candidate) {
          this.client.send('ice-candidate', {
            callId: this.callId,
            targetUserId: this.peerId,
            candidate: e.candidate.toJSON(),
          });
        }
      };
      this.pc.ontrack = (e) => {
        if (!this.remoteStream.getTracks().includes(e.track)) this.remoteStream.addTrack(e.track);
        onTrack?.(this.remoteStream, e.track);
      };
      this.pc.onconnectionstatechange = () => onState?.(this.pc.connectionState);
    }

    /** Caller side: transceivers for the local tracks, then the offer. */
    async start(stream) {
      for (const kind of ['audio', 'video']) {
        const track = stream.getTracks().find((t) => t.kind === kind);
        this.pc.addTransceiver(track ?? kind, { direction: 'sendrecv', streams: [stream] });
      }
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      await this.client.request('offer', {
        callId: this.callId,
        targetUserId: this.peerId,
        offer: { type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp },
      });
    }

    /** Answers an offer (the first one, or a renegotiation), sending our tracks on its m-lines. */
    async handleOffer(offer, stream) {
      await this.pc.setRemoteDescription(offer);
      for (const t of this.pc.getTransceivers()) {
        const kind = t.receiver.track?.kind;
        if (!kind || t.sender.track) continue;
        const track = stream.getTracks().find((x) => x.kind === kind);
        if (track) {
          await t.sender.replaceTrack(track);
          t.sender.setStreams?.(stream);
        }
        t.direction = 'sendrecv';
      }
      await this.flushCandidates();
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      await this.client.request('answer', {
        callId: this.callId,
        targetUserId: this.peerId,
        answer: { type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp },
      });
    }

    async handleAnswer(answer) {
      if (this.pc.signalingState !== 'have-local-offer') return;
      await this.pc.setRemoteDescription(answer);
      await this.flushCandidates();
    }

    async handleCandidate(candidate) {
      if (!this.pc.remoteDescription) {
        this.pendingCandidates.push(candidate);
        return;
      }
      try {
        await this.pc.addIceCandidate(candidate);
      } catch (e) {
        console.warn('addIceCandidate failed', e);
      }
    }

    async flushCandidates() {
      const queued = this.pendingCandidates.splice(0);
      for (const c of queued) await this.handleCandidate(c);
    }

    /** The sender carrying our video (camera or screen). */
    videoSender() {
      return this.pc.getTransceivers().find((t) => t.receiver.track?.kind === 'video')?.sender ?? null;
    }

    close() {
      this.pc.close();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // SfuLink: one RTCPeerConnection to the server (rooms and SFU-mode calls)
  // ---------------------------------------------------------------------------------------------

  /**
   * The link to the SFU. We send what we publish (microphone, camera, screen share as its own
   * video track); the server adds one m-line per forwarded track with its own offers.
   *
   * Negotiation runs one step at a time (a promise chain). Glare: our offer always wins, so a
   * server offer that arrives while our offer waits for its answer is ignored (the server sends a
   * fresh one right after the answer). The answer comes both in the ack and as an `answer` event;
   * the first one is used.
   *
   * The server infers a track's source from its msid: the screen share's m-line gets a msid
   * containing "screen" in the copy of the SDP we send (a MediaStream id cannot be chosen).
   */
  /**
   * The camera's simulcast layers, lowest first: a quarter, half and full resolution. The
   * server forwards one per subscriber and asks (`track:quality`) to stop those nobody needs.
   */
  const SIMULCAST_LAYERS = [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
    { rid: 'f', maxBitrate: 1_500_000 },
  ];

  class SfuLink {
    constructor({ client, callId, iceServers, onTrack, onState, onData }) {
      this.client = client;
      this.callId = callId;
      this.onTrack = onTrack;
      this.chain = Promise.resolve();
      this.awaitingAnswer = null; // {resolve} while our offer is outstanding
      this.ownOffers = 0; // our offers queued or outstanding (answer not yet received)
      this.midToTrack = new Map(); // subscriber-side mid -> trackId
      this.screenTransceiver = null;
      this.closed = false;
      this.pc = new RTCPeerConnection({ iceServers: iceServers ?? [], bundlePolicy: 'max-bundle' });
      this.pc.onicecandidate = (e) => {
        if (e.candidate && e.candidate.candidate) {
          this.client.send('ice-candidate', { callId: this.callId, candidate: e.candidate.toJSON() });
        }
      };
      this.pc.ontrack = (e) => {
        const mid = e.transceiver?.mid;
        const trackId = this.midToTrack.get(mid) ?? msidTrackId(this.pc.remoteDescription?.sdp, mid);
        this.onTrack?.(trackId, e.track, mid);
      };
      this.iceRestarts = 0; // ICE restarts this link made (tests read it)
      this.restartTimer = null;
      this.pc.onconnectionstatechange = () => {
        const state = this.pc.connectionState;
        onState?.(state);
        this.watchConnection(state);
      };
      // Data channels relayed by the server (web/reactions.js); before the first offer.
      this.data = window.ChorusData?.openChannels(this.pc, (m) => onData?.(m)) ?? null;
    }

    /**
     * A network change (Wi-Fi to cellular, a VPN coming up) breaks the path to the server:
     * `failed` restarts ICE at once; `disconnected` may heal by itself, so it waits a moment
     * first. The server answers with new credentials on the same seat, so nobody sees us
     * leave (see docs/protocol.md, "ICE restart").
     */
    watchConnection(state) {
      clearTimeout(this.restartTimer);
      if (this.closed) return;
      if (state === 'failed') this.restartIce('failed');
      else if (state === 'disconnected') {
        this.restartTimer = setTimeout(() => {
          if (this.pc.connectionState === 'disconnected') this.restartIce('disconnected');
        }, ICE_DISCONNECTED_GRACE_MS);
      }
    }

    /** Offers with new ICE credentials; media keeps its tracks and transceivers. */
    restartIce(why = 'asked') {
      if (this.closed) return Promise.resolve();
      this.iceRestarts++;
      console.info(`restarting ICE with the server (${why})`);
      this.pc.restartIce();
      return this.negotiate();
    }

    /** Runs `fn` after every earlier negotiation step. */
    step(fn) {
      const run = this.chain.then(() => (this.closed ? undefined : fn()));
      this.chain = run.catch((e) => {
        if (!this.closed) toast(`Negotiation failed: ${e.message}`, 'error');
      });
      return run;
    }

    /**
     * Adds the camera (in three simulcast layers, so each subscriber gets the size its tile
     * needs) and the microphone, then offers.
     */
    publish(stream) {
      for (const track of stream.getTracks()) {
        if (track.kind === 'video') {
          this.pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream], sendEncodings: SIMULCAST_LAYERS });
        } else {
          this.pc.addTrack(track, stream);
        }
      }
      // Nothing to send: one receive-only m-line so that the first offer is not empty.
      if (!stream.getTracks().length) this.pc.addTransceiver('audio', { direction: 'recvonly' });
      return this.negotiate();
    }

    /** Publishes a screen share as its own video track (a new m-line, or a reused one). */
    addScreen(track, stream) {
      const free = this.screenTransceiver;
      if (free && !free.stopped && free.currentDirection !== 'stopped') {
        free.sender.replaceTrack(track);
        free.sender.setStreams?.(stream);
        free.direction = 'sendonly';
      } else {
        this.screenTransceiver = this.pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      }
      return this.negotiate();
    }

    removeScreen() {
      const t = this.screenTransceiver;
      if (!t) return Promise.resolve();
      t.sender.replaceTrack(null);
      t.direction = 'inactive';
      return this.negotiate();
    }

    /**
     * `track:quality`: start or stop sending simulcast layers of our track on m-line `mid`
     * (dynacast). Encodings the message does not name keep their state.
     */
    async applyQuality(mid, layers) {
      const t = this.pc.getTransceivers().find((x) => x.mid === mid);
      if (!t?.sender.track) return;
      const params = t.sender.getParameters();
      if (!params.encodings?.length) return;
      let changed = false;
      for (const e of params.encodings) {
        const l = layers.find((x) => x.rid === e.rid);
        if (l && e.active !== l.active) {
          e.active = l.active;
          changed = true;
        }
      }
      if (changed) await t.sender.setParameters(params);
    }

    /** Our offer: one at a time; resolves once the answer is applied. */
    negotiate() {
      this.ownOffers++;
      return this.step(async () => {
        let counted = true;
        const done = () => {
          if (counted) this.ownOffers = Math.max(0, this.ownOffers - 1);
          counted = false;
        };
        try {
          const offer = await this.pc.createOffer();
          await this.pc.setLocalDescription(offer);
          const answered = new Promise((resolve) => {
            this.awaitingAnswer = {
              resolve: (v) => {
                done(); // from here on, server offers are fresh ones again
                resolve(v);
              },
            };
          });
          const sdp = this.markScreen(this.pc.localDescription.sdp);
          this.client
            .request('offer', { callId: this.callId, offer: { type: 'offer', sdp } })
            .then((ack) => ack?.answer && this.takeAnswer(ack.answer))
            .catch((e) => this.takeAnswer(null, e));
          const { answer, error } = await answered;
          if (error) {
            await this.pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
            throw error;
          }
          if (this.pc.signalingState === 'have-local-offer') await this.pc.setRemoteDescription(answer);
        } finally {
          done();
        }
      });
    }

    /** The answer to our outstanding offer, from the ack or the `answer` event (first wins). */
    takeAnswer(answer, error) {
      const waiter = this.awaitingAnswer;
      if (!waiter) return;
      this.awaitingAnswer = null;
      waiter.resolve({ answer, error });
    }

    handleAnswer(answer) {
      this.takeAnswer(answer);
    }

    /** A server offer: ignored while ours is outstanding (glare: the client wins). */
    handleOffer(data) {
      if (this.ownOffers > 0) return Promise.resolve();
      const run = this.step(async () => {
        for (const t of data.tracks ?? []) this.midToTrack.set(String(t.mid), t.trackId);
        await this.pc.setRemoteDescription(data.offer);
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        await this.client.request('answer', {
          callId: this.callId,
          answer: { type: 'answer', sdp: this.markScreen(this.pc.localDescription.sdp) },
        });
      });
      return run.catch(() => {}); // reported by step()
    }

    async handleCandidate(candidate) {
      if (!candidate?.candidate || !this.pc.remoteDescription) return;
      try {
        await this.pc.addIceCandidate(candidate);
      } catch (e) {
        console.warn('addIceCandidate failed', e);
      }
    }

    /** Rewrites the msid of the screen share's m-line so that it contains "screen". */
    markScreen(sdp) {
      const mid = this.screenTransceiver?.mid;
      if (mid == null) return sdp;
      const sections = sdp.split(/(?=\r\nm=)/);
      return sections
        .map((s) =>
          s.includes(`\r\na=mid:${mid}\r\n`)
            ? s.replace(/(a=msid:|msid:)(?!screen-)(\S+)/g, (_, p, id) => `${p}screen-${id}`)
            : s,
        )
        .join('');
    }

    close() {
      this.closed = true;
      clearTimeout(this.restartTimer);
      this.takeAnswer(null, new ChorusError('closed', 'link closed'));
      this.pc.close();
    }
  }

  /** The track id of a mid's msid (`<publisher> <trackId>`) in an SDP, if any. */
  function msidTrackId(sdp, mid) {
    if (!sdp || mid == null) return null;
    for (const s of sdp.split(/\r\n(?=m=)/)) {
      if (!s.includes(`\r\na=mid:${mid}\r\n`) && !s.endsWith(`\r\na=mid:${mid}`)) continue;
      return /a=msid:\S+ (\S+)/.exec(s)?.[1] ?? null;
    }
    return null;
  }

  // ---------------------------------------------------------------------------------------------
  // CallController: one call
  // ---------------------------------------------------------------------------------------------

  /**
   * Lifecycle: `ringing-out` (we called) or `ringing-in` (we were called) → `joined` → `ended`;
   * a room (`direction: 'room'`) goes from joining straight to `joined`.
   * Holds the local stream and the tiles, and either one PeerLink per remote participant (P2P)
   * or one SfuLink (SFU: rooms, and calls after `call:mode sfu`). In SFU mode tiles are keyed by
   * user id (camera and microphone) and `<userId>:screen` (a screen share), filled from the
   * remote tracks as `track:published` says whose they are.
   */
  class CallController {
    constructor(app, { callId, callType, iceServers, direction, peer, mode, room, peers }) {
      this.app = app;
      this.callId = callId;
      this.callType = callType;
      this.iceServers = iceServers ?? [];
      this.direction = direction; // 'outgoing' | 'incoming' | 'room'
      this.peer = peer; // {userId, name}
      this.state = direction === 'outgoing' ? 'ringing-out' : 'ringing-in';
      this.local = null;
      this.screen = null;
      this.links = new Map(); // userId -> PeerLink
      this.tiles = new Map(); // userId -> tile element
      this.remoteMedia = new Map(); // userId -> {audio, video, screen}
      this.mic = true;
      this.cam = true;
      this.startedAt = null;
      this.mode = mode ?? 'p2p'; // 'p2p' | 'sfu'
      this.room = room ?? null; // the room name when this is a named room
      this.peers = peers ?? (peer ? [peer] : []); // everyone we dialled (group calls)
      this.names = new Map(this.peers.map((p) => [p.userId, p.name || p.userId]));
      this.sfu = null; // SfuLink in SFU mode
      this.trackInfo = new Map(); // trackId -> {userId, kind, source, muted} (track:published)
      this.trackObjs = new Map(); // trackId -> remote MediaStreamTrack (ontrack)
      this.speakers = []; // user ids, most active first (room:speakers)
      this.ownTracks = new Map(); // trackId -> our mid (our own track:published)
      this.tileWatches = new Map(); // trackId -> {stop} (what we tell the server of its tile)
    }

    /** The app's current connection (joining a room may replace it with one for a new token). */
    get client() {
      return this.app.client;
    }

    get isRoom() {
      return this.room !== null;
    }

    /** The SFU link's RTCPeerConnection, or the first P2P link's (1:1 calls have one). */
    get pc() {
      return this.sfu?.pc ?? this.links.values().next().value?.pc ?? null;
    }

    async prepareMedia() {
      if (!this.local) this.local = await Media.local(this.callType);
      this.mic = this.local.getAudioTracks().some((t) => t.enabled);
      this.cam = this.local.getVideoTracks().some((t) => t.enabled);
      return this.local;
    }

    /** We joined (accepted, or our callee accepted): show the call view. */
    enterCall() {
      this.state = 'joined';
      this.startedAt = Date.now();
      UI.showCall(this);
      const me = this.app.identity;
      UI.ensureTile(this, 'local', `${me.name} (you)`, true).video.srcObject = this.local;
      UI.renderLocalControls(this);
      this.syncLocalBadges();
      announceConversation({ conversationId: this.callId, userId: me.userId, name: me.name });
    }

    link(peerId) {
      let link = this.links.get(peerId);
      if (!link) {
        link = new PeerLink({
          client: this.client,
          callId: this.callId,
          peerId,
          iceServers: this.iceServers,
          onTrack: (stream) => {
            const tile = UI.ensureTile(this, peerId, this.nameOf(peerId), false);
            if (tile.video.srcObject !== stream) tile.video.srcObject = stream;
            this.watchRemoteVideo(peerId, stream);
          },
          onState: (s) => UI.setCallState(s),
        });
        this.links.set(peerId, link);
        UI.ensureTile(this, peerId, this.nameOf(peerId), false);
      }
      return link;
    }

    nameOf(userId) {
      if (this.peer && this.peer.userId === userId && this.peer.name) return this.peer.name;
      return this.names.get(userId) || userId;
    }

    // -- SFU mode --

    /**
     * Starts the link to the server and publishes microphone, camera (and a running share).
     * Resolves to whether the server answered our offer.
     */
    async startSfu() {
      if (this.sfu || this.state !== 'joined') return false;
      const link = new SfuLink({
        client: this.client,
        callId: this.callId,
        iceServers: this.iceServers,
        onTrack: (trackId, track) => this.onSfuTrack(trackId, track),
        onState: (s) => UI.setCallState(s),
        onData: (m) => window.ChorusData?.Reactions.receive(this, m),
      });
      this.sfu = link;
      UI.setTitle(this);
      try {
        const publishing = link.publish(this.local ?? new MediaStream());
        if (this.screen) {
          UI.showLocalScreen(this, this.screen);
          await link.addScreen(this.screen.getVideoTracks()[0], this.screen);
        }
        await publishing;
        return true;
      } catch (e) {
        if (this.state !== 'ended' && this.sfu === link) toast(`Could not reach the media server: ${e.message}`, 'error');
        return false;
      }
    }

    /**
     * Closes the link to the server and forgets the tracks it carried: track ids belong to one
     * media server, and a new one may hand out the same ids for other tracks. Remote tiles stay
     * (the people are still here) and show their avatar until the new link brings their video.
     */
    dropSfu() {
      this.sfu?.close();
      this.sfu = null;
      for (const trackId of [...this.trackObjs.keys()]) this.unplaceTrack(trackId);
      this.trackInfo.clear();
      this.ownTracks.clear();
      this.trackObjs.clear();
      for (const [key, tile] of [...this.tiles]) {
        if (tile.isLocal) continue;
        if (key.endsWith(':screen')) {
          UI.removeTile(this, key);
          continue;
        }
        tile.stream = new MediaStream();
        tile.video.srcObject = null;
        UI.setTileFlowing(this, key, false);
      }
    }

    /**
     * Media with the server from scratch: a new link, offered again until the server answers
     * (a few tries, backing off). `tracks` is null to keep what we know (our first offer just
     * failed), or the tracks published on a media server that is new to us: after `media:moved`
     * (none yet: their `track:published` follow), or the list in a join ack once our
     * connection came back. Tracks announced while we retry are kept.
     */
    async restartSfu(why, { tracks = null } = {}) {
      const attempt = (this.sfuRestarts = (this.sfuRestarts ?? 0) + 1);
      if (tracks) {
        this.dropSfu();
        for (const t of tracks) this.onTrackPublished(t);
      }
      for (let tries = 0; tries < 8; tries++) {
        if (this.state !== 'joined' || this.sfuRestarts !== attempt) return;
        this.sfu?.close(); // a link whose offer failed carries nothing
        this.sfu = null;
        if (await this.startSfu()) return;
        await sleep(Math.min(500 * 2 ** tries, 4000));
      }
      toast(`Lost the media server (${why}); leave and join again`, 'error');
    }

    /**
     * `media:moved {callId, reason}`: the node whose media server carried this call or room
     * failed or was drained, and another node took it over. Membership stays; our old
     * RTCPeerConnection leads nowhere: negotiate with the new owner's media server.
     */
    onMediaMoved(data) {
      if (this.mode !== 'sfu' || this.state !== 'joined') return;
      toast(data.reason === 'node_drained' ? 'The media server moved; reconnecting media' : 'The media server failed; reconnecting media', 'warn');
      return this.restartSfu(data.reason, { tracks: [] });
    }

    /** `call:mode {mode: "sfu"}`: the call grew; drop the P2P links and go through the server. */
    async switchToSfu() {
      if (this.mode === 'sfu') return;
      this.mode = 'sfu';
      for (const link of this.links.values()) link.close();
      this.links.clear();
      for (const [key, tile] of this.tiles) {
        if (tile.isLocal) continue;
        tile.stream = new MediaStream();
        tile.video.srcObject = null;
        UI.setTileFlowing(this, key, false);
      }
      if (this.screen) {
        // In P2P the share replaced the camera; in SFU it is a track of its own.
        const camera = this.local?.getVideoTracks()[0];
        const tile = UI.tile(this, 'local');
        if (tile) tile.video.srcObject = this.local;
        if (camera) camera.enabled = this.cam;
      }
      toast('Three or more people: the call now goes through the server', 'info');
      await this.startSfu();
    }

    /** A remote track (or its `track:published`) arrived: put it on its user's tile. */
    onSfuTrack(trackId, track) {
      if (!trackId) return;
      this.trackObjs.set(trackId, track);
      // (the id may name another track by then: one of a new media server)
      track.addEventListener('ended', () => this.trackObjs.get(trackId) === track && this.unplaceTrack(trackId));
      this.placeTrack(trackId);
    }

    tileKey(info) {
      return info.source === 'screen' ? `${info.userId}:screen` : info.userId;
    }

    placeTrack(trackId) {
      const info = this.trackInfo.get(trackId);
      const track = this.trackObjs.get(trackId);
      if (!info || !track || this.state === 'ended') return;
      const key = this.tileKey(info);
      const tile = info.source === 'screen' ? UI.ensureScreenTile(this, info.userId) : this.ensurePeerTile(info.userId);
      tile.stream ??= new MediaStream();
      if (!tile.stream.getTracks().includes(track)) {
        for (const t of tile.stream.getTracks()) if (t.kind === track.kind) tile.stream.removeTrack(t);
        tile.stream.addTrack(track);
      }
      if (tile.video.srcObject !== tile.stream) tile.video.srcObject = tile.stream;
      tile.video.play?.().catch(() => {});
      if (track.kind === 'video') {
        this.watchTileSize(trackId, tile.video);
        const update = () => {
          if (this.trackObjs.get(trackId) === track) UI.setTileFlowing(this, key, !track.muted);
        };
        track.onmute = update;
        track.onunmute = update;
        update();
      }
    }

    unplaceTrack(trackId) {
      const info = this.trackInfo.get(trackId);
      const track = this.trackObjs.get(trackId);
      this.trackObjs.delete(trackId);
      this.tileWatches.get(trackId)?.stop();
      this.tileWatches.delete(trackId);
      if (!info) return;
      const key = this.tileKey(info);
      const tile = UI.tile(this, key);
      if (tile?.stream && track) tile.stream.removeTrack(track);
      if (info.source === 'screen') UI.removeTile(this, key);
      else if (track?.kind === 'video') UI.setTileFlowing(this, key, false);
    }

    ensurePeerTile(userId) {
      const fresh = !UI.tile(this, userId);
      const tile = UI.ensureTile(this, userId, this.nameOf(userId), false);
      if (fresh && this.mode === 'sfu') {
        tile.stream = new MediaStream();
        UI.setTileFlowing(this, userId, false);
      }
      return tile;
    }

    onTrackPublished(t) {
      if (t.userId === this.app.identity?.userId) {
        // Our own publication: remember its m-line for `track:quality`.
        if (t.mid) this.ownTracks.set(t.trackId, t.mid);
        return;
      }
      this.trackInfo.set(t.trackId, { userId: t.userId, kind: t.kind, source: t.source, muted: !!t.muted });
      if (t.source === 'screen') UI.ensureScreenTile(this, t.userId);
      else this.ensurePeerTile(t.userId);
      this.syncRemoteBadges(t.userId);
      this.placeTrack(t.trackId);
    }

    /** `track:quality`: the server asks us to start or stop layers of our track. */
    onTrackQuality(d) {
      const mid = this.ownTracks.get(d.trackId);
      if (mid && this.sfu) this.sfu.applyQuality(mid, d.layers ?? []).catch(() => {});
    }

    /** `track:layer`: what we now receive of a remote video track (shown on its tile). */
    onTrackLayer(d) {
      const info = this.trackInfo.get(d.trackId);
      if (!info) return;
      const tile = UI.tile(this, this.tileKey(info));
      if (!tile) return;
      tile.el.dataset.layer = d.paused ? 'paused' : (d.rid ?? 'single');
      const fps = d.frameRate ? ` at ${d.frameRate} fps` : '';
      tile.el.title = d.paused ? 'video paused' : `receiving ${d.width}×${d.height}${fps}${d.rid ? ` (layer ${d.rid})` : ''}`;
    }

    /**
     * Tells the server how big a remote video track's tile is, in device pixels, and when it
     * is out of sight (`track:settings`), so it forwards the smallest layer that looks sharp,
     * fewer frames to a camera thumbnail, and nothing for a hidden tile. Sent when the size or
     * visibility settles.
     */
    watchTileSize(trackId, video) {
      this.tileWatches.get(trackId)?.stop();
      let visible = true;
      let last = '';
      let timer = null;
      const send = () => {
        timer = null;
        if (this.state !== 'joined' || !this.sfu) return;
        const scale = window.devicePixelRatio || 1;
        const width = Math.round(video.clientWidth * scale);
        const height = Math.round(video.clientHeight * scale);
        const paused = !visible || document.hidden;
        const shortSide = Math.min(video.clientWidth, video.clientHeight);
        const thumbnail =
          this.trackInfo.get(trackId)?.source === 'camera' && shortSide > 0 && shortSide < THUMBNAIL_SHORT_SIDE;
        const frameRate = thumbnail ? THUMBNAIL_FRAME_RATE : undefined;
        const key = paused ? 'paused' : `${width}x${height}@${frameRate ?? 'all'}`;
        if (key === last) return;
        last = key;
        const settings = paused ? { paused: true } : { width, height, frameRate, paused: false };
        this.client.request('track:settings', { callId: this.callId, trackId, ...settings }).catch(() => {});
      };
      const soon = () => {
        clearTimeout(timer);
        timer = setTimeout(send, 300);
      };
      const resize = new ResizeObserver(soon);
      resize.observe(video);
      const sight = new IntersectionObserver((entries) => {
        visible = entries.some((e) => e.isIntersecting);
        soon();
      });
      sight.observe(video);
      document.addEventListener('visibilitychange', soon);
      this.tileWatches.set(trackId, {
        stop: () => {
          resize.disconnect();
          sight.disconnect();
          document.removeEventListener('visibilitychange', soon);
          clearTimeout(timer);
        },
      });
      soon();
    }

    onTrackUnpublished(t) {
      const info = this.trackInfo.get(t.trackId);
      if (!info) return;
      this.unplaceTrack(t.trackId);
      this.trackInfo.delete(t.trackId);
      this.syncRemoteBadges(info.userId);
    }

    /**
     * `room:speakers`: who speaks, most active first. Marks the tiles; anything else that should
     * follow the speaker (a larger layer for their tile once simulcast exists) hangs off
     * `UI.markSpeakers`, which sees every change.
     */
    onSpeakers(d) {
      this.speakers = (d.speakers ?? []).map((s) => s.userId);
      UI.markSpeakers(this);
    }

    onTrackMuted(t, muted) {
      const info = this.trackInfo.get(t.trackId);
      if (!info) return;
      info.muted = muted;
      this.syncRemoteBadges(info.userId);
    }

    /** Badges from the user's published tracks: mic/camera muted, sharing. */
    syncRemoteBadges(userId) {
      const m = this.remoteMediaOf(userId);
      const mine = [...this.trackInfo.values()].filter((i) => i.userId === userId);
      const mic = mine.find((i) => i.source === 'microphone');
      const cam = mine.find((i) => i.source === 'camera');
      if (mic) m.audio = !mic.muted;
      if (cam) m.video = !cam.muted;
      m.screen = mine.some((i) => i.source === 'screen');
      UI.setRemoteBadges(this, userId, m);
    }

    forgetUser(userId) {
      for (const [trackId, info] of this.trackInfo) {
        if (info.userId !== userId) continue;
        this.trackObjs.delete(trackId);
        this.trackInfo.delete(trackId);
      }
      this.remoteMedia.delete(userId);
      UI.removeTile(this, `${userId}:screen`);
      UI.removeTile(this, userId);
    }

    /** Show the avatar instead of a black frame while the remote video has no frames. */
    watchRemoteVideo(peerId, stream) {
      for (const track of stream.getVideoTracks()) {
        if (track.__chorusWatched) continue;
        track.__chorusWatched = true;
        // (P2P tracks only: after `call:mode sfu` the tile shows the server's tracks)
        const update = () => this.mode === 'p2p' && UI.setRemoteVideoFlowing(this, peerId, !track.muted);
        track.addEventListener('mute', update);
        track.addEventListener('unmute', update);
        update();
      }
    }

    // -- signaling in --

    async onAccepted(data) {
      // Our callee accepted: we offer (P2P), or the server does the media (SFU).
      this.iceServers = data.iceServers?.length ? data.iceServers : this.iceServers;
      if (this.state !== 'joined') this.enterCall();
      if (this.mode === 'sfu') {
        this.ensurePeerTile(data.userId);
        return this.startSfu();
      }
      const link = this.link(data.userId);
      try {
        await link.start(this.local);
      } catch (e) {
        toast(`Could not start the call: ${e.message}`, 'error');
      }
    }

    async onOffer(data) {
      if (data.from === 'sfu') return this.sfu?.handleOffer(data);
      if (this.mode === 'sfu') return; // a P2P offer overtaken by `call:mode`
      // An offer from a different DTLS identity is a new session (the peer reloaded and
      // rejoined), not a renegotiation: start over with a fresh connection.
      const old = this.links.get(data.from);
      const remote = old?.pc.remoteDescription?.sdp;
      if (remote && fingerprint(remote) !== fingerprint(data.offer?.sdp ?? '')) {
        old.close();
        this.links.delete(data.from);
      }
      const link = this.link(data.from);
      try {
        await link.handleOffer(data.offer, this.local);
      } catch (e) {
        toast(`Negotiation failed: ${e.message}`, 'error');
      }
    }

    async onAnswer(data) {
      if (data.from === 'sfu') return this.sfu?.handleAnswer(data.answer);
      try {
        await this.links.get(data.from)?.handleAnswer(data.answer);
      } catch (e) {
        toast(`Negotiation failed: ${e.message}`, 'error');
      }
    }

    onCandidate(data) {
      if (data.from === 'sfu' || data.from === undefined) return this.sfu?.handleCandidate(data.candidate);
      if (this.mode === 'sfu') return;
      this.link(data.from).handleCandidate(data.candidate);
    }

    onMediaToggled(data) {
      const m = this.remoteMediaOf(data.userId);
      m[data.mediaType] = data.enabled;
      UI.setRemoteBadges(this, data.userId, m);
    }

    onScreenShare(data, sharing) {
      const m = this.remoteMediaOf(data.userId);
      m.screen = sharing;
      UI.setRemoteBadges(this, data.userId, m);
    }

    onParticipantJoined(data) {
      const id = data.participant.userId;
      if (data.participant.name) this.names.set(id, data.participant.name);
      if (this.peer?.userId === id) {
        this.peer.name = data.participant.name;
      }
      UI.setTitle(this);
      if (this.mode === 'sfu') {
        this.ensurePeerTile(id);
        UI.ensureTile(this, id, this.nameOf(id), false);
        return;
      }
      // A participant who comes back (page reload) starts over with a fresh connection and
      // offers; an established link to them is stale. A link being set up right now (the
      // `call:accepted` of the same join) is kept.
      const old = this.links.get(id);
      if (old && ['connected', 'disconnected', 'failed', 'closed'].includes(old.pc.connectionState)) {
        old.close();
        this.links.delete(id);
      }
      UI.ensureTile(this, id, this.nameOf(id), false);
    }

    onParticipantLeft(data) {
      if (data.userId === this.app.identity?.userId) return; // another device of ours
      this.links.get(data.userId)?.close();
      this.links.delete(data.userId);
      this.forgetUser(data.userId);
      UI.setTitle(this);
    }

    remoteMediaOf(userId) {
      if (!this.remoteMedia.has(userId)) this.remoteMedia.set(userId, { audio: true, video: true, screen: false });
      return this.remoteMedia.get(userId);
    }

    // -- local actions --

    async toggleMic() {
      this.mic = !this.mic;
      this.local?.getAudioTracks().forEach((t) => (t.enabled = this.mic));
      this.syncLocalBadges();
      await this.sendToggle('audio', this.mic);
    }

    async toggleCam() {
      this.cam = !this.cam;
      this.local?.getVideoTracks().forEach((t) => (t.enabled = this.cam));
      this.syncLocalBadges();
      await this.sendToggle('video', this.cam);
    }

    async sendToggle(mediaType, enabled) {
      try {
        await this.client.request('call:media-toggle', { callId: this.callId, mediaType, enabled });
      } catch (e) {
        // The local track is muted either way; a server that does not know the room yet only
        // means the others are not told.
        if (this.isRoom && e.code === 'not_found') console.warn('call:media-toggle in a room:', e.message);
        else toastError(e);
      }
    }

    async toggleScreen() {
      if (this.screen) return this.stopScreen();
      let stream;
      try {
        stream = await Media.screen();
      } catch (e) {
        if (e.name !== 'NotAllowedError') toast(`Screen share failed: ${e.message}`, 'error');
        return;
      }
      const track = stream.getVideoTracks()[0];
      if (!track) return;
      if (this.state === 'ended') return Media.stop(stream);
      this.screen = stream;
      track.addEventListener('ended', () => this.stopScreen());
      if (this.mode === 'sfu') {
        // Its own track (and tile); the server tells the others with `track:published`.
        UI.showLocalScreen(this, stream);
        this.syncLocalBadges();
        await this.sfu?.addScreen(track, stream).catch(() => {});
        if (this.isRoom) return;
      } else {
        for (const link of this.links.values()) await link.videoSender()?.replaceTrack(track);
        UI.tile(this, 'local').video.srcObject = stream;
        this.syncLocalBadges();
      }
      try {
        await this.client.request('screen:share-start', { callId: this.callId });
      } catch (e) {
        toastError(e);
      }
    }

    async stopScreen() {
      if (!this.screen) return;
      const screen = this.screen;
      this.screen = null;
      Media.stop(screen);
      if (this.mode === 'sfu') {
        UI.removeTile(this, 'local:screen');
        this.syncLocalBadges();
        if (this.state === 'joined') await this.sfu?.removeScreen().catch(() => {});
        if (this.isRoom) return;
      } else {
        const camera = this.local?.getVideoTracks()[0] ?? null;
        for (const link of this.links.values()) await link.videoSender()?.replaceTrack(camera);
        const tile = UI.tile(this, 'local');
        if (tile) tile.video.srcObject = this.local;
        this.syncLocalBadges();
      }
      if (this.state === 'joined') {
        try {
          await this.client.request('screen:share-stop', { callId: this.callId });
        } catch (e) {
          toastError(e);
        }
      }
    }

    syncLocalBadges() {
      UI.renderLocalControls(this);
      const sharingHere = !!this.screen && this.mode !== 'sfu'; // P2P: the share replaces the camera
      UI.setBadges(UI.tile(this, 'local'), { audio: this.mic, video: this.cam || sharingHere, screen: !!this.screen });
    }

    /** Hang up (or cancel a ringing call); leave a room. */
    async hangUp() {
      try {
        if (this.isRoom) await this.client.request('room:leave', { room: this.room });
        else await this.client.request('call:end', { callId: this.callId });
      } catch (e) {
        // The call may already be over on the server; end it here regardless.
        if (e.code !== 'not_found' && e.code !== 'invalid_state') toastError(e);
      }
      this.finish('ended', { local: true });
    }

    /** Tear down everything; `reason` is the server's `call:ended` reason (or ours). */
    finish(reason, { local = false } = {}) {
      if (this.state === 'ended') return;
      this.state = 'ended';
      for (const link of this.links.values()) link.close();
      this.links.clear();
      this.sfu?.close();
      this.sfu = null;
      if (this.startedAt) announceConversation(null);
      Media.stop(this.screen);
      Media.stop(this.local);
      this.screen = null;
      this.app.callEnded(this, reason, local);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // App: identity, connection, routing server events to the current call
  // ---------------------------------------------------------------------------------------------

  const app = {
    identity: null, // {token, userId, name}
    client: null,
    call: null,
    incoming: null, // {callId, from, conversationId, callType}
    resumable: null,
    rejoinRoom: null, // a room to join again once the connection is back
    rejoinTries: 0, // failed rejoins of `rejoinRoom` in a row (for the backoff)
    rejoinTimer: null,

    /** A dev token for `name` (keeping a remembered user id), with a `room` grant if given. */
    async signIn(name, room) {
      const data = await this.mintToken(name, room);
      this.identity = data;
      saveIdentity({ userId: data.userId, name: data.name });
      this.connect();
    },

    /** `session:refresh` with a newly minted token (dev mode), kept for the next reconnect. */
    async refreshToken() {
      try {
        const fresh = await this.mintToken(this.identity.name, this.identity.room);
        await this.client.request('session:refresh', { token: fresh.token });
        this.identity = { ...this.identity, token: fresh.token };
      } catch (e) {
        toast(`Could not renew the session (${e.code ?? e.message}); it ends when its token does`, 'warn');
      }
    },

    async mintToken(name, room) {
      const saved = loadIdentity();
      const body = { name };
      if (saved?.userId) body.userId = saved.userId;
      if (room) body.room = room;
      let res;
      try {
        res = await fetch('/api/v1/dev/token', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      } catch (e) {
        throw new ChorusError('network', `cannot reach the server: ${e.message}`);
      }
      if (res.status === 404) {
        throw new ChorusError('not_found', 'This server does not hand out dev tokens (start it with --dev).');
      }
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new ChorusError(data.code ?? 'http', data.message ?? `HTTP ${res.status}`);
      return { ...data, room: room ?? null };
    },

    /** Resolves once the WebSocket is open (now, or within `timeoutMs`). */
    whenConnected(timeoutMs = ACK_TIMEOUT_MS) {
      const client = this.client;
      if (client?.connected) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const off = client.on('open', () => {
          clearTimeout(timer);
          off();
          resolve();
        });
        const timer = setTimeout(() => {
          off();
          reject(new ChorusError('disconnected', 'cannot reach the server'));
        }, timeoutMs);
      });
    },

    /**
     * Joins the named room: a token with that room's grant (a new connection if the current
     * token lacks it), `room:join`, then one SFU link publishing camera and microphone.
     */
    async joinRoom(room, { rejoin = false } = {}) {
      room = room.trim();
      if (!room) return;
      if (this.call) return toast('Leave the current call first', 'warn');
      if (!rejoin) this.cancelRejoin();
      const call = new CallController(this, {
        callId: `room:${room}`,
        callType: 'video',
        direction: 'room',
        mode: 'sfu',
        room,
      });
      this.call = call;
      UI.showJoining(room);
      try {
        if (this.identity.room !== room) {
          this.identity = await this.mintToken(this.identity.name, room);
          this.client?.close();
          this.connect({ home: false });
        }
        const media = call.prepareMedia();
        await this.whenConnected();
        await media;
        if (this.call !== call) return Media.stop(call.local);
        const ack = await this.client.request('room:join', { room });
        call.callId = ack.roomId ?? call.callId;
        call.iceServers = ack.iceServers ?? [];
        if (this.call !== call) {
          this.client.send('room:leave', { room });
          return Media.stop(call.local);
        }
        history.replaceState(null, '', `?room=${encodeURIComponent(room)}`);
        sessionStorage.setItem(ROOM_KEY, room);
        call.enterCall();
        for (const p of ack.participants ?? []) {
          if (p.userId === this.identity.userId) continue;
          call.names.set(p.userId, p.name || p.userId);
          call.ensurePeerTile(p.userId);
        }
        for (const t of ack.tracks ?? []) call.onTrackPublished(t);
        UI.setTitle(call);
        this.rejoinTries = 0;
        if (!(await call.startSfu()) && call.state === 'joined') await call.restartSfu('no answer');
      } catch (e) {
        call.finish('failed', { local: true });
        // Back from a drop, the room may be moving to another node right now: try again.
        if (rejoin && TRANSIENT.has(e.code) && this.identity?.room === room && this.rejoinTries < REJOIN_TRIES) {
          return this.scheduleRejoin(room);
        }
        toastError(e);
      }
    },

    /** Joins `room` again soon (backing off while the tries fail), once we are connected. */
    scheduleRejoin(room) {
      this.rejoinRoom = room;
      clearTimeout(this.rejoinTimer);
      const wait = Math.min(500 * 2 ** this.rejoinTries, 4000) * (1 + 0.25 * Math.random());
      this.rejoinTries++;
      this.rejoinTimer = setTimeout(() => this.rejoin(), wait);
    },

    /** Joins `rejoinRoom` if we are connected and in nothing else; `open` calls it too. */
    rejoin() {
      const room = this.rejoinRoom;
      if (!room || this.call || !this.client?.connected) return;
      this.rejoinRoom = null;
      clearTimeout(this.rejoinTimer);
      toast(`Rejoining room ${room}`, 'info');
      this.joinRoom(room, { rejoin: true });
    },

    cancelRejoin() {
      this.rejoinRoom = null;
      this.rejoinTries = 0;
      clearTimeout(this.rejoinTimer);
    },

    /**
     * Our connection came back while we were in a call: take the call back with this
     * connection (`call:join`, which works whether or not the server noticed the drop yet) and
     * start the media over, as after a reload. Retries while the call is between nodes.
     */
    async rejoinCall(call) {
      for (let tries = 0; ; tries++) {
        if (this.call !== call || call.state !== 'joined' || !this.client?.connected) return;
        try {
          const ack = await this.client.request('call:join', { callId: call.callId });
          call.iceServers = ack.iceServers?.length ? ack.iceServers : call.iceServers;
          for (const p of ack.participants ?? []) {
            if (p.userId !== this.identity.userId) call.names.set(p.userId, p.name || p.userId);
          }
          if (ack.mode === 'sfu' && call.mode !== 'sfu') {
            const switching = call.switchToSfu(); // (resets the tiles before it awaits)
            for (const t of ack.tracks ?? []) call.onTrackPublished(t);
            return switching;
          }
          if (call.mode === 'sfu') return call.restartSfu('reconnected', { tracks: ack.tracks ?? [] });
          for (const link of call.links.values()) link.close();
          call.links.clear();
          for (const p of ack.participants ?? []) {
            if (p.userId !== this.identity.userId) await call.link(p.userId).start(call.local);
          }
          return;
        } catch (e) {
          if (call.state !== 'joined' || this.call !== call) return;
          if (!TRANSIENT.has(e.code) || tries >= 7) {
            toastError(e);
            return call.finish('failed', { local: true });
          }
          await sleep(Math.min(500 * 2 ** tries, 4000));
        }
      }
    },

    connect({ home = true } = {}) {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const url = `${proto}//${location.host}/ws?access_token=${encodeURIComponent(this.identity.token)}`;
      const client = new ChorusClient(url);
      this.client = client;
      client.on('open', (info) => {
        UI.setConnected(true);
        if (client !== this.client) return;
        const current = this.call;
        if (info?.resumed) {
          // The server kept our session: rooms, calls, media seat; missed events were replayed.
          if (current) {
            current.lostConnection = false;
            current.awaitingResume = false;
            // An ICE restart that failed while signaling was down is tried again now.
            current.sfu?.watchConnection(current.sfu.pc.connectionState);
          }
          toast('Connection back', 'info');
          return;
        }
        if (current?.awaitingResume && current.state === 'joined') {
          // The room was kept for a resume that did not work: join it again.
          current.awaitingResume = false;
          this.rejoinRoom = current.room;
          this.rejoinTries = 0;
          current.finish('failed');
        }
        // Back after a drop that took us out of a room: join it again.
        this.rejoin();
        // Back after a drop in the middle of a call: take it back with this connection.
        const call = this.call;
        if (call?.lostConnection && call.state === 'joined') {
          call.lostConnection = false;
          this.rejoinCall(call);
        }
      });
      client.on('close', () => {
        UI.setConnected(false);
        const call = this.call;
        if (client !== this.client || client.closed || call?.state !== 'joined') return;
        if (!call.isRoom) {
          // A call waits for us (`calls.reconnect_grace`); P2P media may even keep flowing.
          call.lostConnection = true;
          toast('Connection lost; back into the call when it is back', 'warn');
          return;
        }
        if (client.willResume) {
          // The server keeps our seat for `limits.resume_grace`; media keeps flowing meanwhile.
          call.awaitingResume = true;
          toast('Connection lost; resuming when it is back', 'warn');
          return;
        }
        // The session cannot be resumed (the server closed it, or resuming is off): the server
        // removes us from our rooms; leave here too, and rejoin when the connection is back.
        this.rejoinRoom = call.room;
        this.rejoinTries = 0;
        toast('Connection lost; rejoining the room when it is back', 'warn');
        call.finish('failed');
      });
      // Failures of requests (with an ack id) are reported where the request was made.
      client.on('error', (e) => e?.id === undefined && toast(`${e.code}: ${e.message}`, 'error'));
      // A dev token runs for hours; when it nears its end, take a fresh one for the same user
      // and hand it to the live session instead of reconnecting.
      client.on('session:expiring', () => this.refreshToken());
      client.on('server:shutdown', (d) =>
        toast(`Server is restarting; reconnecting in ${Math.round((d?.reconnectInMs ?? 0) / 100) / 10} s`, 'warn'),
      );
      client.on('call:incoming', (d) => this.onIncoming(d));
      client.on('call:accepted', (d) => this.forCall(d, (c) => c.onAccepted(d)));
      client.on('call:rejected', (d) =>
        this.forCall(d, (c) => toast(`${c.nameOf(d.userId)} declined the call`, 'info')),
      );
      client.on('call:ended', (d) => this.onEnded(d));
      client.on('call:missed', (d) => {
        if (this.incoming?.callId === d.callId) this.dismissIncoming();
        toast(`Missed call from ${d.from?.name ?? d.from?.userId ?? 'someone'}`, 'info');
      });
      client.on('call:answered-elsewhere', (d) => {
        if (this.incoming?.callId === d.callId) {
          this.dismissIncoming();
          toast('Answered on another device', 'info');
        }
      });
      client.on('call:resumable', (d) => this.onResumable(d));
      client.on('call:participant:joined', (d) => this.forCall(d, (c) => c.onParticipantJoined(d)));
      client.on('call:participant:left', (d) => this.forCall(d, (c) => c.onParticipantLeft(d)));
      client.on('offer', (d) => this.forCall(d, (c) => c.onOffer(d)));
      client.on('answer', (d) => this.forCall(d, (c) => c.onAnswer(d)));
      client.on('ice-candidate', (d) => this.forCall(d, (c) => c.onCandidate(d)));
      client.on('call:media-toggled', (d) => this.forCall(d, (c) => c.onMediaToggled(d)));
      client.on('screen:share-started', (d) => this.forCall(d, (c) => c.onScreenShare(d, true)));
      client.on('screen:share-stopped', (d) => this.forCall(d, (c) => c.onScreenShare(d, false)));
      client.on('call:mode', (d) => this.forCall(d, (c) => d.mode === 'sfu' && c.switchToSfu()));
      client.on('track:published', (d) => this.forCall(d, (c) => c.onTrackPublished(d)));
      client.on('track:unpublished', (d) => this.forCall(d, (c) => c.onTrackUnpublished(d)));
      client.on('track:muted', (d) => this.forCall(d, (c) => c.onTrackMuted(d, true)));
      client.on('track:unmuted', (d) => this.forCall(d, (c) => c.onTrackMuted(d, false)));
      client.on('room:speakers', (d) => this.forCall(d, (c) => c.onSpeakers(d)));
      client.on('media:moved', (d) => this.forCall(d, (c) => c.onMediaMoved(d)));
      client.on('track:quality', (d) => this.forCall(d, (c) => c.onTrackQuality(d)));
      client.on('track:layer', (d) => this.forCall(d, (c) => c.onTrackLayer(d)));
      client.connect();
      UI.showSignedIn(this.identity, { home });
    },

    signOut() {
      this.cancelRejoin();
      this.call?.hangUp();
      this.client?.close();
      this.client = null;
      this.identity = null;
      localStorage.removeItem(STORAGE_KEY);
      UI.showLogin();
    },

    forCall(data, fn) {
      if (this.call && data?.callId === this.call.callId && this.call.state !== 'ended') fn(this.call);
    },

    /** Calls one user, or several (ids separated by commas or spaces: a group call). */
    async dial(input, callType) {
      if (this.call) return toast('You are already in a call', 'warn');
      this.cancelRejoin();
      const userIds = [...new Set(String(input).split(/[\s,]+/).filter(Boolean))];
      if (userIds.includes(this.identity.userId)) return toast('That is your own user id', 'warn');
      if (!userIds.length) return;
      const userId = userIds[0];
      const call = new CallController(this, {
        callId: null,
        callType,
        direction: 'outgoing',
        peer: { userId, name: userId },
        peers: userIds.map((id) => ({ userId: id, name: id })),
      });
      this.call = call;
      UI.showOutgoing(call);
      try {
        await call.prepareMedia();
        if (this.call !== call) return Media.stop(call.local);
        const everyone = [this.identity.userId, ...userIds].sort().join('-');
        const ack = await this.client.request('call:initiate', {
          conversationId: `${userIds.length > 1 ? 'group' : 'dm'}-${everyone}`.slice(0, 128),
          callType,
          participants: userIds,
        });
        call.callId = ack.callId;
        call.iceServers = ack.iceServers ?? [];
        if (ack.mode === 'sfu') call.mode = 'sfu';
        if (this.call !== call) {
          // Cancelled while the initiate was in flight.
          this.client.send('call:end', { callId: ack.callId });
        }
      } catch (e) {
        toastError(e);
        call.finish('failed', { local: true });
      }
    },

    onIncoming(data) {
      if (this.call || this.incoming) {
        // Busy: let the other invite keep ringing elsewhere; a real app would offer call waiting.
        toast(`${data.from?.name ?? 'Someone'} is calling you`, 'info');
        return;
      }
      this.incoming = data;
      UI.showIncoming(data);
    },

    dismissIncoming() {
      this.incoming = null;
      UI.hideIncoming();
    },

    async accept() {
      const inv = this.incoming;
      if (!inv) return;
      this.cancelRejoin();
      this.dismissIncoming();
      const call = new CallController(this, {
        callId: inv.callId,
        callType: inv.callType,
        direction: 'incoming',
        peer: { userId: inv.from.userId, name: inv.from.name },
      });
      this.call = call;
      try {
        await call.prepareMedia();
        const ack = await this.client.request('call:accept', { callId: inv.callId });
        call.iceServers = ack.iceServers ?? [];
        for (const p of ack.participants ?? []) {
          if (p.userId === call.peer.userId) call.peer.name = p.name;
          if (p.userId !== this.identity.userId) call.names.set(p.userId, p.name || p.userId);
        }
        if (call.state === 'ended') return;
        if (ack.mode === 'sfu') call.mode = 'sfu';
        call.enterCall();
        if (call.mode === 'sfu') {
          for (const p of ack.participants ?? []) {
            if (p.userId !== this.identity.userId) call.ensurePeerTile(p.userId);
          }
          for (const t of ack.tracks ?? []) call.onTrackPublished(t);
          await call.startSfu();
        } else {
          call.link(call.peer.userId); // ready for the caller's offer and candidates
        }
      } catch (e) {
        toastError(e);
        call.finish('failed', { local: true });
      }
    },

    async reject() {
      const inv = this.incoming;
      if (!inv) return;
      this.dismissIncoming();
      try {
        await this.client.request('call:reject', { callId: inv.callId });
      } catch (e) {
        toastError(e);
      }
    },

    onEnded(data) {
      if (this.incoming?.callId === data.callId) {
        this.dismissIncoming();
        if (data.reason !== 'ended') toast(`Call ${endText(data.reason)}`, 'info');
      }
      if (this.resumable?.callId === data.callId) this.dismissResumable();
      this.forCall(data, (c) => c.finish(data.reason));
    },

    onResumable(data) {
      if (this.call) return;
      this.resumable = data;
      UI.showResumable(true);
    },

    dismissResumable() {
      this.resumable = null;
      UI.showResumable(false);
    },

    /** Back into a call we were in before a reload: join, then offer to everyone in it. */
    async resume() {
      const r = this.resumable;
      if (!r || this.call) return;
      this.dismissResumable();
      const others = (r.participants ?? []).filter((p) => p.userId !== this.identity.userId);
      const peer = others[0] ?? { userId: '', name: '' };
      const call = new CallController(this, {
        callId: r.callId,
        callType: r.callType,
        direction: 'outgoing',
        peer: { userId: peer.userId, name: peer.name },
      });
      this.call = call;
      try {
        await call.prepareMedia();
        const ack = await this.client.request('call:join', { callId: r.callId });
        call.iceServers = ack.iceServers ?? [];
        if (ack.mode === 'sfu') call.mode = 'sfu';
        call.enterCall();
        if (call.mode === 'sfu') {
          for (const p of ack.participants ?? others) {
            if (p.userId === this.identity.userId) continue;
            call.names.set(p.userId, p.name || p.userId);
            call.ensurePeerTile(p.userId);
          }
          for (const t of ack.tracks ?? []) call.onTrackPublished(t);
          return await call.startSfu();
        }
        for (const p of ack.participants ?? others) {
          if (p.userId !== this.identity.userId) await call.link(p.userId).start(call.local);
        }
      } catch (e) {
        toastError(e);
        call.finish('failed', { local: true });
      }
    },

    callEnded(call, reason, local) {
      if (this.call === call) this.call = null;
      let text = local ? 'Call ended' : `Call ${endText(reason)}`;
      if (call.isRoom) {
        if (reason === 'failed') text = call.startedAt ? `Disconnected from room ${call.room}` : `Could not join room ${call.room}`;
        else text = `You left room ${call.room}`;
        if (location.search) history.replaceState(null, '', location.pathname);
        sessionStorage.removeItem(ROOM_KEY);
      }
      if (call.startedAt) {
        const s = Math.round((Date.now() - call.startedAt) / 1000);
        text += ` · ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
      }
      UI.showHome(text, reason);
    },
  };

  /**
   * Tells other modules of the page (the chat panel, web/chat.js) which conversation we are in:
   * `{conversationId, userId, name}` on entering a call or room (its callId or "room:<name>"),
   * `null` on leaving it.
   */
  function announceConversation(detail) {
    window.dispatchEvent(new CustomEvent('chorus:conversation', { detail }));
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /**
   * Errors after which the same request may work a moment later: the connection or the node
   * went away, or the call or room is between two nodes (a drain or a failure hands it over).
   */
  const TRANSIENT = new Set(['disconnected', 'timeout', 'shutting_down', 'cluster_unavailable', 'internal']);
  /** Rejoins of a room tried in a row before giving up (about half a minute, backing off). */
  const REJOIN_TRIES = 10;

  function fingerprint(sdp) {
    return /a=fingerprint:(\S+ \S+)/.exec(sdp)?.[1] ?? null;
  }

  function endText(reason) {
    return (
      {
        ended: 'ended',
        missed: 'missed: nobody answered',
        rejected: 'declined',
        timeout: 'reached its time limit',
        failed: 'failed: connection lost',
      }[reason] ?? `ended (${reason})`
    );
  }

  function loadIdentity() {
    try {
      return JSON.parse(localStorage.getItem(STORAGE_KEY) ?? 'null');
    } catch {
      return null;
    }
  }

  function saveIdentity(v) {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(v));
    } catch {
      // private mode: identity lasts for this page only
    }
  }

  // ---------------------------------------------------------------------------------------------
  // UI
  // ---------------------------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  const UI = {
    screens: ['login', 'home', 'outgoing', 'call'],

    show(screen) {
      for (const s of this.screens) $(s).hidden = s !== screen;
      document.body.dataset.screen = screen;
    },

    showLogin() {
      $('me').hidden = true;
      this.show('login');
      const saved = loadIdentity();
      if (saved?.name) $('login-name').value = saved.name;
      const room = new URLSearchParams(location.search).get('room');
      if (room) $('login-room').value = room;
      $('login-submit').disabled = false;
    },

    showSignedIn(identity, { home = true } = {}) {
      $('my-user-id').textContent = identity.userId;
      $('my-user-id').title = `${identity.name} · ${identity.userId}`;
      $('my-name').textContent = identity.name;
      $('me').hidden = false;
      const room = new URLSearchParams(location.search).get('room');
      if (room && !$('room-input').value) $('room-input').value = room;
      if (home) this.showHome();
    },

    /** While a room join is in flight: the home screen with the join button busy. */
    showJoining(room) {
      this.show('home');
      $('room-input').value = room;
      $('room-join').disabled = true;
      $('room-join').textContent = 'Joining…';
      $('last-call').hidden = true;
    },

    showHome(message, reason) {
      this.stopTimer();
      this.show('home');
      $('room-join').disabled = false;
      $('room-join').textContent = 'Join room';
      $('stage').replaceChildren();
      const last = $('last-call');
      if (message) {
        last.textContent = message;
        last.dataset.reason = reason ?? '';
        last.hidden = false;
      }
    },

    setConnected(on) {
      const dot = $('conn-dot');
      dot.dataset.state = on ? 'online' : 'offline';
      dot.title = on ? 'connected' : 'reconnecting…';
    },

    showOutgoing(call) {
      $('outgoing-to').textContent = call.peer.name;
      $('outgoing-kind').textContent = call.callType === 'video' ? 'Video call' : 'Audio call';
      setAvatar($('outgoing-avatar'), call.peer.name);
      $('last-call').hidden = true;
      this.show('outgoing');
    },

    showIncoming(inv) {
      const name = inv.from?.name || inv.from?.userId || 'Someone';
      $('incoming-from').textContent = `${name} is calling`;
      $('incoming-from-id').textContent = inv.from?.userId ?? '';
      $('incoming-kind').textContent = inv.callType === 'video' ? 'Video call' : 'Audio call';
      setAvatar($('incoming-avatar'), name);
      $('incoming').hidden = false;
      $('accept').focus();
      this.flashTitle(`📞 ${name}`);
    },

    hideIncoming() {
      $('incoming').hidden = true;
      this.flashTitle(null);
    },

    flashTitle(text) {
      clearInterval(this.titleTimer);
      document.title = 'Chorus';
      if (!text) return;
      let on = false;
      this.titleTimer = setInterval(() => {
        on = !on;
        document.title = on ? text : 'Chorus';
      }, 900);
    },

    showResumable(on) {
      $('resumable').hidden = !on;
    },

    setTitle(call) {
      let title;
      if (call.isRoom) title = `Room ${call.room}`;
      else {
        const others = [...new Set([...call.tiles.keys()].filter((k) => !k.startsWith('local') && !k.endsWith(':screen')))];
        const names = others.length > 1 ? others.map((id) => call.nameOf(id)) : [call.peer?.name].filter(Boolean);
        title = names.length ? `with ${names.join(', ')}` : 'Call';
      }
      $('call-title').textContent = title;
      const people = 1 + [...call.tiles.keys()].filter((k) => !k.startsWith('local') && !k.endsWith(':screen')).length;
      $('call-people').textContent = `${people} ${people === 1 ? 'person' : 'people'}`;
      $('call-mode').textContent = call.mode === 'sfu' ? 'via server' : 'direct';
      $('call-mode').dataset.mode = call.mode;
    },

    showCall(call) {
      this.setTitle(call);
      $('last-call').hidden = true;
      this.show('call');
      this.setCallState('connecting');
      this.startTimer(call);
    },

    setCallState(state) {
      const el = $('call-state');
      el.textContent = state;
      el.dataset.state = state;
    },

    startTimer(call) {
      this.stopTimer();
      const tick = () => {
        const s = Math.floor((Date.now() - call.startedAt) / 1000);
        $('call-timer').textContent = `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
      };
      tick();
      this.timer = setInterval(tick, 1000);
    },

    stopTimer() {
      clearInterval(this.timer);
    },

    tile(call, key) {
      return call.tiles.get(key) ?? null;
    },

    /** The tile for `key` ('local' or a user id), created from the template when missing. */
    ensureTile(call, key, name, isLocal, { screen = false } = {}) {
      let tile = call.tiles.get(key);
      if (!tile) {
        const node = $('tile-template').content.firstElementChild.cloneNode(true);
        node.dataset.user = screen ? key.replace(/:screen$/, '') : key;
        node.dataset.source = screen ? 'screen' : 'camera';
        if (screen) {
          node.dataset.testid = isLocal ? 'tile-local-screen' : 'tile-screen';
          node.classList.add('tile-screen');
        } else {
          node.dataset.testid = isLocal ? 'tile-local' : 'tile-remote';
          node.classList.toggle('tile-local', isLocal);
        }
        const video = node.querySelector('video');
        video.muted = isLocal; // never play our own microphone back
        video.autoplay = true;
        video.playsInline = true;
        tile = { el: node, video, isLocal, stream: null };
        call.tiles.set(key, tile);
        this.markSpeakers(call);
        if (isLocal && !screen) $('stage').append(node);
        else $('stage').prepend(node);
        this.layoutStage();
        if (!isLocal && !screen) this.setTitle(call);
      }
      tile.el.querySelector('.tile-name').textContent = name;
      // A room member's camera can be watched by anyone with the room's grant, without joining
      // (WHEP): the link opens the watch page for this user.
      const watch = tile.el.querySelector('.tile-watch');
      if (watch && call.room !== null && !isLocal && !screen) {
        const query = new URLSearchParams({ room: call.room, user: key });
        watch.href = `/watch?${query}`;
        watch.hidden = false;
      }
      // initials of the name alone, not of " (you)" or " · screen"
      setAvatar(tile.el.querySelector('.avatar'), name.replace(/ \(you\)/, '').replace(/ · screen$/, ''));
      return tile;
    },

    /**
     * Highlights the active speaker's camera tile (`data-speaking="active"`) and marks the other
     * speakers (`"yes"`); everyone else is `"no"`. Our own tile is `local`.
     */
    markSpeakers(call) {
      const me = call.app.identity?.userId;
      for (const [key, tile] of call.tiles) {
        if (key.endsWith(':screen')) continue;
        const rank = call.speakers.indexOf(key === 'local' ? me : key);
        tile.el.dataset.speaking = rank === 0 ? 'active' : rank > 0 ? 'yes' : 'no';
      }
    },

    removeTile(call, key) {
      const tile = call.tiles.get(key);
      if (!tile) return;
      tile.el.remove();
      tile.video.srcObject = null;
      call.tiles.delete(key);
      this.layoutStage();
      if (call.state === 'joined') this.setTitle(call);
    },

    /** A remote user's screen share: a tile of its own, first on the stage. */
    ensureScreenTile(call, userId) {
      const tile = this.ensureTile(call, `${userId}:screen`, `${call.nameOf(userId)} · screen`, false, { screen: true });
      if (!tile.stream) {
        tile.stream = new MediaStream();
        this.setTileFlowing(call, `${userId}:screen`, false);
      }
      return tile;
    },

    /** Our own screen share in SFU mode (P2P sends it in place of the camera). */
    showLocalScreen(call, stream) {
      const me = call.app.identity;
      const tile = this.ensureTile(call, 'local:screen', `${me.name} (you) · screen`, true, { screen: true });
      tile.video.muted = true;
      tile.video.srcObject = stream;
    },

    /** Shows the avatar instead of a black frame while a tile's video has no frames. */
    setTileFlowing(call, key, flowing) {
      const tile = this.tile(call, key);
      if (!tile) return;
      tile.el.dataset.flowing = flowing ? 'yes' : 'no';
      if (key.endsWith(':screen')) tile.el.classList.toggle('no-video', !flowing);
      else this.setBadges(tile, call.remoteMediaOf(key));
    },

    layoutStage() {
      const stage = $('stage');
      stage.dataset.count = String(stage.children.length);
      const screens = stage.querySelectorAll('.tile-screen').length;
      stage.dataset.screens = String(screens);
      // with one screen share: the share on the left, everyone else stacked on the right
      stage.dataset.others = String(stage.children.length - screens);
      stage.style.setProperty('--others', String(Math.max(1, stage.children.length - screens)));
    },

    setBadges(tile, m) {
      if (!tile) return;
      const q = (s) => tile.el.querySelector(s);
      q('.badge-mic').hidden = m.audio !== false;
      q('.badge-cam').hidden = m.video !== false;
      q('.badge-screen').hidden = !m.screen;
      tile.el.dataset.audio = m.audio === false ? 'off' : 'on';
      tile.el.dataset.video = m.video === false ? 'off' : 'on';
      tile.el.dataset.screen = m.screen ? 'on' : 'off';
      tile.el.classList.toggle('no-video', m.video === false || tile.el.dataset.flowing === 'no');
    },

    setRemoteBadges(call, userId, m) {
      this.setBadges(this.tile(call, userId), m);
    },

    setRemoteVideoFlowing(call, userId, flowing) {
      const tile = this.tile(call, userId);
      if (!tile) return;
      tile.el.dataset.flowing = flowing ? 'yes' : 'no';
      this.setBadges(tile, call.remoteMediaOf(userId));
    },

    renderLocalControls(call) {
      const set = (id, pressed, label, title) => {
        const b = $(id);
        b.setAttribute('aria-pressed', String(pressed));
        b.querySelector('.ctl-label').textContent = label;
        b.title = title;
      };
      const hasAudio = !!call.local?.getAudioTracks().length;
      const hasVideo = !!call.local?.getVideoTracks().length;
      set('toggle-mic', !call.mic, call.mic ? 'Mute' : 'Unmute', call.mic ? 'Mute microphone' : 'Unmute microphone');
      set('toggle-cam', !call.cam, call.cam ? 'Camera' : 'Camera off', call.cam ? 'Turn camera off' : 'Turn camera on');
      set('toggle-screen', !!call.screen, call.screen ? 'Stop share' : 'Share', call.screen ? 'Stop sharing' : 'Share your screen');
      $('toggle-mic').disabled = !hasAudio;
      $('toggle-cam').disabled = !hasVideo;
      $('toggle-screen').disabled = !navigator.mediaDevices?.getDisplayMedia;
      const local = this.tile(call, 'local');
      const sharingHere = !!call.screen && call.mode !== 'sfu';
      if (local) local.el.classList.toggle('no-video', !hasVideo || (!call.cam && !sharingHere));
    },
  };

  function setAvatar(el, name) {
    const initials = String(name ?? '?')
      .trim()
      .split(/\s+/)
      .slice(0, 2)
      .map((w) => [...w][0] ?? '')
      .join('')
      .toUpperCase();
    el.textContent = initials || '?';
    let h = 0;
    for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) % 360;
    el.style.setProperty('--hue', String(h));
  }

  /** The last toasts shown, for test failure reports: `window.chorus.toasts`. */
  const toastLog = [];

  /** A short message at the bottom of the screen; `kind` is info, warn or error. */
  function toast(message, kind = 'info') {
    toastLog.push(`${kind}: ${message}`);
    if (toastLog.length > 50) toastLog.shift();
    const el = document.createElement('div');
    el.className = `toast toast-${kind}`;
    el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    el.dataset.testid = 'toast';
    el.dataset.kind = kind;
    el.textContent = message;
    $('toasts').append(el);
    while ($('toasts').children.length > 4) $('toasts').firstElementChild.remove();
    setTimeout(() => el.classList.add('toast-out'), kind === 'error' ? 6000 : 4000);
    setTimeout(() => el.remove(), kind === 'error' ? 6500 : 4500);
  }

  function toastError(e) {
    toast(e?.code ? `${e.code}: ${e.message}` : String(e?.message ?? e), 'error');
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring
  // ---------------------------------------------------------------------------------------------

  function wire() {
    $('login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const name = $('login-name').value.trim();
      const room = $('login-room').value.trim();
      if (!name) return;
      $('login-submit').disabled = true;
      try {
        await app.signIn(name, room || undefined);
        if (room) await app.joinRoom(room);
      } catch (e) {
        toastError(e);
        $('login-submit').disabled = false;
      }
    });

    $('room-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const room = $('room-input').value.trim();
      if (room) app.joinRoom(room);
    });

    $('dial-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const callType = ev.submitter?.value === 'audio' ? 'audio' : 'video';
      const userId = $('callee').value.trim();
      if (userId) app.dial(userId, callType);
    });

    $('copy-id').addEventListener('click', async () => {
      const id = app.identity?.userId ?? '';
      try {
        await navigator.clipboard.writeText(id);
        toast('User id copied', 'info');
      } catch {
        const range = document.createRange();
        range.selectNodeContents($('my-user-id'));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        toast('Press Ctrl+C to copy', 'info');
      }
    });
    $('sign-out').addEventListener('click', () => app.signOut());
    $('sign-out-2').addEventListener('click', () => app.signOut());

    $('cancel-call').addEventListener('click', () => {
      const call = app.call;
      if (!call) return UI.showHome();
      if (call.callId) call.hangUp();
      else {
        call.finish('ended', { local: true });
      }
    });
    $('accept').addEventListener('click', () => app.accept());
    $('reject').addEventListener('click', () => app.reject());
    $('resume').addEventListener('click', () => app.resume());
    $('resume-dismiss').addEventListener('click', () => {
      const r = app.resumable;
      app.dismissResumable();
      if (r) app.client.request('call:end', { callId: r.callId }).catch(() => {});
    });

    $('toggle-mic').addEventListener('click', () => app.call?.toggleMic());
    $('toggle-cam').addEventListener('click', () => app.call?.toggleCam());
    $('toggle-screen').addEventListener('click', () => app.call?.toggleScreen());
    $('hangup').addEventListener('click', () => app.call?.hangUp());

    window.addEventListener('beforeunload', () => app.client?.close());
  }

  window.chorus = {
    app,
    ChorusClient,
    CallController,
    PeerLink,
    SfuLink,
    get client() {
      return app.client;
    },
    get call() {
      return app.call;
    },
    get pc() {
      return app.call?.pc ?? null;
    },
    toast,
    toasts: toastLog,
  };

  wire();
  UI.showLogin();
  // A reload keeps the identity: sign in again silently with the remembered name and id.
  const saved = loadIdentity();
  if (saved?.name && saved?.userId) {
    // A reload in a room joins it again at once. The browser closed the old WebSocket as the
    // page went (close code 1001), so the server has freed the old seat already: the others
    // see the old tiles go and the new ones come, without waiting for `sfu.ice_timeout`.
    const inRoom = sessionStorage.getItem(ROOM_KEY);
    const reloadedIn = inRoom && inRoom === new URLSearchParams(location.search).get('room') ? inRoom : null;
    app
      .signIn(saved.name, reloadedIn ?? undefined)
      .then(() => reloadedIn && app.joinRoom(reloadedIn))
      .catch((e) => {
        toastError(e);
        UI.showLogin();
      });
  }
})();
