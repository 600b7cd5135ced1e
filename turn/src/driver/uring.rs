//! Relay sockets through io_uring (Linux only): multishot receives and batched sends.
//!
//! Why: each allocation relays through its own socket, so with readiness polling every packet
//! from a peer costs an epoll event plus a receive call on that one socket, and every packet to
//! a peer costs a `sendto` of its own (`sendmmsg`/`recvmmsg` batch only within one socket). Here
//! each relay socket carries one multishot `RECVMSG` that keeps delivering datagrams into a ring
//! of provided buffers, and sends to peers are queued as submissions. One `io_uring_enter` per
//! loop iteration then submits every queued send and collects every datagram that arrived. See
//! `docs/adr/0023-turn-relay-io-uring.md` for the measurements and the alternatives.
//!
//! The worker's other sockets (client UDP listeners, TCP/TLS, the waker) stay in the `mio`
//! registry; a multishot poll on the registry's epoll descriptor tells the worker when to poll
//! it, so the worker sleeps in exactly one place, [`Uring::wait`].
//!
//! Safety of lent buffers:
//! - sends carry `MSG_DONTWAIT`, which io_uring honours by completing them during submission
//!   (a full socket buffer answers `EAGAIN`, nothing is parked), so a send slot is back in the
//!   free list once the submitting call returns and its completion is reaped;
//! - receive buffers belong to the kernel from [`Inbox::new`] until reaped, and go back with
//!   [`Inbox::recycle`] once the datagram was handled;
//! - the ring cannot be torn down synchronously (the kernel finishes that in the background),
//!   so before the worker ends, [`Uring::close`] cancels every multishot operation and waits
//!   for their last completions; only then may [`Inbox`] free its buffers. An inbox whose ring
//!   was not closed that way (a panicking worker) leaks its buffers rather than free memory the
//!   kernel might still write to.
//!
//! Lifecycle: [`Uring::new`] on the worker's own thread (the ring is single-issuer) registers
//! the buffer ring and arms the registry poll; [`Uring::watch`] arms a relay socket when it
//! opens, [`Uring::unwatch`] cancels it when it closes; the worker calls [`Uring::wait`] once
//! per loop iteration and handles what it reaped. A kernel without io_uring (before 6.0), or a
//! seccomp profile that forbids it (Docker's default does), makes [`Uring::new`] fail; the
//! worker then uses epoll and one system call per packet.

use std::{io, net::SocketAddr, os::fd::RawFd, time::Duration};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::batch::{SLOT, sockaddr_to};

/// Send slots: datagrams to peers queued between two submissions.
const SEND_SLOTS: usize = 256;
/// Provided receive buffers (a power of two, as the kernel requires).
const BUFFERS: u16 = 1024;
/// Bytes per receive buffer: the kernel's header, the peer's address, then the datagram.
const BUFFER_SIZE: usize = SLOT;
/// Buffer group id of the receive buffers.
const GROUP: u16 = 0;
/// Submission queue entries; completions get [`CQ_ENTRIES`] so a burst does not overflow.
const SQ_ENTRIES: u32 = 512;
const CQ_ENTRIES: u32 = 8192;

/// What a completion belongs to, kept in the top bits of its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Send = 0,
    Recv = 1,
    Registry = 2,
    Cancel = 3,
}

const KIND_SHIFT: u32 = 62;
const GEN_SHIFT: u32 = 32;
const GEN_MASK: u64 = (1 << 30) - 1;

fn user_data(kind: Kind, generation: u32, index: usize) -> u64 {
    ((kind as u64) << KIND_SHIFT) | ((u64::from(generation) & GEN_MASK) << GEN_SHIFT) | index as u64
}

fn kind_of(ud: u64) -> Kind {
    match ud >> KIND_SHIFT {
        0 => Kind::Send,
        1 => Kind::Recv,
        2 => Kind::Registry,
        _ => Kind::Cancel,
    }
}

/// A reaped completion the worker has to handle.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    ud: u64,
    res: i32,
    flags: u32,
}

/// What a [`Reaped`] completion means, read with [`Inbox::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// A datagram from `from` arrived on relay socket `relay`. Recycle `buffer` once handled.
    Datagram {
        relay: usize,
        data: &'a [u8],
        from: SocketAddr,
        buffer: BufferId,
    },
    /// A datagram that cannot be used (truncated, unknown address family); only its buffer is
    /// to be recycled.
    Unusable { buffer: BufferId },
    /// The `mio` registry has events: poll it without blocking.
    Registry,
    /// Nothing to do (a cancellation, a receive that ended without data).
    Nothing,
}

