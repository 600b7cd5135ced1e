//! The tokio drivers: one media worker per thread, each owning a UDP socket and a [`Core`]
//! with a current-thread runtime, and one ICE-TCP front all workers share ([`tcp`]).
//!
//! A worker's core is borrowed `&mut` by that worker's one task only; the
//! [`crate::SfuHandle`] sends closures over a channel to the worker that holds the room (see
//! [`crate::core::shard`]) and gets results back over oneshots, and events go out over an
//! unbounded channel all workers share (they are signaling-rate, not packet-rate). Per
//! iteration a worker feeds one input (a batch of datagrams, a TCP frame, a command or a
//! timeout), then flushes every transmit and event the core produced. Datagrams are read with
//! `recvmmsg` and written with `sendmmsg` (crate `datagram`), a batch per system call.
//!
//! Each worker has its own UDP port, advertised in the candidates of the participants it
//! holds, so a datagram arrives on the thread that owns its participant and never crosses to
//! another (ADR 0081). ICE-TCP has one port; a connection is handed to its worker once, by
//! the server ufrag in its first frame.

pub(crate) mod tcp;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use datagram::{RECV_BATCH, RecvBatch, SEND_BATCH, SendBatch};
use str0m::net::Protocol;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::core::Core;
use crate::event::SfuEvent;
pub use tcp::{FIRST_FRAME_TIMEOUT, MAX_ICE_TCP_CONNECTIONS};
pub(crate) use tcp::{TcpFront, TcpIn};

/// A closure run on the driver thread with the core and the current time.
pub(crate) type CoreFn = Box<dyn FnOnce(&mut Core, Instant) + Send>;

/// A unit of work for the core, run on the driver thread.
pub(crate) enum Command {
    Run(CoreFn),
    Shutdown,
}

/// Datagrams handled per wake-up before flushing output (keeps latency bounded).
const RECV_BUDGET: usize = 64;

/// One media worker. Lifecycle: built by [`crate::Sfu::start`], run on its own thread until
/// [`Command::Shutdown`] or the last handle is dropped; then it closes every peer (DTLS
/// close_notify) and ends, closing its socket.
pub(crate) struct Driver {
    pub core: Core,
    pub udp: UdpSocket,
    /// The address this worker's UDP candidates advertise (the local address of every
    /// datagram it receives, as the core knows it).
    pub udp_local: SocketAddr,
    /// ICE-TCP connections the front handed to this worker, and their frames.
    pub tcp: mpsc::Receiver<TcpIn>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub events: mpsc::UnboundedSender<SfuEvent>,
}

impl Driver {
    pub async fn run(mut self) {
        let mut recv = RecvBatch::new();
        let mut send = SendBatch::new();
        let mut tcp_conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();

        loop {
            let deadline = self
                .core
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                r = self.udp.readable() => {
                    if r.is_ok() {
                        self.receive(&mut recv);
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Run(f)) => f(&mut self.core, Instant::now()),
                    Some(Command::Shutdown) | None => {
                        // Say goodbye (DTLS close_notify) before the sockets close.
                        self.core.close_all(Instant::now());
                        while let Some(t) = self.core.poll_transmit() {
                            if t.proto == Protocol::Udp {
                                let _ = self.udp.try_send_to(&t.contents, t.destination);
                            }
                        }
                        while let Some(e) = self.core.poll_event() {
                            let _ = self.events.send(e);
                        }
                        break;
                    }
                },
                Some(msg) = self.tcp.recv() => match msg {
                    TcpIn::Opened { remote, writer } => {
                        tcp_conns.insert(remote, writer);
                    }
                    TcpIn::Frame { remote, local, data } => {
                        self.core.handle_receive(Instant::now(), Protocol::Tcp, remote, local, &data);
                    }
                    TcpIn::Closed { remote } => {
                        tcp_conns.remove(&remote);
                        self.core.connection_closed(Protocol::Tcp, remote);
                    }
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.core.handle_timeout(Instant::now());
                }
            }
            // A busy socket must not starve timers.
            let now = Instant::now();
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            while let Some(t) = self.core.poll_transmit() {
                match t.proto {
                    Protocol::Udp => {
                        if send.len() == SEND_BATCH {
                            self.send(&mut send).await;
                        }
                        send.push(&self.udp, &t.contents, t.destination);
                    }
                    _ => {
                        if let Some(conn) = tcp_conns.get(&t.destination) {
                            let _ = conn.try_send(t.contents.to_vec());
                        }
                    }
                }
            }
            self.send(&mut send).await;
            while let Some(e) = self.core.poll_event() {
                let _ = self.events.send(e);
            }
        }
    }

    /// Feeds the core what the socket holds, [`RECV_BATCH`] datagrams per system call, up to
    /// [`RECV_BUDGET`] before the caller flushes what they produced.
    fn receive(&mut self, recv: &mut RecvBatch) {
        let mut budget = RECV_BUDGET;
        while budget > 0 {
            let max = budget.min(RECV_BATCH);
            // Through `try_io`, so that an empty socket clears tokio's readiness.
            let got = self
                .udp
                .try_io(Interest::READABLE, || match recv.recv(&self.udp, max) {
                    Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                    other => other,
                });
            let Ok(n) = got else {
                return;
            };
            let now = Instant::now();
            for i in 0..n {
                if let Some((data, from)) = recv.datagram(i) {
                    self.core
                        .handle_receive(now, Protocol::Udp, from, self.udp_local, data);
                }
            }
            budget = budget.saturating_sub(n);
        }
    }

    /// Sends every queued datagram, in `sendmmsg` batches. A fan-out burst can fill the socket
    /// buffer: then it waits for room rather than drop (a datagram refused for its destination,
    /// e.g. unreachable, is that peer's loss and is skipped).
    async fn send(&self, send: &mut SendBatch) {
        while !send.is_empty() {
            match self
                .udp
                .try_io(Interest::WRITABLE, || send.send_queued(&self.udp))
            {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.udp.writable().await.is_err() {
                        send.flush(&self.udp);
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

/// The address peers know for `local`: itself when advertised (or nothing is configured),
/// else the first advertised address on the same port.
pub(crate) fn advertised(public_ips: &[std::net::IpAddr], local: SocketAddr) -> SocketAddr {
    if public_ips.contains(&local.ip()) || public_ips.is_empty() {
        local
    } else {
        SocketAddr::new(public_ips[0], local.port())
    }
}
