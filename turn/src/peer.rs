//! Which peers an allocation may talk to.
//!
//! A TURN relay is an open proxy for anyone holding a credential, so by default it refuses peers
//! that would let a client reach the operator's own network or cloud metadata service: loopback,
//! RFC 1918, CGNAT, link-local (169.254.169.254), multicast, ULA, unspecified, documentation and
//! reserved ranges, and the server's own addresses. Addresses that embed an IPv4 address
//! (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64) are normalised to it first, so
//! `[::ffff:127.0.0.1]` or `[64:ff9b::a00:1]` cannot bypass the IPv4 rules.
//!
//! Order of checks: `denied_peer_ranges` refuses; then `allowed_peer_ranges` allows; then the
//! built-in list and own addresses refuse; anything else is allowed.

use std::{
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

/// A CIDR range such as `10.0.0.0/8` or `fd00::/8`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// A range from a network address and prefix length; `None` if the prefix is too long.
    pub fn new(net: IpAddr, prefix: u8) -> Option<IpRange> {
        let max = if net.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpRange { net, prefix })
    }

    /// Whether `ip` (already normalised) falls in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("bad IP in range {s:?}"))?;
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| format!("bad prefix in {s:?}"))?,
            None if ip.is_ipv4() => 32,
            None => 128,
        };
        IpRange::new(ip, prefix).ok_or_else(|| format!("prefix too long in {s:?}"))
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Why a peer was refused; the label of `chorus_turn_peer_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// In `denied_peer_ranges`.
    DeniedRange,
    /// In the built-in list of non-public ranges.
    NotPublic,
    /// One of the server's own addresses.
    OwnAddress,
}

impl Refusal {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::DeniedRange => "denied_range",
            Refusal::NotPublic => "not_public",
            Refusal::OwnAddress => "own_address",
        }
    }
}

/// The peer filter of one server. Immutable after construction; shared by all workers.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    allowed: Vec<IpRange>,
    denied: Vec<IpRange>,
    own: Vec<IpAddr>,
}

impl PeerPolicy {
    /// Builds the policy from the operator's ranges and the server's own (listen, relay,
    /// external) addresses.
    pub fn new(allowed: &[IpRange], denied: &[IpRange], own: &[IpAddr]) -> PeerPolicy {
        PeerPolicy {
            allowed: allowed.to_vec(),
            denied: denied.to_vec(),
            own: own
                .iter()
                .map(|ip| normalise(*ip))
                .filter(|ip| !ip.is_unspecified())
                .collect(),
        }
    }

    /// Decides about `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = normalise(ip);
        if self.denied.iter().any(|r| r.contains(ip)) {
            return Err(Refusal::DeniedRange);
        }
        if self.allowed.iter().any(|r| r.contains(ip)) {
            return Ok(());
        }
        if self.own.contains(&ip) {
            return Err(Refusal::OwnAddress);
        }
        if !is_public(ip) {
            return Err(Refusal::NotPublic);
        }
        Ok(())
    }
}

/// Maps addresses that embed an IPv4 address to that address: IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, 6to4 `2002:AABB:CCDD::/48`, Teredo `2001::/32` (the obfuscated
/// client address) and NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`. Other addresses are returned
/// unchanged.
pub fn normalise(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let b = v6.octets();
    let seg = v6.segments();
    let last32 = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    // IPv4-compatible (deprecated), but not :: and ::1 which are their own ranges.
    if seg[..6] == [0; 6] && u32::from(last32) > 1 {
        return IpAddr::V4(last32);
    }
    if seg[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::new(b[2], b[3], b[4], b[5]));
    }
    if seg[0] == 0x2001 && seg[1] == 0 {
        return IpAddr::V4(Ipv4Addr::from(!u32::from(last32)));
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1)
    {
        return IpAddr::V4(last32);
    }
    ip
}

/// Built-in refusals (IANA special-purpose registries), applied after normalisation.
const NOT_PUBLIC_V4: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10/8 RFC 1918
    (0x6440_0000, 10), // 100.64/10 CGNAT
    (0x7f00_0000, 8),  // loopback
    (0xa9fe_0000, 16), // 169.254/16 link-local, incl. cloud metadata 169.254.169.254
    (0xac10_0000, 12), // 172.16/12 RFC 1918
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 TEST-NET-1
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast
    (0xc0a8_0000, 16), // 192.168/16 RFC 1918
    (0xc612_0000, 15), // 198.18/15 benchmarking
    (0xc633_6400, 24), // 198.51.100/24 TEST-NET-2
    (0xcb00_7100, 24), // 203.0.113/24 TEST-NET-3
    (0xe000_0000, 4),  // 224/4 multicast
    (0xf000_0000, 4),  // 240/4 reserved, incl. broadcast
];

const NOT_PUBLIC_V6: &[(u128, u8)] = &[
    (0, 128),                          // ::
    (1, 128),                          // ::1
    (0x0100_0000_0000_0000 << 64, 64), // 100::/64 discard
    (0x2001_0000 << 96, 23),           // 2001::/23 IETF protocol assignments
    (0x2001_0db8 << 96, 32),           // 2001:db8::/32 documentation
    (0x3fff << 112, 20),               // 3fff::/20 documentation
    (0xfc00 << 112, 7),                // fc00::/7 ULA
    (0xfe80 << 112, 10),               // fe80::/10 link-local
    (0xfec0 << 112, 10),               // fec0::/10 site-local (deprecated)
    (0xff00 << 112, 8),                // ff00::/8 multicast
];

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let a = u32::from(v4);
            !NOT_PUBLIC_V4
                .iter()
                .any(|&(net, p)| a >> (32 - p) == net >> (32 - p))
        }
        IpAddr::V6(v6) => {
            let a = u128::from(v6);
            !NOT_PUBLIC_V6.iter().any(|&(net, p)| {
                let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                a & mask == net & mask
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        PeerPolicy::new(&[], &[], &[])
            .check(ip.parse().unwrap())
            .is_err()
    }

    #[test]
    fn default_policy_refuses_non_public_peers() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "2002:7f00:0001::1",
            "2002:a9fe:a9fe::",
            "64:ff9b::a00:1",
            "64:ff9b:1::a9fe:a9fe",
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo client 127.0.0.1
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn default_policy_allows_public_peers() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(!refused(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn allowed_and_denied_ranges_and_own_addresses() {
        let p = PeerPolicy::new(
            &[
                "127.0.0.0/8".parse().unwrap(),
                "8.8.0.0/16".parse().unwrap(),
            ],
            &["8.8.8.0/24".parse().unwrap()],
            &["1.2.3.4".parse().unwrap()],
        );
        assert_eq!(p.check("127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(p.check("::ffff:127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(
            p.check("8.8.8.8".parse().unwrap()),
            Err(Refusal::DeniedRange)
        );
        assert_eq!(
            p.check("1.2.3.4".parse().unwrap()),
            Err(Refusal::OwnAddress)
        );
        assert_eq!(
            p.check("10.0.0.1".parse().unwrap()),
            Err(Refusal::NotPublic)
        );
    }

    #[test]
    fn range_parsing() {
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("nonsense".parse::<IpRange>().is_err());
        let r: IpRange = "fd00::/8".parse().unwrap();
        assert!(r.contains("fd12::1".parse().unwrap()));
        assert!(!r.contains("10.0.0.1".parse().unwrap()));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
    }
}