/// A provided receive buffer, to hand back with [`Inbox::recycle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferId(u16);

/// The ring: submissions, send slots and the multishot receive of every watched relay socket.
pub struct Uring {
    ring: IoUring,
    /// The `msghdr` multishot receives are armed with: it tells the kernel how much room to
    /// leave for the peer's address in each buffer. Boxed so its address stays put.
    template: Box<libc::msghdr>,
    registry_fd: RawFd,
    /// Per relay index: the generation of its armed receive, 0 when not watched.
    watches: Vec<u32>,
    next_generation: u32,
    send_data: Box<[u8]>,
    send_to: Box<[socket2::SockAddr]>,
    free_sends: Vec<usize>,
    /// Completions reaped but not yet handled by the worker.
    reaped: Vec<Reaped>,
    /// Multishot operations (relay receives, the registry poll) the kernel still holds.
    armed: usize,
}

// SAFETY: `template` holds only null pointers; the ring is made and used on one worker thread
// (it is created inside `Worker::run`, after the worker moved there).
unsafe impl Send for Uring {}

/// The receive buffers lent to the kernel. Owned by the worker beside (not inside) [`Uring`], so
/// a datagram can be read while the worker queues sends on the ring.
pub struct Inbox {
    /// `BUFFERS` ring entries, page-aligned as the kernel requires.
    entries: *mut types::BufRingEntry,
    data: Box<[u8]>,
    tail: u16,
    template: libc::msghdr,
    /// Set by [`Uring::close`] once the kernel holds no operation that could write here.
    quiesced: bool,
}

// SAFETY: the raw pointers (`entries`, and `template`'s, which are null) refer only to memory
// this value owns; it moves to the worker thread before the ring exists and is used there only.
unsafe impl Send for Inbox {}

