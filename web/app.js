// Chorus demo page: plain JavaScript, no build step, no dependencies.
//
// Layers, bottom up:
//   ChorusClient  - the raw WebSocket protocol (/ws): events in, events out, acks as promises.
//   Media         - the local camera/microphone stream and screen capture.
//   PeerLink      - one RTCPeerConnection to one remote user (P2P calls); trickle ICE.
//   CallController- one call's lifecycle: ringing, joined, ended; owns the PeerLinks and tiles.
//                   Named rooms (SFU) will add a second link kind (one PeerLink to the server)
//                   behind the same controller interface.
//   UI functions  - screens, tiles, toasts. All user-provided text goes through textContent.
//
// For tests, `window.chorus` exposes the client, the current call and its RTCPeerConnection.

'use strict';

(() => {
  const STORAGE_KEY = 'chorus.identity';
  const ACK_TIMEOUT_MS = 10000;

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
   * Reconnects with backoff until `close()`; emits `open`, `close` and every server event.
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
      ws.onopen = () => {
        this.retryMs = 500;
        this.dispatch('open');
      };
      ws.onmessage = (msg) => this.receive(msg.data);
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        for (const [, p] of this.pending) p.reject(new ChorusError('disconnected', 'connection lost'));
        this.pending.clear();
        this.dispatch('close', { code: ev.code, reason: ev.reason });
        if (this.closed) return;
        const wait = this.reconnectHintMs ?? this.retryMs;
        this.reconnectHintMs = null;
        this.retryMs = Math.min(this.retryMs * 2, 10000);
        setTimeout(() => !this.closed && this.connect(), wait);
      };
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
      if (frame.event === 'server:shutdown') this.reconnectHintMs = frame.data?.reconnectInMs ?? null;
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
  // CallController: one call
  // ---------------------------------------------------------------------------------------------

  /**
   * Lifecycle: `ringing-out` (we called) or `ringing-in` (we were called) → `joined` → `ended`.
   * Holds the local stream, one PeerLink per remote participant, and their tiles.
   */
  class CallController {
    constructor(app, { callId, callType, iceServers, direction, peer }) {
      this.app = app;
      this.client = app.client;
      this.callId = callId;
      this.callType = callType;
      this.iceServers = iceServers ?? [];
      this.direction = direction; // 'outgoing' | 'incoming'
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
    }

    /** The first link's RTCPeerConnection (1:1 calls have one), for tests and debugging. */
    get pc() {
      return this.links.values().next().value?.pc ?? null;
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
      if (this.peer && this.peer.userId === userId) return this.peer.name || userId;
      return userId;
    }

    /** Show the avatar instead of a black frame while the remote video has no frames. */
    watchRemoteVideo(peerId, stream) {
      for (const track of stream.getVideoTracks()) {
        if (track.__chorusWatched) continue;
        track.__chorusWatched = true;
        const update = () => UI.setRemoteVideoFlowing(this, peerId, !track.muted);
        track.addEventListener('mute', update);
        track.addEventListener('unmute', update);
        update();
      }
    }

    // -- signaling in --

    async onAccepted(data) {
      // Our callee accepted: we offer.
      this.iceServers = data.iceServers?.length ? data.iceServers : this.iceServers;
      if (this.state !== 'joined') this.enterCall();
      const link = this.link(data.userId);
      try {
        await link.start(this.local);
      } catch (e) {
        toast(`Could not start the call: ${e.message}`, 'error');
      }
    }

    async onOffer(data) {
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
      try {
        await this.links.get(data.from)?.handleAnswer(data.answer);
      } catch (e) {
        toast(`Negotiation failed: ${e.message}`, 'error');
      }
    }

    onCandidate(data) {
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
      if (this.peer?.userId === id) {
        this.peer.name = data.participant.name;
        UI.setTitle(this);
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
      this.links.get(data.userId)?.close();
      this.links.delete(data.userId);
      UI.removeTile(this, data.userId);
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
        toastError(e);
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
      this.screen = stream;
      track.addEventListener('ended', () => this.stopScreen());
      for (const link of this.links.values()) await link.videoSender()?.replaceTrack(track);
      UI.tile(this, 'local').video.srcObject = stream;
      this.syncLocalBadges();
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
      const camera = this.local?.getVideoTracks()[0] ?? null;
      for (const link of this.links.values()) await link.videoSender()?.replaceTrack(camera);
      const tile = UI.tile(this, 'local');
      if (tile) tile.video.srcObject = this.local;
      this.syncLocalBadges();
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
      UI.setBadges(UI.tile(this, 'local'), { audio: this.mic, video: this.cam || !!this.screen, screen: !!this.screen });
    }

    /** Hang up (or cancel a ringing call). */
    async hangUp() {
      try {
        await this.client.request('call:end', { callId: this.callId });
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

    async signIn(name) {
      const saved = loadIdentity();
      const body = { name };
      if (saved?.userId) body.userId = saved.userId;
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
      this.identity = data;
      saveIdentity({ userId: data.userId, name: data.name });
      this.connect();
    },

    connect() {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const url = `${proto}//${location.host}/ws?access_token=${encodeURIComponent(this.identity.token)}`;
      const client = new ChorusClient(url);
      this.client = client;
      client.on('open', () => UI.setConnected(true));
      client.on('close', () => UI.setConnected(false));
      // Failures of requests (with an ack id) are reported where the request was made.
      client.on('error', (e) => e?.id === undefined && toast(`${e.code}: ${e.message}`, 'error'));
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
      client.connect();
      UI.showSignedIn(this.identity);
    },

    signOut() {
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

    async dial(userId, callType) {
      if (this.call) return toast('You are already in a call', 'warn');
      if (userId === this.identity.userId) return toast('That is your own user id', 'warn');
      const call = new CallController(this, {
        callId: null,
        callType,
        direction: 'outgoing',
        peer: { userId, name: userId },
      });
      this.call = call;
      UI.showOutgoing(call);
      try {
        await call.prepareMedia();
        if (this.call !== call) return Media.stop(call.local);
        const ack = await this.client.request('call:initiate', {
          conversationId: `dm-${[this.identity.userId, userId].sort().join('-')}`.slice(0, 128),
          callType,
          participants: [userId],
        });
        call.callId = ack.callId;
        call.iceServers = ack.iceServers ?? [];
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
        }
        if (call.state === 'ended') return;
        call.enterCall();
        call.link(call.peer.userId); // ready for the caller's offer and candidates
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
        call.enterCall();
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
      if (call.startedAt) {
        const s = Math.round((Date.now() - call.startedAt) / 1000);
        text += ` · ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
      }
      UI.showHome(text, reason);
    },
  };

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
      $('login-submit').disabled = false;
    },

    showSignedIn(identity) {
      $('my-user-id').textContent = identity.userId;
      $('my-user-id').title = `${identity.name} · ${identity.userId}`;
      $('my-name').textContent = identity.name;
      $('me').hidden = false;
      this.showHome();
    },

    showHome(message, reason) {
      this.stopTimer();
      this.show('home');
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
      $('call-title').textContent = call.peer?.name ? `with ${call.peer.name}` : 'Call';
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
    ensureTile(call, key, name, isLocal) {
      let tile = call.tiles.get(key);
      if (!tile) {
        const node = $('tile-template').content.firstElementChild.cloneNode(true);
        node.dataset.user = key;
        node.dataset.testid = isLocal ? 'tile-local' : 'tile-remote';
        node.classList.toggle('tile-local', isLocal);
        const video = node.querySelector('video');
        video.muted = isLocal; // never play our own microphone back
        video.autoplay = true;
        video.playsInline = true;
        tile = { el: node, video, isLocal };
        call.tiles.set(key, tile);
        if (isLocal) $('stage').append(node);
        else $('stage').prepend(node);
        this.layoutStage();
      }
      tile.el.querySelector('.tile-name').textContent = name;
      setAvatar(tile.el.querySelector('.avatar'), name);
      return tile;
    },

    removeTile(call, key) {
      call.tiles.get(key)?.el.remove();
      call.tiles.delete(key);
      this.layoutStage();
    },

    layoutStage() {
      const stage = $('stage');
      stage.dataset.count = String(stage.children.length);
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
      if (local) local.el.classList.toggle('no-video', !hasVideo || (!call.cam && !call.screen));
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

  /** A short message at the bottom of the screen; `kind` is info, warn or error. */
  function toast(message, kind = 'info') {
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
      if (!name) return;
      $('login-submit').disabled = true;
      try {
        await app.signIn(name);
      } catch (e) {
        toastError(e);
        $('login-submit').disabled = false;
      }
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
  };

  wire();
  UI.showLogin();
  // A reload keeps the identity: sign in again silently with the remembered name and id.
  const saved = loadIdentity();
  if (saved?.name && saved?.userId) {
    app.signIn(saved.name).catch((e) => {
      toastError(e);
      UI.showLogin();
    });
  }
})();
