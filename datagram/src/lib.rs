//! # chorus-datagram: batched UDP I/O
//!
//! `recvmmsg`/`sendmmsg` on Linux, one datagram per call on other Unix systems. The TURN relay
//! (mio sockets) and the SFU's media workers (tokio sockets) both use it; it needs only the
//! socket's descriptor, and never blocks (`MSG_DONTWAIT`), so either event loop keeps control of
//! waiting.
//!
//! Why: a relay's or a forwarder's cost is dominated by syscalls. Receiving up to [`RECV_BATCH`] datagrams per
//! call, and sending the datagrams queued for one socket in one call, divides that cost. A short
//! batch also tells us the socket is drained, which saves the final `EAGAIN` read that
//! edge-triggered polling otherwise needs: on Linux every datagram arriving after our read
//! re-arms the edge, so stopping at a short batch cannot strand a packet.
//!
//! Datagrams larger than [`SLOT`] bytes are dropped (flagged truncated by the kernel); WebRTC
//! media and TURN control messages stay far below it.

use std::{io, net::SocketAddr};

use std::os::fd::AsRawFd;

/// Bytes per datagram slot.
pub const SLOT: usize = 4096;
/// Datagrams per receive call on client sockets.
pub const RECV_BATCH: usize = 32;
/// Datagrams queued per socket before a send call is forced.
pub const SEND_BATCH: usize = 32;

/// Reusable receive buffers. Lifecycle: one per worker, refilled by every [`RecvBatch::recv`].
pub struct RecvBatch {
    data: Vec<u8>,
    lens: [usize; RECV_BATCH],
    from: [Option<SocketAddr>; RECV_BATCH],
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Empty buffers for [`RECV_BATCH`] datagrams.
    pub fn new() -> RecvBatch {
        RecvBatch {
            data: vec![0u8; SLOT * RECV_BATCH],
            lens: [0; RECV_BATCH],
            from: [None; RECV_BATCH],
        }
    }

