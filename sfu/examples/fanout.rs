//! Fan-out benchmark: one publisher (video ~1.5 Mbit/s at 30 fps + Opus-sized audio at
//! 50 packets/s) and N receive-only subscribers, all str0m clients in this process talking
//! to a real SFU over 127.0.0.1 UDP.
//!
//! Server CPU is read from `/proc/self/task/<tid>/stat` of the SFU worker thread
//! ("chorus-sfu-0"; the example runs one), so the clients' own CPU use is not counted.
//!
//! `cargo run --release --example fanout -- <subscribers> <seconds>`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sfu::{Grants, Settings, Sfu, SfuHandle};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

const VIDEO_PACKETS_PER_FRAME: u64 = 6;
const VIDEO_PAYLOAD: usize = 1040; // 6 × 1040 B × 30 fps ≈ 1.5 Mbit/s

enum Send {
    Audio(u64),
    Video(u64),
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);

    let registry = prometheus::Registry::new();
    let mut settings = Settings::loopback();
    settings.tcp_listen = None;
    settings.workers = 1;
    settings.candidates = sfu::CandidateTransports::UdpOnly;
    settings.limits.max_participants_per_room = subscribers + 1;
    let sfu = Sfu::start(settings, &registry).expect("sfu starts");
    let _events = sfu.events().expect("events");
    let (stop_tx, stop_rx) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));

    // Publisher.
    let (mut pub_rtc, pub_sock) = client_rtc().await;
    let mut change = pub_rtc.sdp_api();
    let audio_mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let video_mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().expect("offer");
    negotiate(&sfu, "publisher", &mut pub_rtc, offer, pending).await;
    let (write_tx, write_rx) = mpsc::channel::<Send>(1024);
    tokio::spawn(run_client(
        pub_rtc,
        pub_sock,
        Some((write_rx, audio_mid, video_mid)),
        received.clone(),
        stop_rx.clone(),
    ));

    // Tracks are published once the publisher is connected; wait for that so every
    // subscriber gets them in its first reply (this example answers no later offers).
    let until = Instant::now() + Duration::from_secs(10);
    while sfu
        .room_tracks("bench".into())
        .await
        .map(|t| t.len())
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < until, "publisher did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Subscribers.
    for i in 0..subscribers {
        let (mut rtc, sock) = client_rtc().await;
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().expect("offer");
        negotiate(&sfu, &format!("sub-{i}"), &mut rtc, offer, pending).await;
        tokio::spawn(run_client(
            rtc,
            sock,
            None,
            received.clone(),
            stop_rx.clone(),
        ));
    }

    // Let ICE/DTLS settle, then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let producer = tokio::spawn(produce(write_tx, Duration::from_secs(seconds)));
    let counter = |direction: &str| {
        registry
            .gather()
            .iter()
            .find(|m| m.name() == "chorus_sfu_rtp_packets_total")
            .and_then(|m| {
                m.get_metric()
                    .iter()
                    .find(|x| x.get_label().iter().any(|l| l.value() == direction))
                    .map(|x| x.get_counter().get_value() as u64)
            })
            .unwrap_or(0)
    };
    let out_counter = || counter("out");
    let tid = sfu_thread().expect("sfu worker thread");
    let in0 = counter("in");
    let (cpu0, out0, rx0, t0) = (
        thread_cpu(&tid),
        out_counter(),
        received.load(Ordering::Relaxed),
        Instant::now(),
    );
    producer.await.expect("producer");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu1, out1, rx1, elapsed) = (
        thread_cpu(&tid),
        out_counter(),
        received.load(Ordering::Relaxed),
        t0.elapsed(),
    );
    let _ = stop_tx.send(true);
    let in1 = counter("in");

    let forwarded = out1 - out0;
    let cpu = cpu1 - cpu0;
    println!("subscribers:                {subscribers}");
    println!("duration_s:                 {:.1}", elapsed.as_secs_f64());
    println!("published_packets_in:       {}", in1 - in0);
    println!("forwarded_packets:          {forwarded}");
    println!(
        "forwarded_packets_per_s:    {:.0}",
        forwarded as f64 / elapsed.as_secs_f64()
    );
    println!("received_by_clients:        {}", rx1 - rx0);
    println!("server_cpu_s:               {cpu:.3}");
    println!(
        "server_cpu_us_per_packet:   {:.2}",
        cpu * 1e6 / forwarded.max(1) as f64
    );
    println!(
        "process_rss_mb:             {:.1}",
        rss_kb() as f64 / 1024.0
    );
    sfu.shutdown().await;
}

async fn client_rtc() -> (Rtc, UdpSocket) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = sock.local_addr().expect("addr");
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    (rtc, sock)
}

async fn negotiate(
    sfu: &SfuHandle,
    who: &str,
    rtc: &mut Rtc,
    offer: SdpOffer,
    pending: str0m::change::SdpPendingOffer,
) {
    sfu.join(
        "bench".into(),
        who.into(),
        Grants::default(),
        Instant::now(),
    )
    .await
    .expect("join");
    let reply = sfu
        .offer("bench".into(), who.into(), offer.to_sdp_string())
        .await
        .expect("offer");
    let answer = SdpAnswer::from_sdp_string(&reply.answer).expect("answer");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("accept");
    if let Some(o) = reply.server_offer {
        let offer = SdpOffer::from_sdp_string(&o.sdp).expect("server offer");
        let answer = rtc.sdp_api().accept_offer(offer).expect("accept offer");
        sfu.answer("bench".into(), who.into(), answer.to_sdp_string())
            .await
            .expect("answer");
    }
}

