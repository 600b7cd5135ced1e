// Chat panel of the demo page: a self-contained module (no framework, no build step).
//
// The page drives it with one window event:
//   window.dispatchEvent(new CustomEvent('chorus:conversation',
//     {detail: {conversationId, userId, name}}))   // entered a call (callId) or room ("room:<name>")
//   window.dispatchEvent(new CustomEvent('chorus:conversation', {detail: null}))  // left it
//
// The panel then opens its own raw WebSocket to /ws as a second device of the same user (dev token
// from POST /api/v1/dev/token) and speaks the chat events of docs/protocol.md ("Chat"). All text
// from the server (content, names) is rendered with textContent, never as HTML.
//
// Test hooks: window.chorusChat (send, open, collapse, state, messages) and data-testid attributes
// chat-panel, chat-toggle, chat-unread, chat-collapse, chat-list, chat-message, chat-text,
// chat-sender, chat-input, chat-send, chat-typing, chat-reaction, chat-react, chat-emoji,
// chat-edit, chat-edit-input, chat-edit-save, chat-delete, chat-error, chat-retry, chat-note,
// chat-load-earlier, chat-seen.

(() => {
  'use strict';

  const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '🙏'];
  const HISTORY_PAGE = 50;
  const ACK_TIMEOUT_MS = 10_000;
  const TYPING_REFRESH_MS = 3_000;
  const TYPING_IDLE_MS = 5_000;
  const TYPING_SHOW_MS = 12_000; // the server expires typing after 10 s; this is a safety net
  const TRANSIENT = new Set(['rate_limited', 'storage_unavailable', 'internal', 'timeout', 'disconnected', 'shutting_down']);
  const PHONE_QUERY = '(max-width: 759px)';

  // ---------------------------------------------------------------- small DOM helpers
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k === 'testid') node.dataset.testid = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k in node && typeof v !== 'string') node[k] = v;
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
    return node;
  }
  const randomId = () =>
    (crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);
  const timeOf = (iso) => {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  };

  // ---------------------------------------------------------------- state
  const S = {
    conv: null, // {conversationId, userId, name}
    generation: 0, // bumps on every conversation change; stale callbacks check it
    ws: null,
    connected: false,
    reconnectTimer: null,
    reconnectDelay: 500,
    nextId: 1,
    acks: new Map(), // id -> {resolve, timer, event}
    messages: new Map(), // id -> message (history shape: + editedAt, deletedAt, reactions Map emoji->Set)
    pending: new Map(), // tempId -> {tempId, content, status: sending|failed, error, tries, createdAt}
    hasMore: false,
    historyLoaded: false,
    loadingEarlier: false,
    names: new Map(), // userId -> display name
    typing: new Map(), // userId -> timer
    readCursors: new Map(), // userId -> sequenceNumber (others only)
    lastReadSent: 0,
    unread: 0,
    expanded: true,
    editingId: null,
    pickerFor: null,
    confirmDelete: null, // messageId awaiting a second click
    confirmTimer: null,
    myTyping: { active: false, lastSent: 0, idleTimer: null },
    notes: [],
  };

  // ---------------------------------------------------------------- DOM
  let ui = null;
  function buildUi() {
    if (ui) return ui;
    const u = {};
    u.toggle = el('button', {
      type: 'button', class: 'cc-toggle', testid: 'chat-toggle', title: 'Open chat', 'aria-label': 'Open chat',
      onclick: () => setExpanded(true),
    });
    u.toggle.append(
      svgIcon('M4 5h16v10H9l-5 4z'),
      (u.badge = el('span', { class: 'cc-badge', testid: 'chat-unread', hidden: true, 'aria-live': 'polite' })),
    );
    u.title = el('span', { class: 'cc-title', text: 'Chat' });
    u.status = el('span', { class: 'cc-status', testid: 'chat-status', 'data-state': 'connecting', title: 'connecting' });
    u.collapse = el('button', {
      type: 'button', class: 'cc-icon-btn', testid: 'chat-collapse', title: 'Hide chat', 'aria-label': 'Hide chat',
      onclick: () => setExpanded(false),
    }, svgIcon('M6 6l12 12M18 6L6 18'));
    u.earlier = el('button', {
      type: 'button', class: 'cc-earlier', testid: 'chat-load-earlier', hidden: true, text: 'Load earlier messages',
      onclick: loadEarlier,
    });
    u.empty = el('p', { class: 'cc-empty', testid: 'chat-empty', text: 'No messages yet. Say hello.' });
    u.list = el('ol', { class: 'cc-list', testid: 'chat-list', 'aria-live': 'polite', 'aria-label': 'Messages' });
    u.scroller = el('div', { class: 'cc-scroll' }, u.earlier, u.empty, u.list);
    u.scroller.addEventListener('scroll', () => markRead());
    u.typing = el('div', { class: 'cc-typing', testid: 'chat-typing', hidden: true });
    u.notes = el('div', { class: 'cc-notes', testid: 'chat-notes' });
    u.input = el('textarea', {
      class: 'cc-input', testid: 'chat-input', rows: 1, maxlength: 4000, placeholder: 'Message…',
      'aria-label': 'Message', autocomplete: 'off',
    });
    u.input.addEventListener('input', onInput);
    u.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        submit();
      }
    });
    u.input.addEventListener('blur', () => stopTyping());
    u.send = el('button', { type: 'submit', class: 'cc-send', testid: 'chat-send', title: 'Send', 'aria-label': 'Send', disabled: true },
      svgIcon('M4 12l16-8-6 16-2-7z'));
    u.form = el('form', { class: 'cc-form', autocomplete: 'off', onsubmit: (e) => { e.preventDefault(); submit(); } }, u.input, u.send);
    u.panel = el('aside', { class: 'cc-panel', testid: 'chat-panel', 'aria-label': 'Chat', hidden: true },
      el('header', { class: 'cc-head' }, u.status, u.title, u.collapse),
      u.scroller, u.typing, u.notes, u.form);
    u.panel.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape' || e.defaultPrevented) return;
      if (S.pickerFor !== null) closePicker();
      else if (isPhone() && !S.editingId) setExpanded(false);
    });
    u.root = el('div', { class: 'chorus-chat', testid: 'chat-root', hidden: true }, u.panel, u.toggle);
    document.body.append(u.root);
    ui = u;
    return u;
  }

  function svgIcon(d) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('class', 'cc-svg');
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('d', d);
    svg.append(p);
    return svg;
  }

  const isPhone = () => window.matchMedia(PHONE_QUERY).matches;
  const panelVisible = () => !!S.conv && S.expanded && document.visibilityState === 'visible';

  function setExpanded(on, { focus = true } = {}) {
    S.expanded = on;
    if (!ui) return;
    ui.root.dataset.expanded = on ? 'true' : 'false';
    ui.panel.hidden = !on;
    ui.toggle.hidden = on;
    document.body.classList.toggle('chorus-chat-docked', !!S.conv && on);
    if (on) {
      S.unread = 0;
      renderBadge();
      scrollToBottom();
      markRead();
      if (focus && !isPhone()) ui.input.focus({ preventScroll: true });
    } else {
      stopTyping();
      closePicker();
    }
  }

  function renderBadge() {
    if (!ui) return;
    const n = S.unread;
    ui.badge.hidden = n <= 0;
    ui.badge.textContent = n > 99 ? '99+' : String(n);
    ui.toggle.title = n > 0 ? `Open chat (${n} unread)` : 'Open chat';
    ui.toggle.setAttribute('aria-label', ui.toggle.title);
  }

  function setStatus(state) {
    if (!ui) return;
    ui.status.dataset.state = state;
    ui.status.title = state;
  }

  // ---------------------------------------------------------------- conversation lifecycle
  function enter(detail) {
    if (!detail || !detail.conversationId || !detail.userId) {
      leave();
      return;
    }
    if (S.conv && S.conv.conversationId === detail.conversationId && S.conv.userId === detail.userId) return;
    leave();
    buildUi();
    S.generation++;
    S.conv = { conversationId: String(detail.conversationId), userId: String(detail.userId), name: String(detail.name || detail.userId) };
    S.names.set(S.conv.userId, S.conv.name);
    ui.title.textContent = S.conv.conversationId.startsWith('room:') ? `Chat · ${S.conv.conversationId.slice(5)}` : 'Chat';
    ui.root.hidden = false;
    document.body.classList.add('chorus-chat-active');
    setExpanded(!isPhone(), { focus: false });
    render();
    connect();
  }

  function leave() {
    S.generation++;
    stopTyping();
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = null;
    if (S.ws) {
      const ws = S.ws;
      S.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try { ws.close(1000); } catch { /* already closed */ }
    }
    for (const a of S.acks.values()) clearTimeout(a.timer);
    S.acks.clear();
    for (const t of S.typing.values()) clearTimeout(t);
    S.typing.clear();
    S.conv = null;
    S.connected = false;
    S.messages.clear();
    S.pending.clear();
    S.readCursors.clear();
    S.hasMore = false;
    S.historyLoaded = false;
    S.lastReadSent = 0;
    S.unread = 0;
    S.editingId = null;
    S.pickerFor = null;
    S.confirmDelete = null;
    S.notes = [];
    S.reconnectDelay = 500;
    if (ui) {
      ui.root.hidden = true;
      ui.list.replaceChildren();
      itemCache = new Map();
      ui.notes.replaceChildren();
      ui.input.value = '';
      ui.typing.hidden = true;
      renderBadge();
    }
    document.body.classList.remove('chorus-chat-docked', 'chorus-chat-active');
  }

  async function connect() {
    const gen = S.generation;
    const conv = S.conv;
    setStatus('connecting');
    let token;
    try {
      const res = await fetch('/api/v1/dev/token', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: conv.name, userId: conv.userId }),
      });
      if (!res.ok) throw new Error(`dev token: HTTP ${res.status}`);
      token = (await res.json()).token;
    } catch (e) {
      if (gen !== S.generation) return;
      note(`Chat could not sign in (${e.message}); retrying…`);
      scheduleReconnect();
      return;
    }
    if (gen !== S.generation) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/ws?access_token=${encodeURIComponent(token)}`);
    S.ws = ws;
    ws.onopen = () => {
      if (gen !== S.generation) return;
      S.connected = true;
      S.reconnectDelay = 500;
      setStatus('online');
      loadHistory(true);
      // Resend whatever was waiting for the connection (same tempId: the server deduplicates).
      for (const p of S.pending.values()) if (p.status === 'sending' || p.error?.code === 'disconnected') transmit(p);
    };
    ws.onmessage = (ev) => {
      if (gen !== S.generation) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame && frame.ack !== undefined) onAck(frame);
      else if (frame && typeof frame.event === 'string') onEvent(frame.event, frame.data ?? {});
    };
    ws.onclose = () => {
      if (gen !== S.generation) return;
      S.ws = null;
      S.connected = false;
      setStatus('offline');
      for (const [id, a] of S.acks) {
        clearTimeout(a.timer);
        a.resolve({ error: { code: 'disconnected', message: 'connection lost' } });
        S.acks.delete(id);
      }
      scheduleReconnect();
    };
    ws.onerror = () => {};
  }

  function scheduleReconnect() {
    if (!S.conv) return;
    clearTimeout(S.reconnectTimer);
    const delay = S.reconnectDelay;
    S.reconnectDelay = Math.min(S.reconnectDelay * 2, 10_000);
    S.reconnectTimer = setTimeout(() => { if (S.conv && !S.ws) connect(); }, delay);
  }

  /** Sends an event with an ack id; resolves with {data} or {error}. Never rejects. */
  function request(event, data, timeoutMs = ACK_TIMEOUT_MS) {
    return new Promise((resolve) => {
      if (!S.ws || !S.connected || S.ws.readyState !== WebSocket.OPEN) {
        resolve({ error: { code: 'disconnected', message: 'not connected' } });
        return;
      }
      const id = S.nextId++;
      const timer = setTimeout(() => {
        S.acks.delete(id);
        resolve({ error: { code: 'timeout', message: 'no answer from the server' } });
      }, timeoutMs);
      S.acks.set(id, { resolve, timer, event });
      S.ws.send(JSON.stringify({ event, data, id }));
    });
  }

  function emit(event, data) {
    if (S.ws && S.connected && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify({ event, data }));
  }

  function onAck(frame) {
    const a = S.acks.get(frame.ack);
    if (!a) return;
    S.acks.delete(frame.ack);
    clearTimeout(a.timer);
    a.resolve(frame.error ? { error: frame.error } : { data: frame.data });
  }

  // ---------------------------------------------------------------- server events
  function onEvent(event, d) {
    const conv = S.conv;
    switch (event) {
      case 'message:new':
        if (d.conversationId !== conv.conversationId) return;
        if (d.sender?.id) S.names.set(d.sender.id, d.sender.name || d.sender.id);
        if (upsert(d) === 'new') {
          clearTyping(d.senderId);
          if (d.senderId !== conv.userId && !panelVisible()) {
            S.unread++;
            renderBadge();
          }
          render({ stick: true });
          markRead();
        }
        return;
      case 'message:ack':
        confirmSend(d);
        return;
      case 'message:updated': {
        const m = S.messages.get(d.messageId);
        if (!m) return;
        m.content = d.content;
        m.editedAt = d.editedAt;
        render();
        return;
      }
      case 'message:deleted': {
        const m = S.messages.get(d.messageId);
        if (!m) return;
        markDeleted(m);
        render();
        return;
      }
      case 'message:reaction:added':
      case 'message:reaction:removed': {
        const m = S.messages.get(d.messageId);
        if (!m) return;
        setReaction(m, d.emoji, d.userId, event === 'message:reaction:added');
        render();
        return;
      }
      case 'message:read':
        if (d.conversationId !== conv.conversationId || d.userId === conv.userId) return;
        {
          const m = S.messages.get(d.messageId);
          if (!m) return;
          const prev = S.readCursors.get(d.userId) ?? 0;
          if (m.sequenceNumber > prev) S.readCursors.set(d.userId, m.sequenceNumber);
          render();
        }
        return;
      case 'typing':
        if (d.conversationId !== conv.conversationId || d.userId === conv.userId) return;
        if (d.isTyping) {
          clearTimeout(S.typing.get(d.userId));
          S.typing.set(d.userId, setTimeout(() => clearTyping(d.userId), TYPING_SHOW_MS));
          renderTyping();
        } else {
          clearTyping(d.userId);
        }
        return;
      case 'error':
        // Failures of our own requests are answered by their acks; show only the others.
        if (d.id !== undefined && d.id !== null) return;
        if (d.tempId && S.pending.has(d.tempId)) {
          failPending(S.pending.get(d.tempId), d);
          return;
        }
        if (d.event && !String(d.event).startsWith('message:') && !String(d.event).startsWith('typing:')) return;
        note(d.message || d.code || 'error');
        return;
      case 'server:shutdown':
        note('The server is restarting; chat will reconnect.');
        return;
      default:
        // call and presence events of this device: not ours to handle
    }
  }

  /** Adds or refreshes a message from history or message:new; returns 'new' or 'known'. */
  function upsert(raw) {
    const known = S.messages.get(raw.id);
    const m = known ?? {};
    Object.assign(m, {
      id: raw.id,
      conversationId: raw.conversationId,
      senderId: raw.senderId ?? raw.sender?.id,
      senderName: raw.sender?.name || raw.senderId,
      type: raw.type,
      content: raw.content ?? '',
      sequenceNumber: Number(raw.sequenceNumber),
      replyToId: raw.replyToId ?? null,
      createdAt: raw.createdAt,
    });
    if ('editedAt' in raw) m.editedAt = raw.editedAt;
    if ('deletedAt' in raw) m.deletedAt = raw.deletedAt;
    if (Array.isArray(raw.reactions)) {
      m.reactions = new Map();
      for (const g of raw.reactions) m.reactions.set(g.emoji, new Set(g.userIds ?? []));
    }
    if (!m.reactions) m.reactions = new Map();
    if (m.deletedAt) markDeleted(m);
    S.messages.set(m.id, m);
    if (m.senderId) S.names.set(m.senderId, m.senderName);
    return known ? 'known' : 'new';
  }

  function markDeleted(m) {
    m.deletedAt = m.deletedAt || new Date().toISOString();
    m.content = '';
    m.reactions = new Map();
    if (S.editingId === m.id) S.editingId = null;
  }

  function setReaction(m, emoji, userId, on) {
    let users = m.reactions.get(emoji);
    if (on) {
      if (!users) m.reactions.set(emoji, (users = new Set()));
      users.add(userId);
    } else if (users) {
      users.delete(userId);
      if (users.size === 0) m.reactions.delete(emoji);
    }
  }

  function clearTyping(userId) {
    if (!S.typing.has(userId)) return;
    clearTimeout(S.typing.get(userId));
    S.typing.delete(userId);
    renderTyping();
  }

  // ---------------------------------------------------------------- history
  async function loadHistory(initial) {
    const gen = S.generation;
    const res = await request('message:history', { conversationId: S.conv.conversationId, limit: HISTORY_PAGE });
    if (gen !== S.generation) return;
    if (res.error) {
      note(`Could not load messages: ${res.error.message || res.error.code}`);
      return;
    }
    const fresh = !S.historyLoaded;
    for (const m of res.data.messages ?? []) upsert(m);
    if (fresh) S.hasMore = !!res.data.hasMore;
    S.historyLoaded = true;
    render({ stick: true, force: initial });
    if (panelVisible()) markRead();
    else if (fresh) {
      const c = await request('message:unread-count', { conversationId: S.conv.conversationId });
      if (gen !== S.generation || c.error || panelVisible()) return;
      S.unread = Math.max(S.unread, Number(c.data.count) || 0);
      renderBadge();
    }
  }

  async function loadEarlier() {
    if (S.loadingEarlier || !S.hasMore) return;
    const first = sortedMessages()[0];
    if (!first) return;
    S.loadingEarlier = true;
    ui.earlier.disabled = true;
    const gen = S.generation;
    const res = await request('message:history', {
      conversationId: S.conv.conversationId, beforeSequence: first.sequenceNumber, limit: HISTORY_PAGE,
    });
    if (gen !== S.generation) return;
    S.loadingEarlier = false;
    ui.earlier.disabled = false;
    if (res.error) {
      note(`Could not load earlier messages: ${res.error.message || res.error.code}`);
      return;
    }
    const before = ui.scroller.scrollHeight - ui.scroller.scrollTop;
    for (const m of res.data.messages ?? []) upsert(m);
    S.hasMore = !!res.data.hasMore;
    render();
    ui.scroller.scrollTop = ui.scroller.scrollHeight - before; // keep the reader's place
  }

  // ---------------------------------------------------------------- sending
  function submit() {
    const text = ui.input.value;
    if (!text.trim()) return;
    ui.input.value = '';
    autosize();
    updateSendButton();
    stopTyping();
    send(text);
  }

  /** Queues `text` and sends it; resolves with the ack ({data} or {error}) of the first try. */
  function send(text) {
    if (!S.conv) return Promise.resolve({ error: { code: 'invalid_state', message: 'no conversation' } });
    const p = { tempId: randomId(), content: String(text), status: 'sending', error: null, tries: 0, createdAt: new Date().toISOString() };
    S.pending.set(p.tempId, p);
    render({ stick: true, force: true });
    return transmit(p);
  }

  async function transmit(p) {
    if (!S.conv) return { error: { code: 'invalid_state', message: 'no conversation' } };
    p.status = 'sending';
    p.error = null;
    p.tries++;
    render();
    if (!S.connected) {
      // It goes out when the connection is back (ws.onopen resends pending messages).
      return { error: { code: 'disconnected', message: 'not connected' } };
    }
    const gen = S.generation;
    const res = await request('message:send', {
      conversationId: S.conv.conversationId, content: p.content, type: 'text', tempId: p.tempId,
    });
    if (gen !== S.generation) return res;
    if (res.data) confirmSend(res.data);
    else if (S.pending.get(p.tempId) === p) failPending(p, res.error);
    return res;
  }

  function confirmSend(ack) {
    const p = S.pending.get(ack.tempId);
    if (!p) return; // already confirmed (the ack and message:ack both arrive)
    S.pending.delete(ack.tempId);
    if (!S.messages.has(ack.messageId)) {
      upsert({
        id: ack.messageId, conversationId: S.conv.conversationId, senderId: S.conv.userId,
        sender: { id: S.conv.userId, name: S.conv.name }, type: 'text', content: p.content,
        sequenceNumber: ack.sequenceNumber, replyToId: null, createdAt: ack.createdAt,
      });
    }
    render({ stick: true });
    markRead();
  }

  function failPending(p, error) {
    p.status = 'failed';
    p.error = { code: error?.code || 'error', message: error?.message || error?.code || 'failed' };
    if (TRANSIENT.has(p.error.code) && p.tries < 4) {
      // retry with the same tempId: the server stores it at most once
      p.status = 'sending';
      const delay = 500 * 2 ** (p.tries - 1);
      setTimeout(() => { if (S.pending.get(p.tempId) === p && p.status === 'sending' && S.connected) transmit(p); }, delay);
    }
    render();
  }

  // ---------------------------------------------------------------- typing (mine)
  function onInput() {
    autosize();
    updateSendButton();
    const hasText = ui.input.value.trim().length > 0;
    if (!hasText) {
      stopTyping();
      return;
    }
    const t = S.myTyping;
    const now = Date.now();
    if (!t.active || now - t.lastSent >= TYPING_REFRESH_MS) {
      emit('typing:start', { conversationId: S.conv.conversationId });
      t.active = true;
      t.lastSent = now;
    }
    clearTimeout(t.idleTimer);
    t.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    const t = S.myTyping;
    clearTimeout(t.idleTimer);
    t.idleTimer = null;
    if (!t.active) return;
    t.active = false;
    if (S.conv) emit('typing:stop', { conversationId: S.conv.conversationId });
  }

  function autosize() {
    ui.input.style.height = 'auto';
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, 120)}px`;
  }

  function updateSendButton() {
    ui.send.disabled = ui.input.value.trim().length === 0;
  }

  // ---------------------------------------------------------------- read receipts
  function markRead() {
    if (!panelVisible() || !S.connected) return;
    const msgs = sortedMessages();
    const newest = msgs[msgs.length - 1];
    if (!newest || newest.sequenceNumber <= S.lastReadSent) return;
    S.lastReadSent = newest.sequenceNumber;
    request('message:read', { conversationId: S.conv.conversationId, messageId: newest.id }).then((r) => {
      if (r.error && S.lastReadSent === newest.sequenceNumber) S.lastReadSent = 0;
    });
  }

  // ---------------------------------------------------------------- actions on messages
  async function toggleReaction(m, emoji) {
    closePicker();
    const mine = m.reactions.get(emoji)?.has(S.conv.userId);
    const gen = S.generation;
    const res = await request(mine ? 'message:unreact' : 'message:react', { messageId: m.id, emoji });
    if (gen !== S.generation) return;
    if (res.error) {
      note(`Reaction failed: ${res.error.message || res.error.code}`);
      return;
    }
    setReaction(m, emoji, S.conv.userId, !mine);
    render();
  }

  function startEdit(m) {
    S.editingId = m.id;
    S.editDraft = m.content;
    closePicker();
    render();
    const input = ui.list.querySelector('[data-testid="chat-edit-input"]');
    if (input) {
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    }
  }

  async function saveEdit(m, content) {
    if (!content.trim() || content === m.content) {
      S.editingId = null;
      render();
      return;
    }
    const gen = S.generation;
    const res = await request('message:edit', { messageId: m.id, content });
    if (gen !== S.generation) return;
    if (res.error) {
      note(`Could not edit: ${res.error.message || res.error.code}`);
      return;
    }
    m.content = res.data.content ?? content;
    m.editedAt = res.data.editedAt ?? new Date().toISOString();
    S.editingId = null;
    render();
  }

  async function removeMessage(m) {
    if (S.confirmDelete !== m.id) {
      S.confirmDelete = m.id;
      clearTimeout(S.confirmTimer);
      S.confirmTimer = setTimeout(() => { S.confirmDelete = null; render(); }, 4000);
      render();
      return;
    }
    S.confirmDelete = null;
    clearTimeout(S.confirmTimer);
    const gen = S.generation;
    const res = await request('message:delete', { messageId: m.id });
    if (gen !== S.generation) return;
    if (res.error) {
      note(`Could not delete: ${res.error.message || res.error.code}`);
      render();
      return;
    }
    markDeleted(m);
    render();
  }

  function closePicker() {
    if (S.pickerFor === null) return;
    S.pickerFor = null;
    render();
  }

  // ---------------------------------------------------------------- notes
  function note(text) {
    buildUi();
    const n = el('p', { class: 'cc-note', testid: 'chat-note' }, el('span', { text }));
    n.append(el('button', { type: 'button', class: 'cc-note-x', title: 'Dismiss', 'aria-label': 'Dismiss', text: '×', onclick: () => n.remove() }));
    ui.notes.append(n);
    while (ui.notes.children.length > 3) ui.notes.firstChild.remove();
    setTimeout(() => n.remove(), 8000);
  }

  // ---------------------------------------------------------------- rendering
  function sortedMessages() {
    return [...S.messages.values()].sort((a, b) => a.sequenceNumber - b.sequenceNumber);
  }

  function nearBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 60;
  }

  function scrollToBottom() {
    if (ui) ui.scroller.scrollTop = ui.scroller.scrollHeight;
  }

  function render({ stick = false, force = false } = {}) {
    if (!ui || !S.conv) return;
    const wasAtBottom = nearBottom();
    const active = document.activeElement;
    const hadEditFocus = active?.dataset?.testid === 'chat-edit-input' && ui.list.contains(active);
    const caret = hadEditFocus ? active.selectionStart : 0;
    const msgs = sortedMessages();
    // the newest own message someone else has read carries the "Seen" mark
    let seenId = null;
    let seenBy = [];
    for (let i = msgs.length - 1; i >= 0; i--) {
      const m = msgs[i];
      if (m.senderId !== S.conv.userId || m.deletedAt) continue;
      const readers = [...S.readCursors].filter(([, seq]) => seq >= m.sequenceNumber).map(([u]) => u);
      if (readers.length) {
        seenId = m.id;
        seenBy = readers;
      }
      break;
    }
    // Rebuild only the items whose content changed, and move nodes only when needed, so a
    // message arriving mid-click or mid-hover does not swap the element under the pointer.
    const fresh = new Map();
    const keep = (key, sig, build) => {
      const cached = itemCache.get(key);
      const node = cached && cached.sig === sig ? cached.node : build();
      fresh.set(key, { sig, node });
      return node;
    };
    const items = msgs.map((m) => {
      const seen = m.id === seenId ? seenBy : null;
      return keep(`m:${m.id}`, messageSig(m, seen), () => messageItem(m, seen));
    });
    for (const p of S.pending.values()) {
      items.push(keep(`p:${p.tempId}`, JSON.stringify([p.content, p.status, p.error]), () => pendingItem(p)));
    }
    itemCache = fresh;
    items.forEach((node, i) => {
      if (ui.list.children[i] !== node) ui.list.insertBefore(node, ui.list.children[i] ?? null);
    });
    while (ui.list.children.length > items.length) ui.list.lastElementChild.remove();
    ui.empty.hidden = !S.historyLoaded || items.length > 0;
    ui.earlier.hidden = !S.hasMore;
    if (force || (stick && wasAtBottom) || wasAtBottom) scrollToBottom();
    if (hadEditFocus) {
      const input = ui.list.querySelector('[data-testid="chat-edit-input"]');
      if (input) {
        input.focus({ preventScroll: true });
        input.setSelectionRange(caret, caret);
      }
    }
  }

  let itemCache = new Map(); // key -> {sig, node}

  /** Everything a message item shows; equal signatures render equal elements. */
  function messageSig(m, seenBy) {
    const me = S.conv.userId;
    return JSON.stringify([
      m.content, m.editedAt ?? null, m.deletedAt ?? null, m.senderName, m.createdAt,
      [...m.reactions].map(([e, users]) => [e, [...users], [...users].map((u) => S.names.get(u) || u)]),
      m.senderId === me, S.editingId === m.id, S.pickerFor === m.id, S.confirmDelete === m.id,
      seenBy ? seenBy.map((u) => S.names.get(u) || u) : null,
    ]);
  }

  function messageItem(m, seenBy) {
    const own = m.senderId === S.conv.userId;
    const deleted = !!m.deletedAt;
    const li = el('li', {
      class: `cc-msg${own ? ' cc-own' : ''}${deleted ? ' cc-deleted' : ''}`,
      testid: 'chat-message',
      'data-id': m.id,
      'data-seq': String(m.sequenceNumber),
      'data-sender': m.senderId,
      'data-status': deleted ? 'deleted' : 'sent',
      'data-own': own ? 'true' : 'false',
    });
    const meta = el('div', { class: 'cc-meta' },
      el('span', { class: 'cc-name', testid: 'chat-sender', text: own ? 'You' : (m.senderName || m.senderId) }),
      el('time', { class: 'cc-time', datetime: m.createdAt, text: timeOf(m.createdAt) }),
      m.editedAt && !deleted ? el('span', { class: 'cc-edited', testid: 'chat-edited', text: 'edited' }) : null);
    li.append(meta);

    if (S.editingId === m.id && !deleted) {
      li.append(editForm(m));
    } else {
      const text = el('div', { class: 'cc-bubble' },
        el('span', { class: 'cc-text', testid: 'chat-text', text: deleted ? 'message deleted' : m.content }));
      li.append(text);
    }

    if (!deleted && m.reactions.size > 0) {
      const row = el('div', { class: 'cc-reactions' });
      for (const [emoji, users] of m.reactions) {
        const mine = users.has(S.conv.userId);
        const who = [...users].map((u) => (u === S.conv.userId ? 'you' : S.names.get(u) || u)).join(', ');
        row.append(el('button', {
          type: 'button', class: `cc-chip${mine ? ' cc-mine' : ''}`, testid: 'chat-reaction',
          'data-emoji': emoji, 'data-count': String(users.size), 'aria-pressed': mine ? 'true' : 'false',
          title: who, onclick: () => toggleReaction(m, emoji),
        }, el('span', { class: 'cc-chip-emoji', text: emoji }), el('span', { class: 'cc-count', testid: 'chat-reaction-count', text: String(users.size) })));
      }
      li.append(row);
    }

    if (!deleted && S.editingId !== m.id) {
      const actions = el('div', { class: 'cc-actions' },
        el('button', { type: 'button', class: 'cc-act', testid: 'chat-react', title: 'React', 'aria-label': 'React',
          'aria-expanded': S.pickerFor === m.id ? 'true' : 'false',
          onclick: () => { S.pickerFor = S.pickerFor === m.id ? null : m.id; render(); } }, 'React'));
      if (own) {
        actions.append(
          el('button', { type: 'button', class: 'cc-act', testid: 'chat-edit', text: 'Edit', onclick: () => startEdit(m) }),
          el('button', { type: 'button', class: `cc-act cc-danger${S.confirmDelete === m.id ? ' cc-confirm' : ''}`, testid: 'chat-delete',
            'data-confirm': S.confirmDelete === m.id ? 'true' : 'false',
            text: S.confirmDelete === m.id ? 'Delete?' : 'Delete', onclick: () => removeMessage(m) }),
        );
      }
      li.append(actions);
      if (S.pickerFor === m.id) {
        const picker = el('div', { class: 'cc-picker', testid: 'chat-picker', role: 'group', 'aria-label': 'Pick a reaction' });
        for (const e of EMOJI) {
          const mine = m.reactions.get(e)?.has(S.conv.userId);
          picker.append(el('button', { type: 'button', class: `cc-emoji${mine ? ' cc-mine' : ''}`, testid: 'chat-emoji', 'data-emoji': e, text: e,
            onclick: () => toggleReaction(m, e) }));
        }
        li.append(picker);
      }
    }
    if (seenBy && seenBy.length) {
      const names = seenBy.map((u) => S.names.get(u) || u);
      li.append(el('div', { class: 'cc-seen', testid: 'chat-seen', text: `Seen by ${names.join(', ')}` }));
    }
    return li;
  }

  function editForm(m) {
    const input = el('textarea', { class: 'cc-edit-input', testid: 'chat-edit-input', rows: 2, maxlength: 4000, 'aria-label': 'Edit message' });
    input.value = S.editDraft ?? m.content;
    input.addEventListener('input', () => { S.editDraft = input.value; });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        saveEdit(m, input.value);
      } else if (e.key === 'Escape') {
        e.preventDefault();
        S.editingId = null;
        render();
      }
    });
    const form = el('form', { class: 'cc-edit', onsubmit: (e) => { e.preventDefault(); saveEdit(m, input.value); } },
      input,
      el('div', { class: 'cc-edit-buttons' },
        el('button', { type: 'button', class: 'cc-act', testid: 'chat-edit-cancel', text: 'Cancel', onclick: () => { S.editingId = null; render(); } }),
        el('button', { type: 'submit', class: 'cc-act cc-primary', testid: 'chat-edit-save', text: 'Save' })));
    return form;
  }

  function pendingItem(p) {
    const li = el('li', {
      class: `cc-msg cc-own cc-pending${p.status === 'failed' ? ' cc-failed' : ''}`,
      testid: 'chat-message', 'data-temp-id': p.tempId, 'data-status': p.status === 'failed' ? 'failed' : 'pending',
      'data-sender': S.conv.userId, 'data-own': 'true',
    },
    el('div', { class: 'cc-meta' },
      el('span', { class: 'cc-name', testid: 'chat-sender', text: 'You' }),
      el('span', { class: 'cc-time', text: p.status === 'failed' ? 'not sent' : 'sending…' })),
    el('div', { class: 'cc-bubble' }, el('span', { class: 'cc-text', testid: 'chat-text', text: p.content })));
    if (p.error && p.status === 'failed') {
      const err = el('div', { class: 'cc-error', testid: 'chat-error' }, el('span', { text: p.error.message }));
      if (p.error.code !== 'content_too_long' && p.error.code !== 'not_member' && p.error.code !== 'forbidden' && p.error.code !== 'invalid_payload') {
        err.append(el('button', { type: 'button', class: 'cc-act', testid: 'chat-retry', text: 'Retry', onclick: () => { p.tries = 0; transmit(p); } }));
      }
      err.append(el('button', { type: 'button', class: 'cc-act', testid: 'chat-discard', text: 'Discard', onclick: () => { S.pending.delete(p.tempId); render(); } }));
      li.append(err);
    }
    return li;
  }

  function renderTyping() {
    if (!ui) return;
    const names = [...S.typing.keys()].map((u) => S.names.get(u) || u);
    ui.typing.hidden = names.length === 0;
    ui.typing.dataset.users = [...S.typing.keys()].join(',');
    ui.typing.textContent =
      names.length === 0 ? '' :
        names.length === 1 ? `${names[0]} is typing…` :
          names.length === 2 ? `${names[0]} and ${names[1]} are typing…` :
            `${names.length} people are typing…`;
  }

  // ---------------------------------------------------------------- wiring
  window.addEventListener('chorus:conversation', (e) => enter(e.detail));
  document.addEventListener('visibilitychange', () => {
    if (panelVisible()) {
      S.unread = 0;
      renderBadge();
      markRead();
    }
  });
  document.addEventListener('click', (e) => {
    if (S.pickerFor !== null && ui && !e.target.closest?.('.cc-picker, [data-testid="chat-react"]')) closePicker();
  });

  window.chorusChat = {
    /** Sends `text` as the panel would; resolves with the first ack ({data} or {error}). */
    send: (text) => send(text),
    open: () => setExpanded(true),
    /** Drops the connection as a network failure would; the panel reconnects by itself. */
    disconnect: () => { try { S.ws?.close(4000, 'test'); } catch { /* closed */ } },
    collapse: () => setExpanded(false),
    get conversationId() { return S.conv?.conversationId ?? null; },
    get connected() { return S.connected; },
    get unread() { return S.unread; },
    get expanded() { return S.expanded; },
    /** A snapshot: confirmed messages in order, then pending ones. */
    messages() {
      return [
        ...sortedMessages().map((m) => ({
          id: m.id, sequenceNumber: m.sequenceNumber, senderId: m.senderId, content: m.content,
          editedAt: m.editedAt ?? null, deletedAt: m.deletedAt ?? null,
          reactions: [...m.reactions].map(([emoji, users]) => ({ emoji, count: users.size, userIds: [...users] })),
          status: m.deletedAt ? 'deleted' : 'sent',
        })),
        ...[...S.pending.values()].map((p) => ({ tempId: p.tempId, content: p.content, status: p.status, error: p.error })),
      ];
    },
    state() {
      return {
        conversationId: S.conv?.conversationId ?? null, userId: S.conv?.userId ?? null, connected: S.connected,
        expanded: S.expanded, unread: S.unread, hasMore: S.hasMore, historyLoaded: S.historyLoaded,
        pending: S.pending.size, typing: [...S.typing.keys()],
      };
    },
  };
})();
