//! The HTTP edge, before any request is read or token checked (issue 10, item 1 and part of
//! item 5): header, idle and request timeouts; the raw per-IP cap; `/metrics` on its own
//! listener; the demo page's security headers; and, against the real binary, a second
//! SIGTERM during the drain and a flood under a low open-file limit.
//!
//! Helpers here speak raw TCP, since what is tested is what happens to sockets that never
//! become a well-formed request.

mod caps;
mod process;
mod surface;
mod timeouts;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `to` from the local address `from` (any port), so tests can act as
/// another client address: all of 127.0.0.0/8 is loopback on Linux.
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

pub fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Reads (keeping what arrives) until the server closes the connection. `Ok` with how long
/// that took, or `Err` with what was read if it is still open after `limit`.
pub async fn closed_within(
    stream: &mut (impl AsyncRead + Unpin),
    limit: Duration,
) -> Result<(Duration, Vec<u8>), Vec<u8>> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return Err(seen),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok((started.elapsed(), seen)),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on a fresh connection from `from`: status, head (lower-cased) and body.
pub async fn fetch_from(from: IpAddr, addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = connect_from(from, addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let (_, raw) = closed_within(&mut s, Duration::from_secs(10))
        .await
        .expect("the server answers and closes");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

pub async fn fetch(addr: SocketAddr, path: &str) -> (u16, String, String) {
    fetch_from(loopback(1), addr, path).await
}

/// The value of the sample `name` (with its labels, e.g. `x{reason="a"}`) in `/metrics`.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
