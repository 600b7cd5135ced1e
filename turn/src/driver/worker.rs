//! One worker thread: a `mio` loop that owns a [`Core`] and every socket of its allocations.
//!
//! Lifecycle: built by [`super::Server::run`] from the sockets bound for it, runs until the stop
//! flag is set and its waker fires, then releases its allocations and drops its sockets.
//!
//! Loop: wait for readiness or the core's next timeout; drain every ready socket until
//! `WouldBlock` (mio is edge-triggered), feeding the core and sending what it returns; drain core
//! events (open/close relay sockets) after each input; run timers; send what was queued.
//!
//! Stream listeners: a connection is admitted under the per-source cap shared by all workers
//! ([`Admission`]) and must be greeted (TLS handshake done and a first complete frame) within
//! `Settings::stream_handshake_timeout`. When `accept` fails for lack of descriptors or memory,
//! the listener pauses ([`admission::Backoff`]) and the loop retries it when the pause ends,
//! since edge-triggered readiness will not fire again for connections already queued.
//!
//! Relay sockets take one of two paths, chosen at start by [`crate::RelayIo`]:
//! - io_uring (Linux): each relay socket has a multishot receive and sends to peers are queued
//!   on the ring; the worker sleeps in the ring, which also watches the `mio` registry (see
//!   `uring`);
//! - epoll: relay sockets sit in the `mio` registry like every other socket, and each packet
//!   costs its own receive or send call.

