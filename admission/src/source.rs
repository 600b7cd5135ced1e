//! [`SourceLimiter`]: connections held at once per source, counted at accept.
//!
//! Lifecycle: [`SourceLimiter::admit`] returns a [`SourcePermit`] that holds one slot of the
//! connection's source; the permit lives as long as the connection (moved into whatever owns
//! the socket, through an upgrade to WebSocket too), and dropping it frees the slot. Clones of
//! a limiter share the counts, so several threads accepting on one port share one cap.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// What one cap counts: an IPv4 address, or an IPv6 /64.
///
/// Why a /64: one IPv6 subscriber (a home, a phone, a cloud VM) is routed a whole /64 and can
/// connect from as many of its addresses as it likes, so counting single IPv6 addresses would
/// cap nothing. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket
/// reports for IPv4 clients) count as the IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source `ip` counts against.
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Source(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A cap on connections per [`Source`]; see the module docs.
#[derive(Clone, Debug)]
pub struct SourceLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    per_source: u32,
    held: Mutex<HashMap<Source, u32>>,
}

/// The source already holds as many connections as the cap allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverCap(pub Source);

/// One held connection slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SourcePermit {
    inner: Arc<Inner>,
    source: Source,
}

impl SourceLimiter {
    /// A limiter allowing `per_source` connections from each source at once.
    pub fn new(per_source: u32) -> SourceLimiter {
        SourceLimiter {
            inner: Arc::new(Inner {
                per_source,
                held: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes a slot for a connection from `ip`, or refuses when its source is at the cap.
    pub fn admit(&self, ip: IpAddr) -> Result<SourcePermit, OverCap> {
        let source = Source::of(ip);
        let mut held = self.inner.lock();
        let count = held.entry(source).or_insert(0);
        if *count >= self.inner.per_source {
            return Err(OverCap(source));
        }
        *count += 1;
        Ok(SourcePermit {
            inner: self.inner.clone(),
            source,
        })
    }

    /// Connections held now from the source of `ip`.
    pub fn held(&self, ip: IpAddr) -> u32 {
        self.inner.lock().get(&Source::of(ip)).copied().unwrap_or(0)
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, u32>> {
        // The map is updated in single statements: a panic elsewhere cannot leave it torn.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        let mut held = self.inner.lock();
        if let Some(count) = held.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                // Sources with nothing open take no memory: the map cannot grow with every
                // address that ever connected.
                held.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_each_source_and_frees_the_slot_when_the_permit_drops() {
        let limiter = SourceLimiter::new(2);
        let a = limiter.admit(ip("10.0.0.1")).unwrap();
        let _b = limiter.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limiter.admit(ip("10.0.0.1")).unwrap_err(),
            OverCap(Source::of(ip("10.0.0.1")))
        );
        // Another source is not affected.
        let _c = limiter.admit(ip("10.0.0.2")).unwrap();
        drop(a);
        assert_eq!(limiter.held(ip("10.0.0.1")), 1);
        let _d = limiter.admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn an_ipv6_64_is_one_source_and_mapped_ipv4_is_the_ipv4_address() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")),
            Source::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.7")),
            Source::of(ip("192.0.2.7"))
        );
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        let limiter = SourceLimiter::new(1);
        let _held = limiter.admit(ip("2001:db8::1")).unwrap();
        assert!(limiter.admit(ip("2001:db8::2")).is_err());
    }

    #[test]
    fn nothing_is_kept_for_sources_with_no_connection() {
        let limiter = SourceLimiter::new(3);
        for i in 0..1000u32 {
            let permit = limiter.admit(IpAddr::from(i.to_be_bytes())).unwrap();
            drop(permit);
        }
        assert!(limiter.inner.lock().is_empty());
    }

    #[test]
    fn clones_share_one_cap_across_threads() {
        let limiter = SourceLimiter::new(50);
        let permits: Vec<_> = (0..4)
            .map(|_| {
                let l = limiter.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter_map(|_| l.admit(ip("192.0.2.1")).ok())
                        .collect::<Vec<_>>()
                })
            })
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(permits.len(), 50);
        assert_eq!(limiter.held(ip("192.0.2.1")), 50);
    }
}