impl Uring {
    /// Sets up the ring on the calling thread, registers `inbox`'s buffers and arms a poll on the
    /// `mio` registry's epoll descriptor.
    pub fn new(registry_fd: RawFd) -> io::Result<(Uring, Inbox)> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)
            // DEFER_TASKRUN needs 6.1; without it completions are only run a little eagerly.
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)
            })?;
        // SAFETY: an all-zero msghdr is a valid empty value.
        let mut template: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        template.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
        let mut inbox = Inbox::new(*template)?;
        // SAFETY: `inbox.entries` is a page-aligned array of BUFFERS entries that outlives the
        // ring (the worker drops the ring first).
        let registered = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(inbox.entries as u64, BUFFERS, GROUP, 0)
        };
        if let Err(e) = registered {
            // No receive was ever armed: nothing can write into the buffers.
            inbox.quiesced = true;
            return Err(e);
        }
        let mut uring = Uring {
            ring,
            template,
            registry_fd,
            watches: Vec::new(),
            next_generation: 1,
            send_data: vec![0u8; SEND_SLOTS * SLOT].into_boxed_slice(),
            send_to: (0..SEND_SLOTS)
                .map(|_| SocketAddr::from(([0, 0, 0, 0], 0)).into())
                .collect(),
            free_sends: (0..SEND_SLOTS).rev().collect(),
            reaped: Vec::with_capacity(1024),
            armed: 0,
        };
        uring.arm_registry();
        if let Err(e) = uring.ring.submit() {
            // Only the registry poll was queued, and it uses no buffer.
            inbox.quiesced = true;
            return Err(e);
        }
        Ok((uring, inbox))
    }

    /// Starts receiving on relay socket `fd`, known to the worker as `relay`.
    pub fn watch(&mut self, relay: usize, fd: RawFd) {
        if self.watches.len() <= relay {
            self.watches.resize(relay + 1, 0);
        }
        let generation = self.next_generation;
        self.next_generation = (self.next_generation % GEN_MASK as u32) + 1;
        self.watches[relay] = generation;
        self.arm_recv(relay, fd, generation);
    }

    /// Stops receiving on `relay`. The caller may close the socket right away: the pending
    /// receive holds its own reference until the cancellation lands.
    pub fn unwatch(&mut self, relay: usize) {
        let Some(generation) = self.watches.get_mut(relay) else {
            return;
        };
        if *generation == 0 {
            return;
        }
        let target = user_data(Kind::Recv, *generation, relay);
        *generation = 0;
        self.push(
            opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data(Kind::Cancel, 0, relay)),
        );
    }

    /// Queues `data` for `to` from relay socket `fd`. The caller keeps `fd` open until
    /// [`Uring::submit`] or [`Uring::wait`] ran. Returns `false` (the datagram is dropped, as a
    /// congested network would) only when every slot is still queued and cannot be submitted.
    pub fn send(&mut self, fd: RawFd, data: &[u8], to: SocketAddr) -> bool {
        if data.len() > SLOT {
            return false;
        }
        if self.free_sends.is_empty() {
            // Every slot is queued: submitting completes them (MSG_DONTWAIT) and frees them.
            if self.submit().is_err() {
                return false;
            }
        }
        let Some(slot) = self.free_sends.pop() else {
            return false;
        };
        let buf = &mut self.send_data[slot * SLOT..slot * SLOT + data.len()];
        buf.copy_from_slice(data);
        self.send_to[slot] = to.into();
        let entry = opcode::Send::new(types::Fd(fd), buf.as_ptr(), data.len() as u32)
            .dest_addr(self.send_to[slot].as_ptr().cast())
            .dest_addr_len(self.send_to[slot].len())
            .flags(libc::MSG_DONTWAIT)
            .build()
            .user_data(user_data(Kind::Send, 0, slot));
        self.push(entry);
        true
    }

    /// Submits everything queued without waiting, then reaps. Needed before a relay socket's
    /// descriptor is closed, since queued sends name it by number.
    pub fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    // The completion queue is full: reap, then submit again.
                    self.reap();
                }
                Err(e) => return Err(e),
            }
        }
        self.reap();
        Ok(())
    }

    /// Submits everything queued and sleeps until a completion arrives or `timeout` passes,
    /// then reaps. Handle what was reaped with [`Uring::take_reaped`]. Does not sleep when
    /// completions reaped earlier (while submitting mid-iteration) are still unhandled.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        if !self.reaped.is_empty() {
            return self.submit();
        }
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.reap();
        Ok(())
    }

    /// Cancels every multishot operation and waits (at most `patience`) until the kernel has
    /// finished with all of them, so that `inbox` may free its buffers. Sends still queued are
    /// submitted first.
    pub fn close(&mut self, inbox: &mut Inbox, patience: Duration) {
        self.push(
            opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(user_data(Kind::Cancel, 0, 0)),
        );
        let deadline = std::time::Instant::now() + patience;
        while self.armed > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.wait(left.min(Duration::from_millis(50))).is_err() {
                break;
            }
            self.reaped.clear();
        }
        if self.armed == 0 {
            inbox.quiesced = true;
        } else {
            tracing::warn!(
                armed = self.armed,
                "io_uring operations outlived shutdown; leaking their buffers"
            );
        }
    }

    /// Moves the reaped completions into `out` (emptied first).
    pub fn take_reaped(&mut self, out: &mut Vec<Reaped>) {
        out.clear();
        std::mem::swap(out, &mut self.reaped);
    }

    /// After handling `c`: re-arms a multishot operation the kernel ended, when it is still
    /// wanted. `fd` resolves a relay index to its socket, if it is still open.
    pub fn rearm(&mut self, c: &Reaped, fd: impl Fn(usize) -> Option<RawFd>) {
        if cqueue::more(c.flags) {
            return;
        }
        match kind_of(c.ud) {
            Kind::Registry => self.arm_registry(),
            Kind::Recv => {
                let relay = (c.ud & 0xffff_ffff) as usize;
                let generation = ((c.ud >> GEN_SHIFT) & GEN_MASK) as u32;
                // Out of buffers, or interrupted: arm again. Other errors would repeat.
                let retry =
                    c.res >= 0 || matches!(-c.res, libc::ENOBUFS | libc::EINTR | libc::EAGAIN);
                let wanted = self.watches.get(relay) == Some(&generation);
                if retry && wanted {
                    if let Some(fd) = fd(relay) {
                        self.arm_recv(relay, fd, generation);
                    }
                } else if wanted {
                    // Another error would only repeat: this relay stays deaf until it closes.
                    tracing::warn!(relay, errno = -c.res, "relay socket receive failed");
                }
            }
            Kind::Send | Kind::Cancel => {}
        }
    }

    fn arm_registry(&mut self) {
        self.armed += 1;
        let entry = opcode::PollAdd::new(types::Fd(self.registry_fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(Kind::Registry, 0, 0));
        self.push(entry);
    }

    fn arm_recv(&mut self, relay: usize, fd: RawFd, generation: u32) {
        self.armed += 1;
        let entry = opcode::RecvMsgMulti::new(types::Fd(fd), &*self.template, GROUP)
            .build()
            .user_data(user_data(Kind::Recv, generation, relay));
        self.push(entry);
    }

    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: every entry points at memory that outlives its operation (see the module doc).
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            // The submission queue is full: hand it to the kernel, then retry.
            if self.submit().is_err() {
                return;
            }
        }
    }

    fn reap(&mut self) {
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            match kind_of(ud) {
                Kind::Send => {
                    self.free_sends.push((ud & 0xffff_ffff) as usize);
                    continue;
                }
                Kind::Recv | Kind::Registry if !cqueue::more(cqe.flags()) => {
                    self.armed = self.armed.saturating_sub(1);
                }
                _ => {}
            }
            self.reaped.push(Reaped {
                ud,
                res: cqe.result(),
                flags: cqe.flags(),
            });
        }
    }
}

