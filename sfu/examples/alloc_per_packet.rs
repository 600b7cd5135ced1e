//! Heap allocations per forwarded packet in steady state (issue 13, item 1).
//!
//! The same room as the fan-out benchmark (`fanout.rs`: one publisher, N receive-only
//! subscribers), but driven through the sans-IO [`sfu::core::Core`] in memory under
//! simulated time, so that every allocation the SFU makes happens on this thread inside a
//! known call and can be counted exactly. The publisher sends a three-layer VP8 simulcast
//! camera (RFC 7741 descriptors with picture id, TL0PICIDX and TID, as browsers send them)
//! and Opus at 50 packets/s with an audio level; every subscriber is moved down to the
//! quarter layer and back to the full one before the measurement, so that its picture ids
//! and TL0PICIDX are rewritten from then on (the case that used to copy each payload).
//!
//! A counting global allocator counts calls to `alloc`/`alloc_zeroed`/`realloc` and their
//! bytes, only while the core is working: inside `Core::handle_receive` (a packet in, its
//! forwarding, the subscribers' `Rtc`s serializing and encrypting it) and, separately,
//! inside `Core::handle_timeout` (timers: RTCP, stats, estimator, layer allocation, and the
//! packets str0m's pacer held back until then). The clients' own work is outside the
//! counted calls.
//!
//! With `--sites`, every counted allocation also captures a backtrace, attributed to the
//! innermost frame whose source is the SFU's (`sfu/src`) or str0m's (str0m and its
//! `str0m-aws-lc-rs` crypto crate): where each allocation comes from, and whose it is. It
//! needs the line tables of the dev profile, and is slow: measure a few seconds.
//!
//! ```text
//! cargo run [--release] --example alloc_per_packet -- [subscribers] [seconds] [--no-cc]
//! cargo run --example alloc_per_packet -- 10 2 --sites
//! ```
//!
//! `--no-cc` turns congestion control off (no estimator, no padding; the clients' TWCC
//! feedback is still parsed), as `[sfu] congestion_control = false` does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sfu::core::{Core, CoreConfig};
use sfu::metrics::Metrics;
use sfu::{
    AutoSubscribe, CongestionControl, DataLimits, Limits, ParticipantKey, RoomKey, SfuEvent,
    TrackId, TrackKind, Wanted,
};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};

// ---------------------------------------------------------------------------------------
// Counting allocator.

/// What the core is doing while an allocation is counted.
#[derive(Clone, Copy)]
enum Phase {
    /// `Core::handle_receive`: packets in, forwarding, serializing.
    Receive = 0,
    /// `Core::handle_timeout`: timers.
    Timeout = 1,
}

/// Counting is on, and in which phase (`NONE` when off).
static ARMED: AtomicU64 = AtomicU64::new(NONE);
const NONE: u64 = u64::MAX;
static SITES: AtomicBool = AtomicBool::new(false);
static COUNTS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static BYTES: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// Site → (allocations, bytes), with `--sites`.
static SITE_TABLE: Mutex<Option<HashMap<String, (u64, u64)>>> = Mutex::new(None);