use std::{
    collections::{HashMap, VecDeque},
    io::ErrorKind,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use admission::{Backoff, Reporter, SourceLimiter};
use mio::{Events, Interest, Poll, Token, Waker, net::UdpSocket};

use crate::{
    Error,
    core::{
        Core, Destination, Event, FiveTuple, RelayFailure, RelayId, Shared, Transmit, Transport,
    },
};

#[cfg(target_os = "linux")]
use super::uring::{Delivery, Inbox, Uring};
use super::{
    batch::{RECV_BATCH, RecvBatch, SendBatch},
    sockets,
    stream::{Conn, Fill, Queued},
};
use crate::wire::stream_frame_len;

/// Sockets bound for one worker by [`super::Server::bind`].
#[derive(Default)]
pub struct WorkerSockets {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    pub tls: Vec<std::net::TcpListener>,
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
}

// Token layout: kind in the high bits, index in the low 32.
const SHIFT: u32 = 32;
const WAKER: usize = 0;
const UDP: usize = 1;
const TCP_LISTEN: usize = 2;
const TLS_LISTEN: usize = 3;
const CONN: usize = 4;
const RELAY: usize = 5;

fn token(kind: usize, idx: usize) -> Token {
    Token((kind << SHIFT) | idx)
}

/// Scratch buffer for stream reads.
const STREAM_READ: usize = 65_536;
/// Datagrams per receive call on relay sockets (usually one is waiting).
const RELAY_BATCH: usize = 8;

/// What the workers share about admitting stream connections: one per-source cap, and one log
/// rate per listener kind, so the log stays at a line a second however many workers fail.
#[derive(Clone)]
pub struct Admission {
    pub sources: SourceLimiter,
    pub tcp_reports: Arc<Reporter>,
    pub tls_reports: Arc<Reporter>,
}

/// Accept back-off of this worker's listeners of one kind.
struct Gate {
    backoff: Backoff,
    /// Per listener: accepting resumes at this time.
    paused: Vec<Option<Instant>>,
}

/// A stream connection that must be greeted by `deadline`.
struct Handshake {
    deadline: Instant,
    slot: usize,
    serial: u64,
}

pub struct Worker {
    poll: Poll,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    core: Core,
    io: Io,
    recv: RecvBatch,
    sources: SourceLimiter,
    tcp_gate: Gate,
    tls_gate: Gate,
    /// Connections not yet greeted, oldest first: one timeout for all keeps them in deadline
    /// order.
    handshakes: VecDeque<Handshake>,
    next_serial: u64,
    /// Receive buffers of the io_uring path. Declared after `io`, which holds the ring, so the
    /// ring is dropped before the buffers it writes into.
    #[cfg(target_os = "linux")]
    inbox: Option<Inbox>,
}

/// Counts a worker in `chorus_turn_workers` until dropped, so a panicking worker is not left
/// counted as running.
struct Running(prometheus::IntGauge);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Everything the core's transmits may be sent on, apart from the core (so both can be borrowed).
struct Io {
    udp: Vec<(UdpSocket, SocketAddr, SendBatch)>,
    tcp: Vec<mio::net::TcpListener>,
    tls: Vec<mio::net::TcpListener>,
    tls_config: Option<Arc<rustls::ServerConfig>>,
    relays: Vec<Option<UdpSocket>>,
    conns: Vec<Option<Conn>>,
    free_conns: Vec<usize>,
    conn_by_client: HashMap<(SocketAddr, SocketAddr), usize>,
    /// Connections with frames queued since the last flush.
    dirty: Vec<usize>,
    max_conns: usize,
    buf: Vec<u8>,
    /// The io_uring path, when it runs.
    #[cfg(target_os = "linux")]
    uring: Option<Uring>,
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        sockets: WorkerSockets,
        stop: Arc<AtomicBool>,
        admission: Admission,
    ) -> Result<Worker, Error> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), token(WAKER, 0))?);
        let mut io = Io {
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            tls_config: sockets.tls_config,
            relays: Vec::new(),
            conns: Vec::new(),
            free_conns: Vec::new(),
            conn_by_client: HashMap::new(),
            dirty: Vec::new(),
            max_conns: shared.settings().max_stream_connections,
            buf: vec![0u8; STREAM_READ],
            #[cfg(target_os = "linux")]
            uring: None,
        };
        for (i, s) in sockets.udp.into_iter().enumerate() {
            let addr = s.local_addr()?;
            let mut s = UdpSocket::from_std(s);
            poll.registry()
                .register(&mut s, token(UDP, i), Interest::READABLE)?;
            io.udp.push((s, addr, SendBatch::new()));
        }
        for (i, l) in sockets.tcp.into_iter().enumerate() {
            let mut l = mio::net::TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, token(TCP_LISTEN, i), Interest::READABLE)?;
            io.tcp.push(l);
        }
        for (i, l) in sockets.tls.into_iter().enumerate() {
            let mut l = mio::net::TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, token(TLS_LISTEN, i), Interest::READABLE)?;
            io.tls.push(l);
        }
        let core = Core::new(shared, Instant::now());
        let gate = |reports: Arc<Reporter>, listeners: usize| Gate {
            backoff: Backoff::sharing(reports),
            paused: vec![None; listeners],
        };
        Ok(Worker {
            poll,
            waker,
            stop,
            core,
            tcp_gate: gate(admission.tcp_reports, io.tcp.len()),
            tls_gate: gate(admission.tls_reports, io.tls.len()),
            io,
            recv: RecvBatch::new(),
            sources: admission.sources,
            handshakes: VecDeque::new(),
            next_serial: 0,
            #[cfg(target_os = "linux")]
            inbox: None,
        })
    }

    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    pub fn run(mut self) -> Result<(), Error> {
        #[cfg(target_os = "linux")]
        if self.start_uring()? {
            return self.counted("io_uring", Self::run_uring);
        }
        self.counted("epoll", Self::run_epoll)
    }

    /// Runs `run` with this worker counted in `chorus_turn_workers{relay_io=path}`.
    fn counted(self, path: &str, run: impl FnOnce(Self) -> Result<(), Error>) -> Result<(), Error> {
        let gauge = self
            .core
            .shared()
            .metrics()
            .workers
            .with_label_values(&[path]);
        gauge.inc();
        let _running = Running(gauge);
        run(self)
    }

    /// Sets up the io_uring path as [`RelayIo`] asks; `Ok(false)` means epoll. Runs on the
    /// worker's own thread: the ring accepts submissions only from the thread that made it.
    #[cfg(target_os = "linux")]
    fn start_uring(&mut self) -> Result<bool, Error> {
        use std::os::fd::AsRawFd;
        let wanted = self.core.shared().settings().relay_io;
        if wanted == crate::RelayIo::Epoll {
            return Ok(false);
        }
        match Uring::new(self.poll.as_raw_fd()) {
            Ok((uring, inbox)) => {
                self.io.uring = Some(uring);
                self.inbox = Some(inbox);
                Ok(true)
            }
            Err(e) if wanted == crate::RelayIo::Auto => {
                tracing::info!(error = %e, "io_uring unavailable; relay sockets use epoll");
                Ok(false)
            }
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// The loop of the epoll path (`Server::bind` has refused `RelayIo::IoUring` where io_uring
    /// cannot run).
    fn run_epoll(mut self) -> Result<(), Error> {
        let mut events = Events::with_capacity(1024);
        while !self.stop.load(Ordering::Acquire) {
            let timeout = self.next_wake().saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let now = Instant::now();
            for ev in events.iter() {
                self.dispatch(now, ev);
            }
            self.end_iteration();
        }
        self.shut_down();
        Ok(())
    }

    /// The loop of the io_uring path: one `io_uring_enter` submits queued sends and sleeps until
    /// datagrams arrive on relay sockets, the `mio` registry has events, or a timer is due.
    #[cfg(target_os = "linux")]
    fn run_uring(mut self) -> Result<(), Error> {
        let mut events = Events::with_capacity(1024);
        let mut reaped = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            let timeout = self.next_wake().saturating_duration_since(Instant::now());
            let Some(uring) = self.io.uring.as_mut() else {
                break;
            };
            uring.wait(timeout)?;
            uring.take_reaped(&mut reaped);
            let now = Instant::now();
            let mut registry = false;
            for c in &reaped {
                let Some(inbox) = self.inbox.as_mut() else {
                    break;
                };
                let buffer = match inbox.read(c) {
                    Delivery::Datagram {
                        relay,
                        data,
                        from,
                        buffer,
                    } => {
                        if let Some(t) =
                            self.core
                                .handle_peer(now, RelayId(relay as u32), from, data)
                        {
                            self.io.deliver(t);
                        }
                        Some(buffer)
                    }
                    Delivery::Unusable { buffer } => Some(buffer),
                    Delivery::Registry => {
                        registry = true;
                        None
                    }
                    Delivery::Nothing => None,
                };
                if let Some(buffer) = buffer {
                    inbox.recycle(buffer);
                }
                let Io { uring, relays, .. } = &mut self.io;
                if let Some(uring) = uring {
                    uring.rearm(c, |relay| {
                        use std::os::fd::AsRawFd;
                        relays.get(relay)?.as_ref().map(|s| s.as_raw_fd())
                    });
                }
            }
            // A full batch may leave events behind, which would not wake the ring again.
            while registry {
                match self.poll.poll(&mut events, Some(std::time::Duration::ZERO)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                }
                let mut count = 0;
                for ev in events.iter() {
                    self.dispatch(now, ev);
                    count += 1;
                }
                registry = count == events.capacity();
            }
            self.end_iteration();
        }
        self.shut_down();
        if let (Some(uring), Some(inbox)) = (self.io.uring.as_mut(), self.inbox.as_mut()) {
            uring.close(inbox, std::time::Duration::from_secs(1));
        }
        Ok(())
    }

    /// Handles one readiness event from the `mio` registry.
    fn dispatch(&mut self, now: Instant, ev: &mio::event::Event) {
        let (kind, idx) = (ev.token().0 >> SHIFT, ev.token().0 & ((1 << SHIFT) - 1));
        match kind {
            UDP => self.drain_udp(now, idx),
            RELAY => self.drain_relay(now, idx),
            TCP_LISTEN => self.accept(idx, Transport::Tcp),
            TLS_LISTEN => self.accept(idx, Transport::Tls),
            CONN => self.conn_ready(now, idx, ev.is_readable(), ev.is_writable()),
            _ => {}
        }
    }

    /// Runs due timers and sends what the iteration queued.
    fn end_iteration(&mut self) {
        let now = Instant::now();
        if now >= self.core.poll_timeout() {
            self.core.handle_timeout(now);
            self.drain_events(now);
        }
        self.expire_handshakes(now);
        self.resume_accepts(now);
        self.flush();
    }

    /// The earliest of the core's next timeout, the next handshake deadline and the end of
    /// an accept pause.
    fn next_wake(&self) -> Instant {
        let mut wake = self.core.poll_timeout();
        if let Some(h) = self.handshakes.front() {
            wake = wake.min(h.deadline);
        }
        for until in self
            .tcp_gate
            .paused
            .iter()
            .chain(&self.tls_gate.paused)
            .flatten()
        {
            wake = wake.min(*until);
        }
        wake
    }

    /// Closes connections that were not greeted in time.
    fn expire_handshakes(&mut self, now: Instant) {
        while let Some(h) = self.handshakes.front() {
            if h.deadline > now {
                return;
            }
            let (slot, serial) = (h.slot, h.serial);
            self.handshakes.pop_front();
            if let Some(Some(conn)) = self.io.conns.get(slot)
                && conn.serial() == serial
                && !conn.greeted()
            {
                self.core
                    .shared()
                    .metrics()
                    .quota_refusals
                    .with_label_values(&["stream_handshake_time"])
                    .inc();
                self.close_conn(slot);
            }
        }
    }

    /// Accepts again on listeners whose pause has ended: the connections queued meanwhile
    /// raise no new readiness event.
    fn resume_accepts(&mut self, now: Instant) {
        for transport in [Transport::Tcp, Transport::Tls] {
            for idx in 0..self.gate(transport).paused.len() {
                let gate = self.gate(transport);
                if gate.paused[idx].is_some_and(|until| until <= now) {
                    gate.paused[idx] = None;
                    self.accept(idx, transport);
                }
            }
        }
    }

    fn gate(&mut self, transport: Transport) -> &mut Gate {
        match transport {
            Transport::Tls => &mut self.tls_gate,
            _ => &mut self.tcp_gate,
        }
    }

    fn shut_down(&mut self) {
        self.core.shutdown();
        self.drain_events(Instant::now());
        self.flush();
    }

    fn drain_udp(&mut self, now: Instant, idx: usize) {
        loop {
            let Some((sock, local, _)) = self.io.udp.get(idx) else {
                return;
            };
            let local = *local;
            let Ok(n) = self.recv.recv(sock, RECV_BATCH) else {
                return;
            };
            for i in 0..n {
                let Some((data, from)) = self.recv.datagram(i) else {
                    continue;
                };
                let five = FiveTuple {
                    client: from,
                    server: local,
                    transport: Transport::Udp,
                };
                if let Some(t) = self.core.handle_client(now, five, data) {
                    self.io.deliver(t);
                }
                drain_events(&mut self.core, &mut self.io, &self.poll, now);
            }
            if n < RECV_BATCH {
                return;
            }
        }
    }

    fn drain_relay(&mut self, now: Instant, idx: usize) {
        loop {
            let Some(Some(sock)) = self.io.relays.get(idx) else {
                return;
            };
            let Ok(n) = self.recv.recv(sock, RELAY_BATCH) else {
                return;
            };
            for i in 0..n {
                let Some((data, from)) = self.recv.datagram(i) else {
                    continue;
                };
                if let Some(t) = self.core.handle_peer(now, RelayId(idx as u32), from, data) {
                    self.io.deliver(t);
                }
            }
            if n < RELAY_BATCH {
                return;
            }
        }
    }

    fn accept(&mut self, idx: usize, transport: Transport) {
        if self
            .gate(transport)
            .paused
            .get(idx)
            .is_some_and(Option::is_some)
        {
            return; // `resume_accepts` comes back when the pause ends
        }
        loop {
            let listener = match transport {
                Transport::Tls => self.io.tls.get(idx),
                _ => self.io.tcp.get(idx),
            };
            let Some(listener) = listener else { return };
            let (stream, client) = match listener.accept() {
                Ok(r) => {
                    self.gate(transport).backoff.succeeded();
                    r
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    let now = Instant::now();
                    let gate = self.gate(transport);
                    match gate.backoff.failed(&e, now) {
                        Some(pause) => {
                            gate.paused[idx] = Some(now + pause);
                            return;
                        }
                        None => continue,
                    }
                }
            };
            let live = self.io.conn_by_client.len();
            if live >= self.io.max_conns {
                continue; // dropping the stream closes it
            }
            let Ok(permit) = self.sources.admit(client.ip()) else {
                self.core
                    .shared()
                    .metrics()
                    .quota_refusals
                    .with_label_values(&["connections_per_ip"])
                    .inc();
                continue;
            };
            let Ok(server) = stream.local_addr() else {
                continue;
            };
            let tls = match (transport, &self.io.tls_config) {
                (Transport::Tls, Some(cfg)) => match rustls::ServerConnection::new(cfg.clone()) {
                    Ok(c) => Some(c),
                    Err(_) => continue,
                },
                _ => None,
            };
            let _ = stream.set_nodelay(true);
            let slot = self.io.free_conns.pop().unwrap_or_else(|| {
                self.io.conns.push(None);
                self.io.conns.len() - 1
            });
            let serial = self.next_serial;
            self.next_serial += 1;
            let mut conn = Conn::new(
                stream,
                FiveTuple {
                    client,
                    server,
                    transport,
                },
                tls,
                serial,
                permit,
            );
            if self
                .poll
                .registry()
                .register(
                    conn.stream_mut(),
                    token(CONN, slot),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                self.io.free_conns.push(slot);
                continue;
            }
            self.io.conn_by_client.insert((client, server), slot);
            self.io.conns[slot] = Some(conn);
            self.handshakes.push_back(Handshake {
                deadline: Instant::now() + self.core.shared().settings().stream_handshake_timeout,
                slot,
                serial,
            });
        }
    }

    fn conn_ready(&mut self, now: Instant, idx: usize, readable: bool, writable: bool) {
        let Some(Some(conn)) = self.io.conns.get_mut(idx) else {
            return;
        };
        if writable && conn.flush().is_err() {
            self.close_conn(idx);
            return;
        }
        if !readable {
            return;
        }
        let mut scratch = std::mem::take(&mut self.io.buf);
        while let Some(Some(conn)) = self.io.conns.get_mut(idx) {
            let drained = match conn.fill(&mut scratch) {
                Ok(Fill::Data) => false,
                Ok(Fill::Drained) => true,
                Ok(Fill::WouldBlock) => break,
                Err(_) => {
                    self.close_conn(idx);
                    break;
                }
            };
            let five = conn.five();
            let input = conn.take_input();
            let mut pos = 0;
            let mut broken = false;
            while let Some(head) = input.get(pos..pos + 4) {
                let Ok(len) = stream_frame_len([head[0], head[1], head[2], head[3]]) else {
                    broken = true;
                    break;
                };
                let Some(frame) = input.get(pos..pos + len) else {
                    break;
                };
                if let Some(t) = self.core.handle_client(now, five, frame) {
                    self.io.deliver(t);
                }
                self.drain_events(now);
                pos += len;
            }
            let Some(Some(conn)) = self.io.conns.get_mut(idx) else {
                break;
            };
            conn.restore_input(input, pos);
            if pos > 0 {
                conn.greet();
            }
            if broken || conn.flush().is_err() {
                // Garbage on a stream cannot be resynchronised: close it.
                self.close_conn(idx);
                break;
            }
            if drained {
                break;
            }
        }
        self.io.buf = scratch;
    }

    fn close_conn(&mut self, idx: usize) {
        let Some(mut conn) = self.io.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let five = conn.five();
        let _ = self.poll.registry().deregister(conn.stream_mut());
        self.io.conn_by_client.remove(&(five.client, five.server));
        self.io.free_conns.push(idx);
        self.core.client_closed(five);
        self.drain_events(Instant::now());
    }

    fn drain_events(&mut self, now: Instant) {
        drain_events(&mut self.core, &mut self.io, &self.poll, now);
    }

    fn flush(&mut self) {
        // Allocation-free in the common case: `Vec::new` does not allocate until a push.
        for idx in self.io.flush() {
            self.close_conn(idx);
        }
    }
}