async fn produce(tx: mpsc::Sender<Send>, duration: Duration) {
    let start = tokio::time::Instant::now();
    let mut audio = tokio::time::interval(Duration::from_millis(20));
    let mut video = tokio::time::interval(Duration::from_micros(33_333));
    let (mut a, mut v) = (0u64, 0u64);
    while start.elapsed() < duration {
        tokio::select! {
            _ = audio.tick() => { let _ = tx.send(Send::Audio(a)).await; a += 1; }
            _ = video.tick() => { let _ = tx.send(Send::Video(v)).await; v += 1; }
        }
    }
}

async fn run_client(
    mut rtc: Rtc,
    sock: UdpSocket,
    mut writer: Option<(mpsc::Receiver<Send>, Mid, Mid)>,
    received: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let local: SocketAddr = sock.local_addr().expect("addr");
    let mut buf = vec![0u8; 2000];
    let video = VideoPayloads::new();
    let audio_payload: Arc<[u8]> = vec![0xAB; 80].into();
    let (mut aseq, mut vseq) = (1u64, 1u64);
    loop {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = sock.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::RtpPacket(_))) => {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        };
        let next_write = async {
            match writer.as_mut() {
                Some((rx, _, _)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { return };
                let Ok(recv) = Receive::new(Protocol::Udp, source, local, &buf[..n]) else { continue };
                if rtc.handle_input(Input::Receive(Instant::now(), recv)).is_err() { return; }
            }
            w = next_write => {
                let Some(w) = w else { continue };
                let (_, amid, vmid) = writer.as_ref().expect("writer present");
                let (amid, vmid) = (*amid, *vmid);
                let pt_of = |rtc: &Rtc, c: Codec| rtc.codec_config().params().iter().find(|p| p.spec().codec == c).map(|p| p.pt());
                let now = Instant::now();
                match w {
                    Send::Audio(n) => {
                        let Some(pt) = pt_of(&rtc, Codec::Opus) else { continue };
                        if let Some(tx) = rtc.direct_api().stream_tx_by_mid(amid, None) {
                            tx.write_rtp(RtpWrite::new(pt, aseq.into(), (n * 960) as u32, now, audio_payload.clone()));
                            aseq += 1;
                        }
                    }
                    Send::Video(n) => {
                        let Some(pt) = pt_of(&rtc, Codec::Vp8) else { continue };
                        for k in 0..VIDEO_PACKETS_PER_FRAME {
                            if let Some(tx) = rtc.direct_api().stream_tx_by_mid(vmid, None) {
                                tx.write_rtp(RtpWrite::new(pt, vseq.into(), (n * 3000) as u32, now, video.packet(n, k))
                                    .marker(k + 1 == VIDEO_PACKETS_PER_FRAME).nackable(true));
                                vseq += 1;
                            }
                            // Drain between writes (str0m's single-mutation invariant).
                            loop {
                                match rtc.poll_output() {
                                    Ok(Output::Timeout(_)) => break,
                                    Ok(Output::Transmit(t)) => { let _ = sock.try_send_to(&t.contents, t.destination); }
                                    Ok(_) => {}
                                    Err(_) => return,
                                }
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(timeout.into()) => {
                if rtc.handle_input(Input::Timeout(Instant::now())).is_err() { return; }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Thread id of the SFU worker ("chorus-sfu-0", the only one here).
fn sfu_thread() -> Option<String> {
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim() == "chorus-sfu-0" {
            return Some(e.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// utime + stime of a thread, in seconds.
fn thread_cpu(tid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0);
    // Linux reports these in USER_HZ, which is 100 on every platform we run.
    ticks as f64 / 100.0
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Synthetic VP8 shaped like a real stream where the SFU looks: the first packet of each frame
/// starts a partition (descriptor S bit), every 60th frame is a keyframe (frame tag P = 0, start
/// code, 640×360), the rest interframes. The SFU forwards video to a subscriber only from a
/// keyframe on, so without this shape it would forward none.
struct VideoPayloads {
    keyframe_start: Arc<[u8]>,
    interframe_start: Arc<[u8]>,
    continuation: Arc<[u8]>,
}

/// Frames from one keyframe to the next (2 s at 30 fps).
const KEYFRAME_INTERVAL: u64 = 60;

impl VideoPayloads {
    fn new() -> Self {
        let filled = |head: &[u8]| -> Arc<[u8]> {
            let mut v = head.to_vec();
            v.extend((v.len()..VIDEO_PAYLOAD).map(|i| i as u8));
            v.into()
        };
        // Descriptor (S = 1, partition 0), then the frame tag; a keyframe's carries the start
        // code and the size (640 × 360, little-endian, scale 0).
        let keyframe_start = filled(&[
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
        ]);
        let interframe_start = filled(&[0x10, 0x01, 0x00, 0x00]);
        let continuation = filled(&[0x00]);
        Self {
            keyframe_start,
            interframe_start,
            continuation,
        }
    }

    /// Packet `k` of frame `n`.
    fn packet(&self, n: u64, k: u64) -> Arc<[u8]> {
        match (k, n % KEYFRAME_INTERVAL) {
            (0, 0) => self.keyframe_start.clone(),
            (0, _) => self.interframe_start.clone(),
            _ => self.continuation.clone(),
        }
    }
}