impl Inbox {
    fn new(template: libc::msghdr) -> io::Result<Inbox> {
        let layout = ring_layout();
        // SAFETY: the layout has a non-zero size.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut inbox = Inbox {
            entries,
            data: vec![0u8; usize::from(BUFFERS) * BUFFER_SIZE].into_boxed_slice(),
            tail: 0,
            template,
            quiesced: false,
        };
        for bid in 0..BUFFERS {
            inbox.add(BufferId(bid));
        }
        inbox.publish();
        Ok(inbox)
    }

    /// What completion `c` carries. Receive completions borrow their buffer until
    /// [`Inbox::recycle`].
    pub fn read(&self, c: &Reaped) -> Delivery<'_> {
        match kind_of(c.ud) {
            Kind::Registry => return Delivery::Registry,
            Kind::Send | Kind::Cancel => return Delivery::Nothing,
            Kind::Recv => {}
        }
        let Some(bid) = cqueue::buffer_select(c.flags) else {
            return Delivery::Nothing;
        };
        let buffer = BufferId(bid);
        if c.res < 0 || bid >= BUFFERS {
            return Delivery::Unusable { buffer };
        }
        let start = usize::from(bid) * BUFFER_SIZE;
        let len = (c.res as usize).min(BUFFER_SIZE);
        let buf = &self.data[start..start + len];
        let Ok(out) = types::RecvMsgOut::parse(buf, &self.template) else {
            return Delivery::Unusable { buffer };
        };
        // `out` borrows locally; re-slice the payload from the buffer itself.
        let payload = out.payload_data();
        let offset = payload.as_ptr() as usize - buf.as_ptr() as usize;
        let data = &buf[offset..offset + payload.len()];
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            return Delivery::Unusable { buffer };
        }
        // SAFETY: an all-zero sockaddr_storage is valid; the copy is bounded by both sizes.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let name = out.name_data();
        let n = name
            .len()
            .min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: `storage` has room for `n` bytes and does not overlap `name`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                name.as_ptr(),
                (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                n,
            );
        }
        match sockaddr_to(&storage, n as libc::socklen_t) {
            Some(from) => Delivery::Datagram {
                relay: (c.ud & 0xffff_ffff) as usize,
                data,
                from,
                buffer,
            },
            None => Delivery::Unusable { buffer },
        }
    }

    /// Hands a receive buffer back to the kernel.
    pub fn recycle(&mut self, buffer: BufferId) {
        self.add(buffer);
        self.publish();
    }

    fn add(&mut self, BufferId(bid): BufferId) {
        let slot = usize::from(self.tail & (BUFFERS - 1));
        // SAFETY: `slot` < BUFFERS, within the allocation; the kernel reads entries only up to
        // the published tail, and this one is past it until `publish`.
        let entry = unsafe { &mut *self.entries.add(slot) };
        let start = usize::from(bid) * BUFFER_SIZE;
        entry.set_addr(self.data[start..].as_ptr() as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&mut self) {
        // SAFETY: `entries` is the ring's first entry, whose last field is the shared tail; the
        // kernel reads it concurrently, hence the atomic release store.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast_mut();
            (*tail.cast::<std::sync::atomic::AtomicU16>())
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        if !self.quiesced {
            // The kernel may still write into these buffers: leak them (see the module doc).
            std::mem::forget(std::mem::take(&mut self.data));
            return;
        }
        // SAFETY: allocated in `new` with this layout; no operation refers to it any more.
        unsafe { std::alloc::dealloc(self.entries.cast(), ring_layout()) };
    }
}

