//! The driver: binds sockets, runs one `mio` worker thread per core, shuts down on request.
//!
//! Why threads with `mio` rather than tokio tasks: a worker must poll its client sockets and the
//! relay sockets of all its allocations as one set, with the [`Core`] owned by `&mut` and no
//! channel or lock between them. See `docs/adr/0020-turn-own-codec-and-mio-driver.md`.
//!
//! On Linux every listen address gets one `SO_REUSEPORT` socket per worker. The kernel hashes a
//! client's 4-tuple to one socket, so all of a client's packets reach the worker owning its
//! allocation; TCP/TLS connections are spread the same way at accept.

use datagram as batch;
mod sockets;
mod stream;
mod tls;
#[cfg(target_os = "linux")]
mod uring;
mod worker;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use prometheus::Registry;

use crate::{Error, Settings, core::Shared};
use sockets::Sharing;
use worker::{Admission, Worker, WorkerSockets};

/// Addresses the server actually bound (ports resolved when the settings said 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundAddrs {
    /// UDP listeners.
    pub udp: Vec<SocketAddr>,
    /// TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// TLS listeners (empty when TLS is not configured).
    pub tls: Vec<SocketAddr>,
}

/// A bound, not yet running TURN server.
///
/// Lifecycle: [`Server::bind`] binds every socket (so port conflicts fail early and tests can
/// read [`Server::local_addrs`]); [`Server::run`] starts the workers and returns after the
/// shutdown future completes and every worker has closed its sockets.
#[must_use = "a bound server does nothing until `run` is awaited"]
pub struct Server {
    shared: Arc<Shared>,
    workers: Vec<WorkerSockets>,
    addrs: BoundAddrs,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Validates settings, registers metrics in `registry`, loads TLS material and binds all
    /// listening sockets.
    pub async fn bind(settings: Settings, registry: &Registry) -> Result<Server, Error> {
        if settings.relay_io == crate::RelayIo::IoUring && !Server::io_uring_supported() {
            return Err(Error::Settings(
                "relay_io = io_uring, but this kernel or its seccomp profile refuses io_uring"
                    .into(),
            ));
        }
        let count = worker_count(settings.workers);
        let sharing = if count > 1 {
            Sharing::ReusePort
        } else {
            Sharing::Exclusive
        };
        let tls = match (&settings.tls_cert_path, &settings.tls_key_path) {
            (Some(c), Some(k)) if !settings.tls_listen.is_empty() => {
                Some(tls::server_config(c, k)?)
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::Settings(
                    "tls_cert_path and tls_key_path must be set together".into(),
                ));
            }
            _ => None,
        };
        let mut workers: Vec<WorkerSockets> =
            (0..count).map(|_| WorkerSockets::default()).collect();
        let mut addrs = BoundAddrs::default();
        // Each group's first socket holds the resolved port (the rest joined it).
        let bound = |first: Option<io::Result<SocketAddr>>, asked: SocketAddr| {
            first.and_then(Result::ok).unwrap_or(asked)
        };
        for &addr in &settings.udp_listen {
            let group = sockets::udp_group(addr, count, sharing)?;
            addrs
                .udp
                .push(bound(group.first().map(|s| s.local_addr()), addr));
            for (w, s) in workers.iter_mut().zip(group) {
                w.udp.push(s);
            }
        }
        for &addr in &settings.tcp_listen {
            let group = sockets::tcp_group(addr, count, sharing)?;
            addrs
                .tcp
                .push(bound(group.first().map(|s| s.local_addr()), addr));
            for (w, s) in workers.iter_mut().zip(group) {
                w.tcp.push(s);
            }
        }
        if let Some(config) = &tls {
            for &addr in &settings.tls_listen {
                let group = sockets::tcp_group(addr, count, sharing)?;
                addrs
                    .tls
                    .push(bound(group.first().map(|s| s.local_addr()), addr));
                for (w, s) in workers.iter_mut().zip(group) {
                    w.tls.push(s);
                    w.tls_config = Some(config.clone());
                }
            }
        }
        // Relay IPs must be concrete: either relay_ip or every listener's own IP.
        if settings.relay_ip.is_none_or(|ip| ip.is_unspecified())
            && addrs
                .udp
                .iter()
                .chain(&addrs.tcp)
                .chain(&addrs.tls)
                .any(|a| a.ip().is_unspecified())
        {
            return Err(Error::Settings(
                "relay_ip must be set when listening on a wildcard address".into(),
            ));
        }
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let shared = Shared::new(settings, registry, rand::random(), Instant::now(), unix)?;
        Ok(Server {
            shared,
            workers,
            addrs,
        })
    }

    /// The addresses bound by [`Server::bind`].
    pub fn local_addrs(&self) -> BoundAddrs {
        self.addrs.clone()
    }

    /// Runs until `shutdown` completes, then stops the workers (their allocations and sockets are
    /// released) and returns. Returns early with the error if a worker fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        tracing::info!(
            udp = ?self.addrs.udp,
            tcp = ?self.addrs.tcp,
            tls = ?self.addrs.tls,
            workers = self.workers.len(),
            "TURN server running"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut wakers = Vec::new();
        let mut threads = Vec::new();
        let admission = Admission {
            sources: admission::SourceLimiter::new(
                self.shared.settings().max_stream_connections_per_ip,
            ),
            tcp_reports: admission::Reporter::new("TURN TCP"),
            tls_reports: admission::Reporter::new("TURN TLS"),
        };
        for (i, sockets) in self.workers.into_iter().enumerate() {
            let worker = Worker::new(
                self.shared.clone(),
                sockets,
                stop.clone(),
                admission.clone(),
            )?;
            wakers.push(worker.waker());
            // Reports on drop, so a panicking worker ends the server like a failing one.
            let done = Done(done_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("turn-worker-{i}"))
                .spawn(move || {
                    let _done = done;
                    worker.run()
                })?;
            threads.push(thread);
        }
        drop(done_tx);
        tokio::select! {
            () = shutdown => {}
            _ = done_rx.recv() => {}
        }
        stop.store(true, Ordering::Release);
        for w in &wakers {
            let _ = w.wake();
        }
        // Wait for all workers without blocking the runtime.
        while done_rx.recv().await.is_some() {}
        let mut result = Ok(());
        for t in threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "TURN worker failed");
                    result = Err(e);
                }
                Err(_) => result = Err(Error::WorkerPanicked),
            }
        }
        tracing::info!("TURN server stopped");
        result
    }

    /// Whether this machine lets a worker relay through io_uring (see [`crate::RelayIo`]): the
    /// kernel is recent enough and no seccomp profile forbids it.
    pub fn io_uring_supported() -> bool {
        #[cfg(target_os = "linux")]
        {
            mio::Poll::new().is_ok_and(|poll| {
                use std::os::fd::AsRawFd;
                uring::Uring::new(poll.as_raw_fd()).is_ok_and(|(mut uring, mut inbox)| {
                    // Closing lets the inbox free its buffers instead of leaking them.
                    uring.close(&mut inbox, std::time::Duration::from_secs(1));
                    true
                })
            })
        }
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Server-wide state (quotas, settings); tests use it to check that nothing is left.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// Tells [`Server::run`] that a worker thread ended, however it ended.
struct Done(tokio::sync::mpsc::UnboundedSender<()>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    if cfg!(target_os = "linux") {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}
