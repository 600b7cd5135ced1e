//! Settings of the SFU. The lead maps the `sfu.*` section of the Chorus config onto these.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// How the SFU listens, what it advertises and how much it accepts.
///
/// `Settings::default()` is the production default from issue 3; tests override the listen
/// addresses with `127.0.0.1:0` and set `public_ips` to `[127.0.0.1]`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// UDP address of the first media worker. Default `0.0.0.0:7882`. Worker `i` listens on
    /// the port after it plus `i` (7882, 7883, … for the default), and the participants it
    /// holds are given that port in their candidates. Port 0 gives every worker a free port of
    /// its own.
    pub udp_listen: SocketAddr,
    /// Media worker threads, each holding its own rooms. 0 (the default): one per core the
    /// process may use.
    pub workers: usize,
    /// ICE-TCP (passive, RFC 4571 framing) listen address. Default `0.0.0.0:7882`.
    /// `None` disables ICE-TCP and no TCP candidate is advertised.
    pub tcp_listen: Option<SocketAddr>,
    /// Addresses put into the host candidates of every answer/offer. Empty means
    /// auto-detect with [`detect_public_ips`]. Tests and NATed deployments set this
    /// explicitly (for example the public IP of a 1:1 NAT).
    pub public_ips: Vec<IpAddr>,
    /// Which transports get candidates. Default both (when `tcp_listen` is set).
    pub candidates: CandidateTransports,
    /// A participant that has not sent a single packet for this long (ICE never
    /// connected, or the peer vanished) is removed with
    /// [`crate::SfuEvent::ParticipantFailed`]. Default 15 s.
    pub ice_timeout: Duration,
    /// Minimum spacing of keyframe requests (PLI/FIR) sent to a publisher per track.
    /// Default 500 ms. Requests inside the window are coalesced, not lost.
    pub keyframe_request_interval: Duration,
    /// Whether a participant automatically subscribes to every other participant's tracks.
    pub auto_subscribe: AutoSubscribe,
    /// Caps on what clients can create.
    pub limits: Limits,
    /// Whether subscribers' downlinks are estimated and layers fitted into them.
    pub congestion_control: CongestionControl,
    /// How long the video packets sent to a subscriber are kept to answer its NACKs. Default
    /// 1 s. Each entry is str0m's packet record (a few hundred bytes; the payload is shared),
    /// per subscriber and stream, so this is the largest per-subscriber memory knob.
    pub nack_history: Duration,
    /// Size, rate and buffer limits of data channel messages.
    pub data: DataLimits,
}

/// Whether the SFU estimates each subscriber's downlink (str0m's TWCC estimator) and fits
/// the simulcast layers it receives into the estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CongestionControl {
    /// Estimate and fit (the default).
    Enabled,
    /// Every subscriber gets the layers it asks for.
    Disabled,
}

/// Which ICE transports are advertised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CandidateTransports {
    /// UDP, plus TCP when `tcp_listen` is set.
    UdpAndTcp,
    /// Only UDP candidates.
    UdpOnly,
    /// Only TCP candidates (needs `tcp_listen`); for testing ICE-TCP.
    TcpOnly,
}

/// Default subscription policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoSubscribe {
    /// Everyone receives every other participant's tracks (issue 3 default).
    All,
    /// Nothing until [`crate::SfuHandle::subscribe`].
    None,
}

/// Limits on what a client can make the SFU hold. Exceeding one is a typed
/// [`crate::Error`], never a panic.
#[derive(Clone, Debug)]
pub struct Limits {
    /// m-lines in one client offer. A re-offer repeats every m-line the server added, so
    /// this must cover `participants × tracks`; default 256.
    pub max_mlines_per_offer: usize,
    /// Tracks one participant may publish (camera, mic, screen, screen audio…); default 8.
    pub max_tracks_per_participant: usize,
    /// Participants in one room; default 100.
    pub max_participants_per_room: usize,
    /// Rooms held at once by this SFU; default 10 000.
    pub max_rooms: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_mlines_per_offer: 256,
            max_tracks_per_participant: 8,
            max_participants_per_room: 100,
            max_rooms: 10_000,
        }
    }
}