thread_local! {
    /// Inside the allocator's own bookkeeping (a backtrace allocates): not counted.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

impl Counting {
    fn record(size: usize) {
        let phase = ARMED.load(Ordering::Relaxed);
        if phase == NONE || BUSY.with(Cell::get) {
            return;
        }
        COUNTS[phase as usize].fetch_add(1, Ordering::Relaxed);
        BYTES[phase as usize].fetch_add(size as u64, Ordering::Relaxed);
        if SITES.load(Ordering::Relaxed) {
            BUSY.with(|b| b.set(true));
            let site = site_of(&std::backtrace::Backtrace::force_capture().to_string());
            let mut table = SITE_TABLE.lock().unwrap_or_else(|e| e.into_inner());
            let entry = table
                .get_or_insert_with(HashMap::new)
                .entry(site)
                .or_default();
            entry.0 += 1;
            entry.1 += size as u64;
            drop(table);
            BUSY.with(|b| b.set(false));
        }
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; the counting only
// touches atomics, a const thread-local without destructor and (with `--sites`, guarded by
// `BUSY` against recursion) a mutex-protected table.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::record(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Where an allocation comes from: the innermost frame of a formatted backtrace that is in
/// the SFU's sources or in str0m's, as "owner function (file:line)", and for str0m's the
/// SFU frame that called into str0m. Frames inlined from str0m (built with `opt-level = 1`)
/// carry only a short function name, so the owner comes from the file.
fn site_of(backtrace: &str) -> String {
    let mut symbol = "";
    let mut site = None;
    for line in backtrace.lines().map(str::trim_start) {
        let Some(file) = line.strip_prefix("at ") else {
            if let Some((_, s)) = line.split_once(": ") {
                symbol = s;
            }
            continue;
        };
        let short = file.rsplit_once("/src/").map_or(file, |(_, f)| f);
        if file.contains("/sfu/src/") {
            return match site {
                None => format!("ours  {symbol} ({short})"),
                Some(inner) => format!("{inner} <- {symbol} ({short})"),
            };
        }
        if site.is_none() && file.contains("/str0m-") {
            site = Some(format!("str0m {symbol} ({short})"));
        }
    }
    site.unwrap_or_else(|| "other".to_string())
}

fn counted<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    ARMED.store(phase as u64, Ordering::Relaxed);
    let r = f();
    ARMED.store(NONE, Ordering::Relaxed);
    r
}

// ---------------------------------------------------------------------------------------
// The room, in memory.

const SERVER: ([u8; 4], u16) = ([127, 0, 0, 1], 7882);
const RIDS: [&str; 3] = ["q", "h", "f"];
const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];
/// Packets per frame per layer, of `VIDEO_PAYLOAD` bytes: about 0.25, 0.5 and 1.25 Mbit/s
/// at 30 fps.
const PACKETS_PER_FRAME: [usize; 3] = [1, 2, 5];
const VIDEO_PAYLOAD: usize = 1040;
const AUDIO_PAYLOAD: usize = 80;
const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);

struct Client {
    key: ParticipantKey,
    rtc: Rtc,
    addr: SocketAddr,
    keyframe_rids: Vec<Option<Rid>>,
    received: u64,
}

struct World {
    now: Instant,
    core: Core,
    clients: Vec<Client>,
    events: Vec<SfuEvent>,
    wire: Vec<(SocketAddr, Vec<u8>)>,
}

fn room() -> RoomKey {
    RoomKey::new("bench")
}

impl World {
    fn new(
        subscribers: usize,
        congestion_control: CongestionControl,
        registry: &prometheus::Registry,
    ) -> Self {
        let config = CoreConfig {
            candidates: vec![Candidate::host(SERVER.into(), "udp").expect("candidate")],
            ice_timeout: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(500),
            auto_subscribe: AutoSubscribe::All,
            limits: Limits {
                max_participants_per_room: subscribers + 1,
                ..Limits::default()
            },
            congestion_control,
            nack_history: Duration::from_secs(1),
            data: DataLimits::default(),
        };
        World {
            now: Instant::now(),
            core: Core::new(config, Metrics::register(registry).expect("metrics")),
            clients: Vec::new(),
            events: Vec::new(),
            wire: Vec::new(),
        }
    }