    /// Datagram `i` of the last receive: (payload, sender). `None` for a dropped slot.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let from = self.from[i]?;
        Some((&self.data[i * SLOT..i * SLOT + self.lens[i]], from))
    }

    /// Receives up to `max` datagrams without blocking; returns how many slots were filled
    /// (0 when the socket is drained).
    #[cfg(target_os = "linux")]
    pub fn recv(&mut self, sock: &impl AsRawFd, max: usize) -> io::Result<usize> {
        let max = max.min(RECV_BATCH);
        // SAFETY: zeroed sockaddr_storage/iovec/mmsghdr are valid "empty" values.
        let mut addrs: [libc::sockaddr_storage; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let base = self.data.as_mut_ptr();
        for i in 0..max {
            iovs[i].iov_base = base.wrapping_add(i * SLOT).cast();
            iovs[i].iov_len = SLOT;
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer refers to live buffers of the stated lengths for the call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                max as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                // ICMP errors queued on the socket surface here; the next call goes on.
                io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted => {
                    self.from[0] = None;
                    Ok(1)
                }
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            let truncated = msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.lens[i] = msgs[i].msg_len as usize;
            self.from[i] = if truncated {
                None
            } else {
                sockaddr_to(&addrs[i], msgs[i].msg_hdr.msg_namelen)
            };
        }
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn recv(&mut self, sock: &impl AsRawFd, max: usize) -> io::Result<usize> {
        let _ = max;
        match with_std(sock, |s| s.recv_from(&mut self.data[..SLOT])) {
            Ok((n, from)) => {
                self.lens[0] = n;
                self.from[0] = Some(from);
                Ok(1)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(_) => {
                self.from[0] = None;
                Ok(1)
            }
        }
    }
}

/// Datagrams queued for one socket. Lifecycle: one per client-facing UDP socket; filled by
/// [`SendBatch::push`], emptied by [`SendBatch::flush`] at the end of each loop iteration or when
/// full.
pub struct SendBatch {
    data: Vec<u8>,
    lens: [usize; SEND_BATCH],
    to: [socket2::SockAddr; SEND_BATCH],
    len: usize,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// An empty queue of [`SEND_BATCH`] slots.
    pub fn new() -> SendBatch {
        SendBatch {
            data: vec![0u8; SLOT * SEND_BATCH],
            lens: [0; SEND_BATCH],
            to: std::array::from_fn(|_| SocketAddr::from(([0, 0, 0, 0], 0)).into()),
            len: 0,
        }
    }

    /// Queues a datagram; sends the batch first if it is full. Oversized data is sent directly.
    pub fn push(&mut self, sock: &impl AsRawFd, data: &[u8], to: SocketAddr) {
        if data.len() > SLOT {
            let _ = with_std(sock, |s| s.send_to(data, to));
            return;
        }
        if self.len == SEND_BATCH {
            self.flush(sock);
        }
        let i = self.len;
        self.data[i * SLOT..i * SLOT + data.len()].copy_from_slice(data);
        self.lens[i] = data.len();
        self.to[i] = to.into();
        self.len += 1;
    }

    /// Whether anything is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many datagrams are queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Sends everything queued. Datagrams the kernel will not take now are dropped, as the
    /// network would drop them.
    pub fn flush(&mut self, sock: &impl AsRawFd) {
        if self.send_queued(sock).is_err() {
            self.len = 0;
        }
    }

    /// Sends what is queued until the kernel will take no more. Then the datagrams not sent
    /// stay queued, in order, and the error is `WouldBlock`: a caller that would rather wait
    /// than drop waits for the socket to be writable and calls again. A datagram the kernel
    /// refuses for its destination (unreachable, too large) is skipped.
    #[cfg(target_os = "linux")]
    pub fn send_queued(&mut self, sock: &impl AsRawFd) -> io::Result<()> {
        let n = self.len;
        if n == 0 {
            return Ok(());
        }
        // SAFETY: zeroed iovec/mmsghdr are valid "empty" values.
        let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
        let base = self.data.as_mut_ptr();
        for i in 0..n {
            iovs[i].iov_base = base.wrapping_add(i * SLOT).cast();
            iovs[i].iov_len = self.lens[i];
            msgs[i].msg_hdr.msg_name = self.to[i].as_ptr() as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = self.to[i].len();
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: pointers refer to live buffers and addresses for the duration of the call.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr().wrapping_add(sent),
                    (n - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                _ if r == 0 => break,
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    self.keep_from(sent);
                    return Err(e);
                }
                // About one destination: skip that datagram.
                _ => sent += 1,
            }
        }
        self.len = 0;
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub fn send_queued(&mut self, sock: &impl AsRawFd) -> io::Result<()> {
        let n = self.len;
        for i in 0..n {
            if let Some(to) = self.to[i].as_socket() {
                let data = &self.data[i * SLOT..i * SLOT + self.lens[i]];
                if let Err(e) = with_std(sock, |s| s.send_to(data, to))
                    && e.kind() == io::ErrorKind::WouldBlock
                {
                    self.keep_from(i);
                    return Err(e);
                }
            }
        }
        self.len = 0;
        Ok(())
    }

    /// Moves the queued datagrams from `first` on to the front, dropping those before it.
    fn keep_from(&mut self, first: usize) {
        let n = self.len;
        for (to, from) in (first..n).enumerate() {
            self.data
                .copy_within(from * SLOT..from * SLOT + self.lens[from], to * SLOT);
            self.lens[to] = self.lens[from];
            self.to[to] = self.to[from].clone();
        }
        self.len = n - first;
    }
}

/// Kernel buffer sizes asked for on a busy UDP socket and what the kernel granted.
///
/// Why it matters: one socket carries every peer of a worker, so while the worker is busy (or
/// descheduled on a loaded host) arriving datagrams queue in the receive buffer, and once it is
/// full the kernel drops them. For a forwarder one dropped publisher packet is a gap for every
/// subscriber. Linux caps what a process may ask for at `net.core.rmem_max` / `wmem_max`
/// (often 208 KiB), so the grant is read back and a shortfall reported for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// Bytes asked for, each way.
    pub requested: usize,
    /// What the socket reports afterwards for receiving (Linux doubles the request to account
    /// for its own bookkeeping, so a full grant reads as twice `requested`).
    pub receive: usize,
    /// The same for sending.
    pub send: usize,
}

impl BufferSizes {
    /// True when the kernel granted less than was asked for in either direction.
    pub fn short(&self) -> bool {
        self.receive < self.requested || self.send < self.requested
    }
}

impl std::fmt::Display for BufferSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "asked for {} bytes, granted {} to receive and {} to send",
            self.requested, self.receive, self.send
        )
    }
}

/// Asks for `bytes` of kernel buffer each way on `sock` and reads back what was granted.
pub fn request_buffers(sock: &impl AsRawFd, bytes: usize) -> io::Result<BufferSizes> {
    with_std(sock, |s| {
        let s = socket2::SockRef::from(s);
        s.set_recv_buffer_size(bytes)?;
        s.set_send_buffer_size(bytes)?;
        Ok(BufferSizes {
            requested: bytes,
            receive: s.recv_buffer_size()?,
            send: s.send_buffer_size()?,
        })
    })
}