/// Carries out the core's events: opens and closes relay sockets.
fn drain_events(core: &mut Core, io: &mut Io, poll: &Poll, now: Instant) {
    {
        while let Some(event) = core.poll_event() {
            match event {
                Event::OpenRelay {
                    relay,
                    ip,
                    parity,
                    dont_fragment,
                } => {
                    let idx = relay.0 as usize;
                    let ports = core.shared().settings().relay_ports.clone();
                    let opened =
                        sockets::relay(ip, &ports, parity, dont_fragment).and_then(|mut s| {
                            let addr = s.local_addr().ok()?;
                            io.watch_relay(poll, idx, &mut s).ok()?;
                            Some((s, addr))
                        });
                    if io.relays.len() <= idx {
                        io.relays.resize_with(idx + 1, || None);
                    }
                    let result = match opened {
                        Some((s, addr)) => {
                            io.relays[idx] = Some(s);
                            Ok(addr)
                        }
                        None => Err(RelayFailure::NoPort),
                    };
                    if let Some(t) = core.relay_opened(now, relay, result) {
                        io.deliver(t);
                    }
                }
                Event::CloseRelay { relay } => {
                    let idx = relay.0 as usize;
                    if let Some(mut s) = io.relays.get_mut(idx).and_then(Option::take) {
                        io.unwatch_relay(poll, idx, &mut s);
                    }
                }
            }
        }
    }
}

