// The demo's watch page: one room member's camera and microphone over WHEP
// (/whep/v1/rooms/{room}/participants/{user}), with plain fetch and RTCPeerConnection. The viewer
// never opens the room's signaling. It takes a dev token with the room's grant (a server started
// with --dev hands them out), offers receive-only audio and video, applies the answer, and ends
// the session with DELETE when the page goes away.
'use strict';

(() => {
  const params = new URLSearchParams(location.search);
  const room = params.get('room') ?? '';
  const user = params.get('user') ?? '';
  const video = document.getElementById('watch-video');
  const status = document.getElementById('watch-status');
  let session = null; // {url, token}

  /** Shows `text` with a state the tests read (`starting`, `playing`, `ended`, `failed`). */
  function show(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  async function token() {
    const res = await fetch('/api/v1/dev/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: `viewer of ${user}`.slice(0, 64), room }),
    });
    if (!res.ok) throw new Error(`no dev token (${res.status}); start the server with --dev`);
    return (await res.json()).token;
  }

  /** Resolves once ICE gathering is complete, so the offer carries every candidate. */
  function gathered(pc) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState !== 'complete') return;
        pc.removeEventListener('icegatheringstatechange', done);
        resolve();
      };
      pc.addEventListener('icegatheringstatechange', done);
      setTimeout(resolve, 2000); // what has been gathered by then is enough on one network
    });
  }

  async function watch() {
    if (!room || !user) throw new Error('the link needs ?room=…&user=…');
    document.getElementById('watch-title').textContent = `Watching ${user} in ${room}`;
    const bearer = await token();
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const stream = new MediaStream();
    pc.ontrack = (e) => {
      stream.addTrack(e.track);
      video.srcObject = stream;
      video.play?.().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') show('playing', `Playing ${user}'s camera`);
      if (pc.connectionState === 'failed') show('failed', 'The connection failed');
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const path = `/whep/v1/rooms/${encodeURIComponent(room)}/participants/${encodeURIComponent(user)}`;
    const res = await fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${bearer}` },
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) {
      let detail = '';
      try { detail = (await res.json()).message ?? ''; } catch { /* not JSON */ }
      throw new Error(`the server answered ${res.status} ${detail}`.trim());
    }
    session = { url: new URL(res.headers.get('location'), location.href).href, token: bearer };
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    show('starting', 'Connecting…');
  }

  // Ending the session frees its place at once instead of after the connect timeout.
  window.addEventListener('pagehide', () => {
    if (!session) return;
    fetch(session.url, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${session.token}` },
      keepalive: true,
    }).catch(() => {});
  });

  watch().catch((e) => show('failed', `Cannot watch: ${e.message}`));
})();