/// [`request_buffers`] for the socket `addr` of `part` ("SFU", "TURN"), with a warning in the
/// log when the kernel grants less or refuses: the operator's cue to raise
/// `net.core.rmem_max` and `net.core.wmem_max` (docs/operations.md).
pub fn request_buffers_or_warn(sock: &impl AsRawFd, bytes: usize, part: &str, addr: SocketAddr) {
    match request_buffers(sock, bytes) {
        Ok(sizes) if sizes.short() => tracing::warn!(
            %addr, %sizes,
            "{part} UDP socket buffers are smaller than asked for: a busy worker will drop \
             packets; raise net.core.rmem_max and net.core.wmem_max (docs/operations.md)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(%addr, error = %e, "{part} UDP socket buffers not set"),
    }
}

/// `f` with `sock` seen as a std socket, without taking ownership of its descriptor.
fn with_std<R>(sock: &impl AsRawFd, f: impl FnOnce(&std::net::UdpSocket) -> R) -> R {
    use std::os::fd::FromRawFd;
    // SAFETY: the descriptor is live for the call; ManuallyDrop keeps it from being closed.
    let s =
        std::mem::ManuallyDrop::new(unsafe { std::net::UdpSocket::from_raw_fd(sock.as_raw_fd()) });
    f(&s)
}

/// The address in `storage` (as filled by the kernel), if it is IPv4 or IPv6.
#[cfg(target_os = "linux")]
pub fn sockaddr_to(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family and length say this storage holds a sockaddr_in.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: family and length say this storage holds a sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn buffer_requests_report_what_the_kernel_granted() {
        let (a, _) = pair();
        // 64 KiB is under every Linux default cap (net.core.rmem_max is at least 208 KiB).
        let small = request_buffers(&a, 64 << 10).unwrap();
        assert!(!small.short(), "{small}");
        assert!(
            small.receive >= 64 << 10 && small.send >= 64 << 10,
            "{small}"
        );
        // 1 GiB is above any cap an unprivileged SO_RCVBUF may reach: the grant is smaller and
        // says so, instead of failing the bind.
        let huge = request_buffers(&a, 1 << 30).unwrap();
        assert!(huge.short(), "{huge}");
        assert!(huge.receive < 1 << 30, "{huge}");
    }

    fn recv_all(sock: &UdpSocket) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut batch = RecvBatch::new();
        let mut out = Vec::new();
        for _ in 0..1000 {
            let n = batch.recv(sock, RECV_BATCH).unwrap();
            if n == 0 {
                if out.len() >= 40 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            for i in 0..n {
                let (d, from) = batch.datagram(i).unwrap();
                out.push((d.to_vec(), from));
            }
        }
        out
    }

    #[test]
    fn a_batch_sent_arrives_in_order_with_its_sender() {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut send = SendBatch::new();
        // More than one batch's worth: `push` sends a full batch by itself.
        for i in 0..40u8 {
            send.push(&a, &[i; 100], to);
        }
        send.send_queued(&a).unwrap();
        assert_eq!(send.len(), 0);
        let got = recv_all(&b);
        assert_eq!(got.len(), 40);
        for (i, (data, from)) in got.iter().enumerate() {
            assert_eq!(data, &vec![i as u8; 100]);
            assert_eq!(*from, a.local_addr().unwrap());
        }
    }

    #[test]
    fn an_empty_socket_receives_nothing() {
        let (a, _) = pair();
        assert_eq!(RecvBatch::new().recv(&a, RECV_BATCH).unwrap(), 0);
    }

    #[test]
    fn kept_datagrams_move_to_the_front_in_order() {
        let (a, b) = pair();
        let to = b.local_addr().unwrap();
        let mut send = SendBatch::new();
        for i in 0..5u8 {
            send.push(&a, &vec![i; 10 + i as usize], to);
        }
        send.keep_from(3);
        assert_eq!(send.len(), 2);
        send.send_queued(&a).unwrap();
        let got = recv_all_n(&b, 2);
        assert_eq!(got, vec![vec![3u8; 13], vec![4u8; 14]]);
    }

    fn recv_all_n(sock: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut batch = RecvBatch::new();
        let mut out = Vec::new();
        for _ in 0..1000 {
            let k = batch.recv(sock, RECV_BATCH).unwrap();
            for i in 0..k {
                out.push(batch.datagram(i).unwrap().0.to_vec());
            }
            if out.len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        out
    }
}
