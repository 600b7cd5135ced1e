//! The tokio driver: owns the UDP socket, the ICE-TCP listener and the [`Core`], on one
//! dedicated thread with a current-thread runtime.
//!
//! The core is borrowed `&mut` by this one task only; the [`crate::SfuHandle`] sends
//! closures over a channel and gets results back over oneshots, and events go out over an
//! unbounded channel (they are signaling-rate, not packet-rate). Per iteration the driver
//! feeds one input (a batch of datagrams, a TCP frame, a command or a timeout), then
//! flushes every transmit and event the core produced.
//!
//! ICE-TCP (RFC 6544, passive): every accepted connection gets a reader task that splits
//! RFC 4571 frames (16-bit length prefix) and a writer task that adds them; frames reach
//! the core like datagrams with `Protocol::Tcp`. At most [`MAX_ICE_TCP_CONNECTIONS`] are held;
//! one that sends no complete frame within [`FIRST_FRAME_TIMEOUT`] is closed, so idle sockets
//! cannot hold those slots. When `accept` fails for lack of descriptors the listener pauses
//! ([`admission::Backoff`]) instead of retrying in a loop: the failed connection stays queued
//! and the listener readable, so retrying at once would spin the driver thread, which is also
//! the thread that forwards every packet.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::core::Core;
use crate::event::SfuEvent;

/// A closure run on the driver thread with the core and the current time.
pub(crate) type CoreFn = Box<dyn FnOnce(&mut Core, Instant) + Send>;

/// A unit of work for the core, run on the driver thread.
pub(crate) enum Command {
    Run(CoreFn),
    Shutdown,
}

enum TcpIn {
    Frame {
        remote: SocketAddr,
        local: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        remote: SocketAddr,
    },
}

/// Largest datagram we read; WebRTC packets stay under ~1200 bytes.
const RECV_BUF: usize = 2048;
/// Datagrams handled per wake-up before flushing output (keeps latency bounded).
const RECV_BATCH: usize = 64;
/// ICE-TCP connections held at once; more are closed on accept (each costs two tasks and a
/// file descriptor).
pub const MAX_ICE_TCP_CONNECTIONS: usize = 10_000;
/// Time an ICE-TCP connection has to deliver its first frame (a STUN binding request, sent
/// right after connecting).
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Driver {
    pub core: Core,
    pub udp: UdpSocket,
    pub tcp: Option<TcpListener>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub events: mpsc::UnboundedSender<SfuEvent>,
    /// Addresses we advertise; a local address not in here is replaced by the first.
    pub public_ips: Vec<IpAddr>,
}

impl Driver {
    pub async fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUF];
        let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpIn>(1024);
        let mut tcp_conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let udp_local =
            self.advertised(self.udp.local_addr().expect("bound socket has an address"));
        let mut backoff = admission::Backoff::new("SFU ICE-TCP");
        // While set, accepting waits until then (see the module docs).
        let mut accept_paused: Option<Instant> = None;

        loop {
            let deadline = self
                .core
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            let tcp = self.tcp.as_ref();
            tokio::select! {
                r = self.udp.recv_from(&mut buf) => {
                    if let Ok((n, remote)) = r {
                        self.core.handle_receive(Instant::now(), Protocol::Udp, remote, udp_local, &buf[..n]);
                        for _ in 1..RECV_BATCH {
                            match self.udp.try_recv_from(&mut buf) {
                                Ok((n, remote)) => self.core.handle_receive(
                                    Instant::now(), Protocol::Udp, remote, udp_local, &buf[..n]),
                                Err(_) => break,
                            }
                        }
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
                acc = async { tcp.expect("guarded by if").accept().await }, if tcp.is_some() && accept_paused.is_none() => {
                    match acc {
                        Ok((stream, remote)) => {
                            backoff.succeeded();
                            if tcp_conns.len() < MAX_ICE_TCP_CONNECTIONS
                                && let Ok(local) = stream.local_addr().map(|a| self.advertised(a))
                            {
                                let (tx, rx) = mpsc::channel(256);
                                tcp_conns.insert(remote, tx);
                                spawn_tcp(stream, remote, local, tcp_tx.clone(), rx);
                            }
                        }
                        Err(e) => {
                            let now = Instant::now();
                            accept_paused = backoff.failed(&e, now).map(|pause| now + pause);
                        }
                    }
                }
                _ = tokio::time::sleep_until(accept_paused.unwrap_or_else(Instant::now).into()), if accept_paused.is_some() => {
                    accept_paused = None;
                }
                Some(msg) = tcp_rx.recv() => match msg {
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
                        // A fan-out burst can fill the socket buffer: wait for room rather
                        // than drop (other errors, e.g. unreachable, are the peer's loss).
                        if let Err(e) = self.udp.try_send_to(&t.contents, t.destination)
                            && e.kind() == std::io::ErrorKind::WouldBlock
                        {
                            let _ = self.udp.send_to(&t.contents, t.destination).await;
                        }
                    }
                    _ => {
                        if let Some(conn) = tcp_conns.get(&t.destination) {
                            let _ = conn.try_send(t.contents.to_vec());
                        }
                    }
                }
            }
            while let Some(e) = self.core.poll_event() {
                let _ = self.events.send(e);
            }
        }
    }

    fn advertised(&self, local: SocketAddr) -> SocketAddr {
        if self.public_ips.contains(&local.ip()) || self.public_ips.is_empty() {
            local
        } else {
            SocketAddr::new(self.public_ips[0], local.port())
        }
    }
}

/// Reader and writer tasks of one ICE-TCP connection (RFC 4571 framing).
fn spawn_tcp(
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    to_core: mpsc::Sender<TcpIn>,
    mut from_core: mpsc::Receiver<Vec<u8>>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    tokio::spawn(async move {
        while let Some(frame) = from_core.recv().await {
            let Ok(len) = u16::try_from(frame.len()) else {
                continue;
            };
            let mut out = Vec::with_capacity(frame.len() + 2);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&frame);
            if wr.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let first = tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_frame(&mut rd)).await;
        let mut read = first.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        while let Ok(data) = read {
            let frame = TcpIn::Frame {
                remote,
                local,
                data,
            };
            if to_core.send(frame).await.is_err() {
                return;
            }
            read = read_frame(&mut rd).await;
        }
        let _ = to_core.send(TcpIn::Closed { remote }).await;
    });
}

/// One RFC 4571 frame: a 16-bit length, then that many bytes.
async fn read_frame(rd: &mut tokio::net::tcp::OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = rd.read_u16().await?;
    let mut data = vec![0u8; len as usize];
    rd.read_exact(&mut data).await?;
    Ok(data)
}