fn ring_layout() -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(
        usize::from(BUFFERS) * std::mem::size_of::<types::BufRingEntry>(),
        4096,
    )
    .expect("constant layout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{net::UdpSocket, os::fd::AsRawFd};

    /// A ring and an epoll descriptor standing in for the `mio` registry. `None` where the
    /// kernel or the sandbox refuses io_uring (the driver falls back to epoll there): the test
    /// is then skipped, or fails under `CI=true` (see `testkit::prerequisite`).
    fn setup() -> Option<(Uring, Inbox, mio::Poll)> {
        let poll = mio::Poll::new().unwrap();
        match Uring::new(poll.as_raw_fd()) {
            Ok((uring, inbox)) => Some((uring, inbox, poll)),
            Err(e) => {
                // libtest names each test's thread after the test.
                let thread = std::thread::current();
                let test = thread.name().unwrap_or("an io_uring test");
                testkit::prerequisite(false, test, &format!("io_uring is not available here: {e}"));
                None
            }
        }
    }

    fn bound() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    /// Waits until `want` datagrams arrived, recycling buffers; returns (relay, payload, from).
    fn collect(
        uring: &mut Uring,
        inbox: &mut Inbox,
        want: usize,
    ) -> Vec<(usize, Vec<u8>, SocketAddr)> {
        let mut got = Vec::new();
        let mut reaped = Vec::new();
        for _ in 0..50 {
            uring.wait(Duration::from_millis(20)).unwrap();
            uring.take_reaped(&mut reaped);
            for c in &reaped {
                if let Delivery::Datagram {
                    relay,
                    data,
                    from,
                    buffer,
                } = inbox.read(c)
                {
                    got.push((relay, data.to_vec(), from));
                    inbox.recycle(buffer);
                }
                uring.rearm(c, |_| None);
            }
            if got.len() >= want {
                break;
            }
        }
        got
    }

    #[test]
    fn receives_every_datagram_from_every_watched_socket() {
        let Some((mut uring, mut inbox, _poll)) = setup() else {
            return;
        };
        let peer = bound();
        let relays: Vec<UdpSocket> = (0..3).map(|_| bound()).collect();
        for (i, r) in relays.iter().enumerate() {
            uring.watch(i, r.as_raw_fd());
        }
        for round in 0..3u8 {
            for (i, r) in relays.iter().enumerate() {
                peer.send_to(&[i as u8, round], r.local_addr().unwrap())
                    .unwrap();
            }
        }
        let mut got = collect(&mut uring, &mut inbox, 9);
        got.sort();
        let from = peer.local_addr().unwrap();
        let want: Vec<_> = (0..3usize)
            .flat_map(|i| (0..3u8).map(move |round| (i, vec![i as u8, round], from)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_receive_that_ran_out_of_buffers_resumes_once_they_are_back() {
        let Some((mut uring, mut inbox, _poll)) = setup() else {
            return;
        };
        let peer = bound();
        let relay = bound();
        socket2::SockRef::from(&relay)
            .set_recv_buffer_size(8 << 20)
            .unwrap();
        let burst = usize::from(BUFFERS) + 300;
        for i in 0..burst as u32 {
            peer.send_to(&i.to_be_bytes(), relay.local_addr().unwrap())
                .unwrap();
        }
        uring.watch(0, relay.as_raw_fd());
        let mut got = Vec::new();
        let mut held = Vec::new();
        let mut ran_out = false;
        let mut reaped = Vec::new();
        // Hold every buffer until the kernel has none left: the receive ends with ENOBUFS.
        for _ in 0..100 {
            uring.wait(Duration::from_millis(20)).unwrap();
            uring.take_reaped(&mut reaped);
            for c in &reaped {
                ran_out |= c.res == -libc::ENOBUFS;
                if let Delivery::Datagram { data, buffer, .. } = inbox.read(c) {
                    got.push(u32::from_be_bytes(data.try_into().unwrap()));
                    held.push(buffer);
                }
            }
            if ran_out {
                break;
            }
        }
        assert!(ran_out, "the receive ran out of buffers");
        assert_eq!(got.len(), usize::from(BUFFERS));
        // Handing the buffers back and re-arming picks up the rest, in order.
        for buffer in held {
            inbox.recycle(buffer);
        }
        for c in &reaped {
            uring.rearm(c, |_| Some(relay.as_raw_fd()));
        }
        for _ in 0..100 {
            uring.wait(Duration::from_millis(20)).unwrap();
            uring.take_reaped(&mut reaped);
            for c in &reaped {
                if let Delivery::Datagram { data, buffer, .. } = inbox.read(c) {
                    got.push(u32::from_be_bytes(data.try_into().unwrap()));
                    inbox.recycle(buffer);
                }
                uring.rearm(c, |_| Some(relay.as_raw_fd()));
            }
            if got.len() >= burst {
                break;
            }
        }
        assert_eq!(got, (0..burst as u32).collect::<Vec<_>>());
    }

    #[test]
    fn unwatched_sockets_deliver_nothing_and_close() {
        let Some((mut uring, mut inbox, _poll)) = setup() else {
            return;
        };
        let peer = bound();
        let relay = bound();
        let addr = relay.local_addr().unwrap();
        uring.watch(0, relay.as_raw_fd());
        uring.unwatch(0);
        drop(relay);
        uring.submit().unwrap();
        let _ = peer.send_to(b"late", addr);
        assert!(collect(&mut uring, &mut inbox, 1).is_empty());
        // The cancelled receive released the socket: its port can be bound again.
        assert!(UdpSocket::bind(addr).is_ok());
    }

    #[test]
    fn sends_leave_from_each_relay_socket() {
        let Some((mut uring, _inbox, _poll)) = setup() else {
            return;
        };
        let rx = bound();
        // Room for every datagram at once (the default buffer holds about 200 small ones).
        socket2::SockRef::from(&rx)
            .set_recv_buffer_size(4 << 20)
            .unwrap();
        let relays: Vec<UdpSocket> = (0..SEND_SLOTS + 10).map(|_| bound()).collect();
        for (i, r) in relays.iter().enumerate() {
            assert!(uring.send(
                r.as_raw_fd(),
                &(i as u32).to_be_bytes(),
                rx.local_addr().unwrap()
            ));
        }
        uring.submit().unwrap();
        let mut seen = vec![false; relays.len()];
        let mut buf = [0u8; 16];
        while let Ok((n, from)) = rx.recv_from(&mut buf) {
            assert_eq!(n, 4);
            let i = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            assert_eq!(
                from,
                relays[i].local_addr().unwrap(),
                "sent from its own socket"
            );
            seen[i] = true;
        }
        let missing: Vec<usize> = (0..seen.len()).filter(|&i| !seen[i]).collect();
        assert!(
            missing.is_empty(),
            "more sends than slots all went out; missing {missing:?}"
        );
    }

    #[test]
    fn close_waits_until_the_kernel_lets_go_of_the_buffers() {
        let Some((mut uring, mut inbox, _poll)) = setup() else {
            return;
        };
        let relays: Vec<UdpSocket> = (0..4).map(|_| bound()).collect();
        for (i, r) in relays.iter().enumerate() {
            uring.watch(i, r.as_raw_fd());
        }
        uring.submit().unwrap();
        assert_eq!(uring.armed, 5, "four receives and the registry poll");
        uring.close(&mut inbox, Duration::from_secs(2));
        assert_eq!(uring.armed, 0);
        assert!(inbox.quiesced, "buffers may be freed");
    }

    #[test]
    fn registry_readiness_wakes_the_ring() {
        let Some((mut uring, _inbox, poll)) = setup() else {
            return;
        };
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        waker.wake().unwrap();
        let mut reaped = Vec::new();
        let mut woke = false;
        for _ in 0..50 {
            uring.wait(Duration::from_millis(20)).unwrap();
            uring.take_reaped(&mut reaped);
            woke |= reaped.iter().any(|c| _inbox.read(c) == Delivery::Registry);
            if woke {
                break;
            }
        }
        assert!(woke);
    }
}