/// Limits on data channel messages (see `core::data`). A message over a limit is dropped and
/// its sender told ([`crate::SfuEvent::DataRefused`]); other participants never notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataLimits {
    /// Largest message payload a participant may send, in bytes; default 16 384 (what every
    /// browser can send and receive, and what the relay envelope still fits in next to).
    pub max_message_bytes: usize,
    /// Messages per second one participant may send, over both channels; the bucket holds one
    /// second's worth, so this is also the burst. Default 50.
    pub messages_per_second: u32,
    /// Payload bytes per second one participant may send, over both channels; also the burst.
    /// Default 65 536.
    pub bytes_per_second: u32,
    /// Bytes str0m may hold unsent for one receiver (its SCTP send buffer, both channels).
    /// A lossy message is dropped for a receiver that already holds half of this; a reliable one
    /// when it does not fit at all. Default 262 144.
    pub max_buffered_bytes: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024,
            messages_per_second: 50,
            bytes_per_second: 64 * 1024,
            max_buffered_bytes: 256 * 1024,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            udp_listen: SocketAddr::from(([0, 0, 0, 0], 7882)),
            workers: 0,
            tcp_listen: Some(SocketAddr::from(([0, 0, 0, 0], 7882))),
            public_ips: Vec::new(),
            candidates: CandidateTransports::UdpAndTcp,
            ice_timeout: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(500),
            auto_subscribe: AutoSubscribe::All,
            limits: Limits::default(),
            congestion_control: CongestionControl::Enabled,
            nack_history: Duration::from_secs(1),
            data: DataLimits::default(),
        }
    }
}

impl Settings {
    /// How many media workers start: [`Settings::workers`], or one per core for 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The UDP address worker `index` binds (see [`Settings::udp_listen`]); `None` when the
    /// port range would pass 65535.
    pub fn worker_udp_listen(&self, index: usize) -> Option<SocketAddr> {
        let mut addr = self.udp_listen;
        if addr.port() != 0 {
            let port = u16::try_from(usize::from(addr.port()) + index).ok()?;
            addr.set_port(port);
        }
        Some(addr)
    }

    /// Settings for tests: ephemeral ports on 127.0.0.1, advertising only 127.0.0.1.
    pub fn loopback() -> Self {
        Self {
            udp_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tcp_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            public_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            ..Self::default()
        }
    }
}

/// Best-effort guess of the address peers can reach: the source address the kernel would
/// use for a route to the internet (a UDP `connect`, which sends nothing), falling back to
/// 127.0.0.1 on a machine without a default route. Behind NAT set `public_ips` instead.
pub fn detect_public_ips() -> Vec<IpAddr> {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind(("0.0.0.0", 0))?;
        // 192.0.2.1 is TEST-NET-1: routing decides the source address, no packet is sent.
        socket.connect(("192.0.2.1", 9))?;
        Ok(socket.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => vec![ip],
        _ => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    }
}

/// What the token allows this participant to do. Enforced by the SFU on every
/// publish and subscribe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grants {
    /// May send media. Without it the participant's incoming m-lines are accepted (so
    /// the browser does not fail) but nothing it sends is published or forwarded.
    pub can_publish: bool,
    /// May receive media. Without it no subscription is ever created for it, and no data
    /// channel message is relayed to it.
    pub can_subscribe: bool,
    /// May send data channel messages (`canPublishData`, default true as LiveKit's). Without
    /// it the participant's channels still open, and receive, but each message it sends is
    /// refused with [`crate::SfuEvent::DataRefused`].
    pub can_publish_data: bool,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            can_publish: true,
            can_subscribe: true,
            can_publish_data: true,
        }
    }
}