    fn join(&mut self, name: &str) -> usize {
        let i = self.clients.len();
        let addr = SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16));
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        self.core
            .join(
                self.now,
                room(),
                ParticipantKey::new(i as u64, name),
                Default::default(),
                self.now,
            )
            .expect("join");
        self.clients.push(Client {
            key: ParticipantKey::new(i as u64, name),
            rtc,
            addr,
            keyframe_rids: Vec::new(),
            received: 0,
        });
        i
    }

    /// Client `i` offers what `add` adds, and takes the answer and any server offer.
    fn offer(
        &mut self,
        i: usize,
        add: impl FnOnce(&mut str0m::change::SdpApi) -> Vec<Mid>,
    ) -> Vec<Mid> {
        let mut change = self.clients[i].rtc.sdp_api();
        let mids = add(&mut change);
        let (offer, pending) = change.apply().expect("offer");
        let key = self.clients[i].key.clone();
        let reply = self
            .core
            .offer(self.now, &room(), &key, &offer.to_sdp_string(), &[])
            .expect("core takes the offer");
        let answer = SdpAnswer::from_sdp_string(&reply.answer).expect("answer");
        self.clients[i]
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("accept");
        self.flush(i);
        if let Some(o) = reply.server_offer {
            self.accept_server_offer(i, &o.sdp);
        }
        mids
    }

    fn accept_server_offer(&mut self, i: usize, sdp: &str) {
        let offer = SdpOffer::from_sdp_string(sdp).expect("server offer");
        let answer = self.clients[i]
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("accept offer");
        self.flush(i);
        let key = self.clients[i].key.clone();
        self.core
            .answer(self.now, &room(), &key, &answer.to_sdp_string())
            .expect("core takes the answer");
    }

    fn answer_pending_offers(&mut self) {
        self.collect_events();
        let offers: Vec<(ParticipantKey, String)> = self
            .events
            .iter()
            .filter_map(|e| match e {
                SfuEvent::Offer {
                    participant, sdp, ..
                } => Some((participant.clone(), sdp.clone())),
                _ => None,
            })
            .collect();
        self.events.retain(|e| !matches!(e, SfuEvent::Offer { .. }));
        for (who, sdp) in offers {
            let i = self
                .clients
                .iter()
                .position(|c| c.key == who)
                .expect("client");
            self.accept_server_offer(i, &sdp);
        }
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.core.poll_event() {
            self.events.push(e);
        }
    }

    /// Drains client `i`, queueing its datagrams for the server.
    fn flush(&mut self, i: usize) {
        let c = &mut self.clients[i];
        loop {
            match c.rtc.poll_output().expect("client output") {
                Output::Timeout(_) => break,
                Output::Transmit(t) => self.wire.push((c.addr, t.contents.to_vec())),
                Output::Event(Event::RtpPacket(_)) => c.received += 1,
                Output::Event(Event::KeyframeRequest(r)) => c.keyframe_rids.push(r.rid),
                Output::Event(_) => {}
            }
        }
    }

    /// Moves datagrams both ways until the wire is quiet.
    fn exchange(&mut self) {
        let server: SocketAddr = SERVER.into();
        for i in 0..self.clients.len() {
            self.flush(i);
        }
        loop {
            let wire = std::mem::take(&mut self.wire);
            let mut moved = !wire.is_empty();
            for (from, data) in wire {
                let (now, core) = (self.now, &mut self.core);
                counted(Phase::Receive, || {
                    core.handle_receive(now, Protocol::Udp, from, server, &data)
                });
            }
            while let Some(t) = counted(Phase::Receive, || self.core.poll_transmit()) {
                let Some(i) = self.clients.iter().position(|c| c.addr == t.destination) else {
                    continue;
                };
                let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                    .expect("datagram");
                self.clients[i]
                    .rtc
                    .handle_input(Input::Receive(self.now, r))
                    .expect("client input");
                self.flush(i);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    /// Advances simulated time to `until`, running every timer on the way.
    fn run_until(&mut self, until: Instant) {
        while self.now < until {
            self.exchange();
            let next = self.core.poll_timeout().unwrap_or(until).min(until);
            let next = next.max(self.now + Duration::from_millis(1));
            self.now = next.min(self.now + Duration::from_millis(10)).min(until);
            let (now, core) = (self.now, &mut self.core);
            counted(Phase::Timeout, || core.handle_timeout(now));
            for i in 0..self.clients.len() {
                self.clients[i]
                    .rtc
                    .handle_input(Input::Timeout(now))
                    .expect("client timeout");
                self.flush(i);
            }
        }
        self.exchange();
        self.collect_events();
    }
}

/// The publishing client: its VP8 layers and its Opus stream.
struct Publisher {
    client: usize,
    video: Mid,
    audio: Mid,
    seq: [u64; 3],
    pic: [u16; 3],
    tl0: [u8; 3],
    ts: [u32; 3],
    audio_seq: u64,
    frames: u64,
}

impl Publisher {
    /// A VP8 packet: descriptor with the X, I, L and T bits (15-bit picture id, TL0PICIDX,
    /// TID 0), then, at the start of a keyframe, the keyframe header with the layer's size.
    fn packet(&self, l: usize, start: bool, key: bool) -> Vec<u8> {
        let pic = self.pic[l];
        let mut v = vec![
            0x80 | if start { 0x10 } else { 0 },
            0xe0,
            0x80 | (pic >> 8) as u8,
            pic as u8,
            self.tl0[l],
            0x00,
        ];
        if start && key {
            let (w, h) = SIZES[l];
            v.extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
            v.extend_from_slice(&w.to_le_bytes());
            v.extend_from_slice(&h.to_le_bytes());
        } else {
            v.extend_from_slice(&[0x01, 0x00, 0x00]);
        }
        v.resize(VIDEO_PAYLOAD, 0xee);
        v
    }

    fn pt(w: &World, client: usize, codec: Codec) -> str0m::media::Pt {
        w.clients[client]
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec)
            .expect("codec negotiated")
            .pt()
    }

    /// One frame on every layer: a keyframe on the first frame, every 3 s, and when asked.
    fn send_frame(&mut self, w: &mut World) {
        let asked = std::mem::take(&mut w.clients[self.client].keyframe_rids);
        let pt = Self::pt(w, self.client, Codec::Vp8);
        for (l, name) in RIDS.iter().enumerate() {
            let rid = Rid::from(*name);
            let key = self.frames.is_multiple_of(90) || asked.contains(&Some(rid));
            let n = PACKETS_PER_FRAME[l];
            for k in 0..n {
                let payload = self.packet(l, k == 0, key);
                let now = w.now;
                let mut api = w.clients[self.client].rtc.direct_api();
                let tx = api
                    .stream_tx_by_mid(self.video, Some(rid))
                    .expect("layer stream");
                tx.write_rtp(
                    RtpWrite::new(pt, self.seq[l].into(), self.ts[l], now, payload)
                        .marker(k + 1 == n)
                        .nackable(true),
                );
                w.flush(self.client);
                self.seq[l] += 1;
            }
            self.pic[l] = (self.pic[l] + 1) % (1 << 15);
            self.tl0[l] = self.tl0[l].wrapping_add(1);
            self.ts[l] = self.ts[l].wrapping_add(3000);
        }
        self.frames += 1;
    }

    fn send_audio(&mut self, w: &mut World) {
        let pt = Self::pt(w, self.client, Codec::Opus);
        let now = w.now;
        let mut api = w.clients[self.client].rtc.direct_api();
        let tx = api
            .stream_tx_by_mid(self.audio, None)
            .expect("audio stream");
        let ext = ExtensionValues {
            audio_level: Some(-30),
            voice_activity: Some(true),
            ..ExtensionValues::default()
        };
        tx.write_rtp(
            RtpWrite::new(
                pt,
                self.audio_seq.into(),
                (self.audio_seq * 960) as u32,
                now,
                vec![0xab; AUDIO_PAYLOAD],
            )
            .ext_vals(ext),
        );
        w.flush(self.client);
        self.audio_seq += 1;
    }

    /// Sends media for `d` of simulated time.
    fn run(&mut self, w: &mut World, d: Duration) {
        let end = w.now + d;
        let (mut next_frame, mut next_audio) = (w.now, w.now);
        while w.now < end {
            if w.now >= next_frame {
                self.send_frame(w);
                next_frame += FRAME_INTERVAL;
            }
            if w.now >= next_audio {
                self.send_audio(w);
                next_audio += AUDIO_INTERVAL;
            }
            w.run_until(next_frame.min(next_audio).min(end));
        }
    }
}

fn main() {
    let (flags, numbers): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    SITES.store(flags.iter().any(|f| f == "--sites"), Ordering::Relaxed);
    let congestion_control = if flags.iter().any(|f| f == "--no-cc") {
        CongestionControl::Disabled
    } else {
        CongestionControl::Enabled
    };
    let mut args = numbers.into_iter();
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    let registry = prometheus::Registry::new();
    let mut w = World::new(subscribers, congestion_control, &registry);
    let p = w.join("publisher");
    let mids = w.offer(p, |change| {
        let mut sim = Simulcast::new();
        for r in RIDS {
            sim.add_send_layer(SimulcastLayer::new(r));
        }
        vec![
            change.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some("s".into()),
                None,
                Some(sim),
            ),
            change.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some("s".into()),
                None,
                None,
            ),
        ]
    });
    let mut publisher = Publisher {
        client: p,
        video: mids[0],
        audio: mids[1],
        seq: [1_000, 20_000, 40_000],
        pic: [100, 9_000, 32_700],
        tl0: [10, 100, 250],
        ts: [1_000, 5_000_000, 4_000_000_000],
        audio_seq: 1,
        frames: 0,
    };
    for s in 0..subscribers {
        let i = w.join(&format!("sub-{s}"));
        w.offer(i, |change| {
            vec![change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None)]
        });
    }
    let now = w.now;
    w.run_until(now + Duration::from_secs(1));
    publisher.run(&mut w, Duration::from_millis(500));
    w.answer_pending_offers();
    publisher.run(&mut w, Duration::from_secs(3));

    // Every subscriber switches down and back up: its picture ids are rewritten from now on.
    let video: TrackId = w
        .events
        .iter()
        .find_map(|e| match e {
            SfuEvent::TrackPublished {
                track_id,
                kind: TrackKind::Video,
                ..
            } => Some(track_id.clone()),
            _ => None,
        })
        .expect("video track published");
    let quarter = Wanted::Size {
        width: 320,
        height: 180,
    };
    for wanted in [quarter, Wanted::Highest] {
        for s in 1..=subscribers {
            let key = w.clients[s].key.clone();
            w.core
                .set_track_settings(w.now, &room(), &key, &video, wanted, None)
                .expect("track settings");
        }
        publisher.run(&mut w, Duration::from_secs(2));
    }
    let switches = w
        .events
        .iter()
        .filter(|e| matches!(e, SfuEvent::LayerChanged { .. }))
        .count();

    // Steady state.
    for phase in [Phase::Receive, Phase::Timeout] {
        COUNTS[phase as usize].store(0, Ordering::Relaxed);
        BYTES[phase as usize].store(0, Ordering::Relaxed);
    }
    *SITE_TABLE.lock().expect("table") = None;
    let received0: u64 = w.clients.iter().map(|c| c.received).sum();
    let out0 = out_packets(&registry);
    let audio0 = publisher.audio_seq;
    let frames0 = publisher.frames;
    publisher.run(&mut w, Duration::from_secs(seconds));
    let received = w.clients.iter().map(|c| c.received).sum::<u64>() - received0;
    let forwarded = out_packets(&registry) - out0;
    let published = (publisher.audio_seq - audio0)
        + (publisher.frames - frames0) * PACKETS_PER_FRAME.iter().sum::<usize>() as u64;

    let per = |n: u64| n as f64 / forwarded.max(1) as f64;
    let (rx, to) = (Phase::Receive as usize, Phase::Timeout as usize);
    let (rx_n, rx_b) = (
        COUNTS[rx].load(Ordering::Relaxed),
        BYTES[rx].load(Ordering::Relaxed),
    );
    let (to_n, to_b) = (
        COUNTS[to].load(Ordering::Relaxed),
        BYTES[to].load(Ordering::Relaxed),
    );
    println!("subscribers:                     {subscribers}");
    println!("congestion_control:              {congestion_control:?}");
    println!("layer switches before measuring: {switches}");
    println!("simulated_s:                     {seconds}");
    println!("published_packets:               {published}");
    println!("forwarded_packets:               {forwarded}");
    println!("received_by_subscribers:         {received}");
    // The pacer moves some sends from `handle_receive` to `handle_timeout`: the total is
    // the figure; the split says where the core was called from.
    println!(
        "receive path: allocs/packet {:.3}, bytes/packet {:.0}  ({rx_n} allocs, {rx_b} B)",
        per(rx_n),
        per(rx_b)
    );
    println!(
        "timers:       allocs/packet {:.3}, bytes/packet {:.0}  ({to_n} allocs, {to_b} B)",
        per(to_n),
        per(to_b)
    );
    println!(
        "total:        allocs/packet {:.3}, bytes/packet {:.0}",
        per(rx_n + to_n),
        per(rx_b + to_b)
    );
    if let Some(table) = SITE_TABLE.lock().expect("table").take() {
        let mut sites: Vec<(String, (u64, u64))> = table.into_iter().collect();
        sites.sort_by_key(|s| std::cmp::Reverse(s.1.0));
        let (mut ours, mut theirs, mut other) = (0, 0, 0);
        for (site, (n, _)) in &sites {
            match site.split_whitespace().next() {
                Some("ours") => ours += n,
                Some("str0m") => theirs += n,
                _ => other += n,
            }
        }
        println!(
            "by owner (allocs/packet): ours {:.3}, str0m {:.3}, other {:.3}",
            per(ours),
            per(theirs),
            per(other)
        );
        println!("sites (allocs/packet, bytes/packet, innermost SFU or str0m frame):");
        for (site, (n, b)) in sites.iter().take(25) {
            println!("  {:>8.3} {:>8.0}  {site}", per(*n), per(*b));
        }
    }
}

/// `chorus_sfu_rtp_packets_total{direction="out"}`: packets written to subscribers.
fn out_packets(registry: &prometheus::Registry) -> u64 {
    registry
        .gather()
        .iter()
        .find(|m| m.name() == "chorus_sfu_rtp_packets_total")
        .and_then(|m| {
            m.get_metric()
                .iter()
                .find(|x| x.get_label().iter().any(|l| l.value() == "out"))
                .map(|x| x.get_counter().get_value() as u64)
        })
        .unwrap_or(0)
}
