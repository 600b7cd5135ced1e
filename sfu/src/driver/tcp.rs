//! ICE-TCP (RFC 6544, passive) for every media worker: one listener, and per connection a
//! reader task that splits RFC 4571 frames (16-bit length prefix) and a writer task that adds
//! them.
//!
//! A connection belongs to one participant, and so to the one worker that holds it. Its first
//! frame is the client's STUN binding request, whose USERNAME names the server ufrag; the front
//! asks the workers which of them has a participant with that ufrag (each core's router is the
//! only record of it, so there is no second table to keep in step) and from then on hands the
//! connection's frames to that worker, which writes back through the connection's writer. A
//! connection whose first frame names no participant is closed.
//!
//! At most [`MAX_ICE_TCP_CONNECTIONS`] are held; one that sends no complete frame within
//! [`FIRST_FRAME_TIMEOUT`] is closed, so idle sockets cannot hold those slots. When `accept`
//! fails for lack of descriptors the listener pauses ([`admission::Backoff`]) instead of
//! retrying in a loop: the failed connection stays queued and the listener readable, so
//! retrying at once would spin the thread, which is also a media worker's thread.
//!
//! Lifecycle: the front runs as a task on the first worker's runtime from start until that
//! runtime ends; its connection tasks end when their peer closes, or with that runtime.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::Command;
use crate::core::routing::stun_local_ufrag;

/// ICE-TCP connections held at once; more are closed on accept (each costs two tasks and a
/// file descriptor).
pub const MAX_ICE_TCP_CONNECTIONS: usize = 10_000;
/// Time an ICE-TCP connection has to deliver its first frame (a STUN binding request, sent
/// right after connecting).
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// What the front tells the worker that owns a connection, in this order: `Opened` once,
/// then its frames, then `Closed` once.
pub(crate) enum TcpIn {
    Opened {
        remote: SocketAddr,
        /// Frames to send to the peer.
        writer: mpsc::Sender<Vec<u8>>,
    },
    Frame {
        remote: SocketAddr,
        local: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        remote: SocketAddr,
    },
}

/// A media worker as the front sees it.
#[derive(Clone)]
pub(crate) struct WorkerLink {
    pub commands: mpsc::UnboundedSender<Command>,
    pub tcp: mpsc::Sender<TcpIn>,
}

/// See the module docs.
pub(crate) struct TcpFront {
    pub listener: TcpListener,
    pub workers: Arc<[WorkerLink]>,
    /// Addresses we advertise; a local address not in here is replaced by the first.
    pub public_ips: Vec<IpAddr>,
}

impl TcpFront {
    pub async fn run(self) {
        let held = Arc::new(AtomicUsize::new(0));
        let mut backoff = admission::Backoff::new("SFU ICE-TCP");
        loop {
            match self.listener.accept().await {
                Ok((stream, remote)) => {
                    backoff.succeeded();
                    if held.load(Ordering::Acquire) >= MAX_ICE_TCP_CONNECTIONS {
                        continue;
                    }
                    let Ok(local) = stream.local_addr() else {
                        continue;
                    };
                    let local = super::advertised(&self.public_ips, local);
                    let slot = Slot::take(&held);
                    tokio::spawn(connection(
                        stream,
                        remote,
                        local,
                        self.workers.clone(),
                        slot,
                    ));
                }
                Err(e) => {
                    if let Some(pause) = backoff.failed(&e, Instant::now()) {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
    }
}

/// One held connection, given back when its reader ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(held: &Arc<AtomicUsize>) -> Self {
        held.fetch_add(1, Ordering::AcqRel);
        Self(held.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    workers: Arc<[WorkerLink]>,
    _slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let Ok(Ok(first)) = tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_frame(&mut rd)).await else {
        return;
    };
    let Some(owner) = owner(&workers, &first).await else {
        return;
    };
    let to_core = &workers[owner].tcp;
    let (writer, from_core) = mpsc::channel(256);
    tokio::spawn(write_frames(wr, from_core));
    if to_core
        .send(TcpIn::Opened { remote, writer })
        .await
        .is_err()
    {
        return;
    }
    let mut data = first;
    loop {
        let frame = TcpIn::Frame {
            remote,
            local,
            data,
        };
        if to_core.send(frame).await.is_err() {
            return;
        }
        match read_frame(&mut rd).await {
            Ok(next) => data = next,
            Err(_) => break,
        }
    }
    let _ = to_core.send(TcpIn::Closed { remote }).await;
}

/// The worker holding the participant whose server ufrag `first` (a STUN message) names.
async fn owner(workers: &[WorkerLink], first: &[u8]) -> Option<usize> {
    let ufrag = stun_local_ufrag(first)?;
    for (i, w) in workers.iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        let asked = ufrag.to_owned();
        let ask = Command::Run(Box::new(move |core, _| {
            let _ = tx.send(core.owns_ufrag(&asked));
        }));
        if w.commands.send(ask).is_ok() && rx.await == Ok(true) {
            return Some(i);
        }
    }
    None
}

async fn write_frames(mut wr: OwnedWriteHalf, mut from_core: mpsc::Receiver<Vec<u8>>) {
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
}

/// One RFC 4571 frame: a 16-bit length, then that many bytes.
async fn read_frame(rd: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = rd.read_u16().await?;
    let mut data = vec![0u8; len as usize];
    rd.read_exact(&mut data).await?;
    Ok(data)
}
