//! Binding sockets: `SO_REUSEPORT` listeners (one per worker on Linux) and relay sockets.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    Error,
    core::{DontFragment, Parity},
};

/// Kernel buffer asked for on client-facing UDP sockets, so bursts from many clients are queued
/// rather than dropped while a worker is busy.
const UDP_BUFFER: usize = 4 << 20;

/// Kernel receive buffer asked for on relay sockets.
const RELAY_BUFFER: usize = 1 << 20;

/// Whether several sockets share one address (`SO_REUSEPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// One socket per worker, the kernel spreads clients by 4-tuple hash.
    ReusePort,
    /// A single socket.
    Exclusive,
}

/// Binds `count` UDP sockets on `addr`; when `addr` has port 0 the group gets a port no other
/// socket holds.
///
/// Why not let the first `SO_REUSEPORT` socket pick the port: Linux's UDP autobind counts a port
/// held by another `SO_REUSEPORT` socket of the same user as free, so the new socket can join a
/// stranger's group (another Chorus on the host, or a parallel test), and the kernel then hashes
/// clients across both servers. TCP's autobind avoids such ports; UDP's does not. So a port is
/// first reserved by a plain socket, released, and the group bound to it; another process that
/// takes it in between makes the bind fail with `EADDRINUSE`, and a new port is tried.
pub fn udp_group(
    addr: SocketAddr,
    count: usize,
    sharing: Sharing,
) -> Result<Vec<std::net::UdpSocket>, Error> {
    if addr.port() != 0 || sharing == Sharing::Exclusive {
        return udp_group_at(addr, count, sharing);
    }
    let mut tries = 0;
    loop {
        let free = unshared_udp_port(addr).map_err(|e| bind_err(addr, e))?;
        match udp_group_at(free, count, sharing) {
            Err(Error::Bind { source, .. })
                if source.kind() == io::ErrorKind::AddrInUse && tries < PORT_RACE_TRIES =>
            {
                tries += 1;
            }
            bound => return bound,
        }
    }
}

/// Times a port-0 group is bound again after another process took its reserved port.
const PORT_RACE_TRIES: usize = 8;

/// `addr` with a port the kernel gave a socket without `SO_REUSEPORT`, so no other socket held
/// it at that moment.
fn unshared_udp_port(addr: SocketAddr) -> io::Result<SocketAddr> {
    let probe = new_socket(addr, Type::DGRAM, Protocol::UDP, Sharing::Exclusive)?;
    probe.bind(&addr.into())?;
    local(&probe)
}

fn udp_group_at(
    addr: SocketAddr,
    count: usize,
    sharing: Sharing,
) -> Result<Vec<std::net::UdpSocket>, Error> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let s =
            new_socket(addr, Type::DGRAM, Protocol::UDP, sharing).map_err(|e| bind_err(addr, e))?;
        datagram::request_buffers_or_warn(&s, UDP_BUFFER, "TURN", addr);
        s.bind(&addr.into()).map_err(|e| bind_err(addr, e))?;
        addr = local(&s).map_err(|e| bind_err(addr, e))?;
        out.push(s.into());
    }
    Ok(out)
}

/// Binds and listens on `count` TCP sockets on `addr` (port 0 handled as for UDP).
pub fn tcp_group(
    addr: SocketAddr,
    count: usize,
    sharing: Sharing,
) -> Result<Vec<std::net::TcpListener>, Error> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let s = new_socket(addr, Type::STREAM, Protocol::TCP, sharing)
            .map_err(|e| bind_err(addr, e))?;
        s.set_reuse_address(true).map_err(|e| bind_err(addr, e))?;
        s.bind(&addr.into()).map_err(|e| bind_err(addr, e))?;
        s.listen(1024).map_err(|e| bind_err(addr, e))?;
        addr = local(&s).map_err(|e| bind_err(addr, e))?;
        out.push(s.into());
    }
    Ok(out)
}

/// Opens a relay socket on `ip` with a port from `ports` (even if asked), trying ports from a
/// random start.
pub fn relay(
    ip: IpAddr,
    ports: &RangeInclusive<u16>,
    parity: Parity,
    df: DontFragment,
) -> Option<mio::net::UdpSocket> {
    let (lo, hi) = (u32::from(*ports.start()), u32::from(*ports.end()));
    let span = hi - lo + 1;
    let start = rand::random::<u32>() % span;
    // Bounded tries: a nearly full range answers 508 rather than scanning 16k ports per request.
    for i in 0..span.min(64) {
        let mut port = (lo + (start + i * 7919) % span) as u16;
        if parity == Parity::Even {
            port &= !1;
            if port < *ports.start() {
                port += 2;
            }
        }
        let addr = SocketAddr::new(ip, port);
        let Ok(s) = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)) else {
            return None;
        };
        if s.bind(&addr.into()).is_err() {
            continue;
        }
        if s.set_nonblocking(true).is_err() {
            return None;
        }
        // Room for a burst from the peer while the worker is descheduled (capped by rmem_max).
        let _ = s.set_recv_buffer_size(RELAY_BUFFER);
        if df == DontFragment::Set {
            set_dont_fragment(&s, ip);
        }
        let std: std::net::UdpSocket = s.into();
        return Some(mio::net::UdpSocket::from_std(std));
    }
    None
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol, sharing: Sharing) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    #[cfg(all(
        unix,
        not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
    ))]
    if sharing == Sharing::ReusePort {
        s.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = sharing;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn local(s: &Socket) -> io::Result<SocketAddr> {
    s.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP socket"))
}

fn bind_err(addr: SocketAddr, source: io::Error) -> Error {
    Error::Bind { addr, source }
}

#[cfg(target_os = "linux")]
fn set_dont_fragment(s: &Socket, ip: IpAddr) {
    use std::os::fd::AsRawFd;
    let (level, name, value) = match ip {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        ),
    };
    // SAFETY: valid fd owned by `s`; the option value is a c_int as the kernel expects.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn set_dont_fragment(_s: &Socket, _ip: IpAddr) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// In a network namespace whose ephemeral range is four ports, two of them held by a
    /// stranger's `SO_REUSEPORT` sockets, a port-0 group must always land on the other two.
    /// Letting the kernel autobind a `SO_REUSEPORT` socket picks a held port about half the time.
    #[test]
    fn a_port_zero_group_never_joins_a_strangers_reuseport_port() {
        // Namespaces belong to a thread: a thread of its own keeps the test harness's out of it.
        std::thread::spawn(|| {
            // SAFETY: unshare only changes this thread's namespace membership.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET) needs root (CAP_SYS_ADMIN): {}",
                io::Error::last_os_error()
            );
            std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "40000 40003")
                .expect("narrow this namespace's ephemeral ports");
            let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
            let stranger: Vec<Socket> = [40000u16, 40001]
                .iter()
                .map(|&port| {
                    let addr = SocketAddr::new(any.ip(), port);
                    let s =
                        new_socket(addr, Type::DGRAM, Protocol::UDP, Sharing::ReusePort).unwrap();
                    s.bind(&addr.into()).unwrap();
                    s
                })
                .collect();
            for round in 0..40 {
                let group = udp_group(any, 2, Sharing::ReusePort).expect("bind a group");
                let ports: Vec<u16> = group
                    .iter()
                    .map(|s| s.local_addr().unwrap().port())
                    .collect();
                assert_eq!(ports[0], ports[1], "round {round}: one group, one port");
                assert!(
                    ports[0] >= 40002,
                    "round {round}: joined the stranger's port {}",
                    ports[0]
                );
            }
            drop(stranger);
        })
        .join()
        .unwrap();
    }
}