impl Io {
    /// Starts receiving on a new relay socket: a multishot receive on the ring, or a `mio`
    /// registration.
    fn watch_relay(&mut self, poll: &Poll, idx: usize, s: &mut UdpSocket) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(uring) = &mut self.uring {
            use std::os::fd::AsRawFd;
            uring.watch(idx, s.as_raw_fd());
            return Ok(());
        }
        poll.registry()
            .register(s, token(RELAY, idx), Interest::READABLE)
    }

    /// Stops receiving on a relay socket the caller is about to close.
    fn unwatch_relay(&mut self, poll: &Poll, idx: usize, s: &mut UdpSocket) {
        #[cfg(target_os = "linux")]
        if let Some(uring) = &mut self.uring {
            // Queued sends name sockets by descriptor, which closing frees for reuse: send them
            // while the number still means this socket.
            let _ = uring.submit();
            uring.unwatch(idx);
            return;
        }
        let _ = poll.registry().deregister(s);
    }

    /// Sends the datagrams queued for client sockets and the frames queued on connections.
    /// Returns connections whose write failed, for the caller to close.
    fn flush(&mut self) -> Vec<usize> {
        for (s, _, batch) in &mut self.udp {
            if !batch.is_empty() {
                batch.flush(s);
            }
        }
        let mut failed = Vec::new();
        for idx in self.dirty.drain(..) {
            if let Some(Some(conn)) = self.conns.get_mut(idx)
                && conn.flush().is_err()
            {
                failed.push(idx);
            }
        }
        failed
    }

    /// Sends one transmit. UDP sends that would block are dropped (the network would drop them
    /// too); stream sends are buffered per connection up to a cap.
    fn deliver(&mut self, t: Transmit<'_>) {
        match t.destination {
            Destination::Peer { relay, peer } => {
                let Some(Some(s)) = self.relays.get(relay.0 as usize) else {
                    return;
                };
                #[cfg(target_os = "linux")]
                if let Some(uring) = &mut self.uring
                    && t.data.len() <= super::batch::SLOT
                {
                    use std::os::fd::AsRawFd;
                    uring.send(s.as_raw_fd(), t.data, peer);
                    return;
                }
                let _ = s.send_to(t.data, peer);
            }
            Destination::Client(five) if five.transport == Transport::Udp => {
                if let Some((s, _, batch)) = self.udp.iter_mut().find(|(_, a, _)| *a == five.server)
                {
                    batch.push(s, t.data, five.client);
                }
            }
            Destination::Client(five) => {
                if let Some(&idx) = self.conn_by_client.get(&(five.client, five.server))
                    && let Some(Some(conn)) = self.conns.get_mut(idx)
                    && let Ok(Queued::First) = conn.queue(t.data)
                {
                    self.dirty.push(idx);
                }
            }
        }
    }
}
