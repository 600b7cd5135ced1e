//! A write deadline on every accepted socket, below HTTP, WebSocket and Socket.IO alike.
//!
//! A peer that stops reading fills its TCP window; every write to it then waits forever, and
//! whatever the writer holds (a frame, socketioxide's packet buffer, the WebSocket itself) stays
//! pinned until the peer closes. [`Stream`] bounds that wait: a write, flush or shutdown that makes
//! no progress for `limits.write_timeout` fails with `TimedOut`, and from then on every read and
//! write on the socket fails at once (a waiting reader is woken), so the tasks that own the
//! connection end and drop it. The socket is set to linger 0 first, so dropping it resets the
//! connection (RST): the unsent bytes are discarded at once rather than kept by the kernel for a
//! peer that will not read them.
//!
//! The deadline measures the time without progress, not the time a whole message takes: a slow
//! but live peer is bounded by the outbox's byte budget instead (see [`super::outbox`]).
//!
//! [`Listener`] wraps any `axum::serve::Listener` so every connection it accepts gets the deadline;
//! the binary serves through it. Socket.IO needs it: socketioxide's writer awaits socket writes
//! with no timeout of its own, and nothing outside it can cancel that wait.
//!
//! Lifecycle of a [`Stream`]: open; stalled once a write misses its deadline (for good); closed
//! when its owners drop it.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Accepts connections from `L`, each wrapped in a [`Stream`] with the write deadline.
#[derive(Debug)]
pub struct Listener<L> {
    inner: L,
    timeout: Duration,
}

impl<L> Listener<L> {
    pub fn new(inner: L, write_timeout: Duration) -> Self {
        Self {
            inner,
            timeout: write_timeout,
        }
    }
}

impl<L> axum::serve::Listener for Listener<L>
where
    L: axum::serve::Listener,
    L::Io: AsFd,
{
    type Io = Stream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (Stream::new(io, self.timeout), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A socket whose writes must make progress within a deadline; see the module docs.
#[derive(Debug)]
pub struct Stream<S> {
    inner: S,
    timeout: Duration,
    /// Runs while a write waits on the peer; re-armed when a wait starts after progress.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: Waiting,
    state: State,
    /// The task waiting to read, woken when the socket stalls so it sees the failure.
    reader: Option<Waker>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    No,
    /// A write is pending and the timer runs.
    OnPeer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// A write missed its deadline: every operation fails from now on.
    Stalled,
}

impl<S: AsFd> Stream<S> {
    pub fn new(inner: S, write_timeout: Duration) -> Self {
        Self {
            inner,
            timeout: write_timeout,
            timer: None,
            waiting: Waiting::No,
            state: State::Open,
            reader: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Runs one write-side operation under the deadline.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        if self.state == State::Stalled {
            return Poll::Ready(Err(stalled()));
        }
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.waiting = Waiting::No;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let deadline = Instant::now() + self.timeout;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if self.waiting == Waiting::No {
                    timer.as_mut().reset(deadline);
                    self.waiting = Waiting::OnPeer;
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.stall();
                Poll::Ready(Err(stalled()))
            }
        }
    }

    fn stall(&mut self) {
        self.state = State::Stalled;
        // Linger 0: closing the socket resets the connection and frees its send queue now.
        let _ = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
        tracing::debug!(timeout = ?self.timeout, "closing a connection whose peer stopped reading");
        super::memory::release_soon();
    }
}

fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "write timed out: the peer stopped reading",
    )
}

impl<S: AsyncRead + AsFd + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state == State::Stalled {
            return Poll::Ready(Err(stalled()));
        }
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_pending()
            && !this
                .reader
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            this.reader = Some(cx.waker().clone());
        }
        polled
    }
}

impl<S: AsyncWrite + AsFd + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .guard(cx, |inner, cx| inner.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};

    /// A connected pair on loopback whose client side has a small receive buffer and never
    /// reads.
    async fn pair(timeout: Duration) -> (Stream<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let client = client
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Stream::new(server, timeout), client)
    }

    #[tokio::test]
    async fn a_write_the_peer_does_not_take_fails_after_the_timeout_and_resets() {
        let (mut server, mut client) = pair(Duration::from_millis(300)).await;
        let chunk = vec![7u8; 64 * 1024];
        let started = Instant::now();
        let mut sent = 0usize;
        let error = loop {
            match server.write(&chunk).await {
                Ok(n) => sent += n,
                Err(e) => break e,
            }
            assert!(sent < 256 << 20, "the peer's window never closed");
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(300));
        // Stalled for good: reads fail too, at once.
        let mut buf = [0u8; 16];
        assert!(server.read(&mut buf).await.is_err());
        drop(server);
        // The peer sees a reset rather than the rest of a stream.
        let mut drained = 0usize;
        let outcome = loop {
            match client.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => drained += n,
                Err(e) => break Err(e),
            }
        };
        assert_eq!(
            outcome.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset),
            "after {drained} bytes"
        );
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_when_the_writer_stalls() {
        let (server, _client) = pair(Duration::from_millis(200)).await;
        let (mut read, mut write) = tokio::io::split(server);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            read.read(&mut buf).await
        });
        let chunk = vec![7u8; 64 * 1024];
        while write.write(&chunk).await.is_ok() {}
        let read = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the reader is woken")
            .unwrap();
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_reading_peer_never_trips_the_deadline() {
        let (mut server, mut client) = pair(Duration::from_millis(200)).await;
        let reader = tokio::spawn(async move {
            let mut total = 0usize;
            let mut buf = vec![0u8; 8192];
            loop {
                // Slower than the writer, faster than the deadline.
                tokio::time::sleep(Duration::from_millis(5)).await;
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        let chunk = vec![7u8; 16 * 1024];
        for _ in 0..64 {
            server.write_all(&chunk).await.unwrap();
        }
        server.shutdown().await.unwrap();
        drop(server);
        assert_eq!(reader.await.unwrap(), 64 * chunk.len());
    }
}
