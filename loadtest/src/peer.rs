//! One WebRTC peer connection of a load client: a str0m `Rtc` (RTP mode) on its own UDP
//! socket, driven by one tokio task.
//!
//! str0m rather than webrtc-rs: a load client must be cheap enough that hundreds of them fit
//! beside the server on a two-core machine, and str0m is sans-IO with one task per peer and
//! no per-peer thread pool or internal channels (see `docs/adr/0072-sfu-load-clients-on-str0m.md`).
//!
//! Lifecycle ([`run`]): the peer gathers one host candidate (its socket's address); if it
//! publishes (or `offer_first` asks) it offers first and waits for [`SignalIn::Answer`],
//! otherwise it waits for the server's [`SignalIn::Offer`]; every later server offer is
//! answered ([`SignalOut::Answer`]). Once ICE and DTLS are up it sends its media on schedule
//! (Opus every 20 ms, a VP8 frame per layer every 1/30 s, a keyframe early on a PLI/FIR) and
//! counts every RTP packet it receives ([`crate::stats`]). It stops when `stop` turns true
//! and returns its [`ClientReport`].

use crate::media::{self, FPS, OPUS_FRAME_SAMPLES, VIDEO_CLOCK, Vp8Info, Vp8Layer};
use crate::stats::{ClientReport, Live, StreamStats};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// How long ICE and DTLS may take before the peer counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// From the signaling side to the peer.
#[derive(Debug)]
pub enum SignalIn {
    Answer(String),
    Offer(String),
    /// A trickled remote candidate (`candidate:...` line).
    Candidate(String),
}

/// From the peer to the signaling side.
#[derive(Debug)]
pub enum SignalOut {
    Offer(String),
    Answer(String),
}

/// What a peer sends.
#[derive(Clone, Debug, Default)]
pub struct Publish {
    pub audio: bool,
    /// Video bitrate (of the top layer with simulcast), if it sends video.
    pub video_bps: Option<u64>,
    pub simulcast: bool,
}

/// How a peer starts negotiating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Offer first; a peer that publishes nothing offers one receive-only audio m-line
    /// (Chorus: the server then adds the others' tracks with its own offers).
    ClientOffers,
    /// Wait for the server's offer (a Janus subscriber).
    ServerOffers,
}

/// Channels between a peer and its signaling.
pub struct Signals {
    pub inbound: mpsc::Receiver<SignalIn>,
    pub outbound: mpsc::Sender<SignalOut>,
}

struct VideoTrack {
    mid: Mid,
    /// One per simulcast rid (`None` without simulcast).
    layers: Vec<(Option<Rid>, Vp8Layer, u64)>,
    frames: u64,
    base_time: u32,
}

struct AudioTrack {
    mid: Mid,
    seq: u64,
    base_time: u32,
}

/// Runs one peer until `stop` (see the module docs). `started` is when the client began
/// (before signaling), for the join time.
pub async fn run(
    publish: Publish,
    start: Start,
    bind: IpAddr,
    mut signals: Signals,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
    started: Instant,
) -> ClientReport {
    let mut report = ClientReport {
        publisher: publish.audio || publish.video_bps.is_some(),
        ..ClientReport::default()
    };
    let mut streams: HashMap<Ssrc, StreamStats> = HashMap::new();
    let outcome = drive(
        &publish,
        start,
        bind,
        &mut signals,
        &live,
        &mut stop,
        started,
        &mut report,
        &mut streams,
    )
    .await;
    if let Err(e) = outcome {
        live.failed.fetch_add(1, Ordering::Relaxed);
        report.failed = Some(e);
    }
    for s in streams.values() {
        report.add_stream(s);
    }
    report
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    publish: &Publish,
    start: Start,
    bind: IpAddr,
    signals: &mut Signals,
    live: &Live,
    stop: &mut watch::Receiver<bool>,
    started: Instant,
    report: &mut ClientReport,
    streams: &mut HashMap<Ssrc, StreamStats>,
) -> Result<(), String> {
    let socket = UdpSocket::bind(SocketAddr::new(bind, 0))
        .await
        .map_err(|e| format!("bind UDP: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, true)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);

    let mut audio = None;
    let mut video = None;
    let mut pending: Option<SdpPendingOffer> = None;
    if start == Start::ClientOffers {
        let mut api = rtc.sdp_api();
        let stream = Some("load".to_owned());
        if publish.audio {
            let mid = api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                stream.clone(),
                Some("mic".into()),
                None,
            );
            audio = Some(AudioTrack {
                mid,
                seq: 1,
                base_time: rand::random(),
            });
        }
        if let Some(bps) = publish.video_bps {
            let (simulcast, layers) = if publish.simulcast {
                let mut s = Simulcast::new();
                let mut layers = Vec::new();
                for (rid, w, h, bps) in media::simulcast_layers(bps) {
                    s.add_send_layer(SimulcastLayer::new(rid));
                    layers.push((Some(Rid::from(rid)), Vp8Layer::new(w, h, bps), 1));
                }
                (Some(s), layers)
            } else {
                (None, vec![(None, Vp8Layer::new(1280, 720, bps), 1)])
            };
            let mid = api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                stream.clone(),
                Some("camera".into()),
                simulcast,
            );
            video = Some(VideoTrack {
                mid,
                layers,
                frames: 0,
                base_time: rand::random(),
            });
        }
        if audio.is_none() && video.is_none() {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, p) = api.apply().expect("added media needs negotiation");
        pending = Some(p);
        signals
            .outbound
            .send(SignalOut::Offer(offer.to_sdp_string()))
            .await
            .map_err(|_| "signaling ended before the offer".to_owned())?;
    }
    let opus_pt = pt_of(&rtc, Codec::Opus);
    let vp8_pt = pt_of(&rtc, Codec::Vp8);

    let mut buf = vec![0u8; 2000];
    let mut connected = false;
    let connect_by = Instant::now() + CONNECT_TIMEOUT;
    let audio_every = Duration::from_millis(20);
    let frame_every = Duration::from_secs(1) / FPS;
    let mut next_audio = Instant::now();
    let mut next_frame = Instant::now();
    loop {
        // Drain str0m completely after every input.
        let rtc_timeout = loop {
            match rtc.poll_output().map_err(|e| format!("rtc: {e}"))? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    if let Err(e) = socket.try_send_to(&t.contents, t.destination)
                        && e.kind() == std::io::ErrorKind::WouldBlock
                    {
                        let _ = socket.send_to(&t.contents, t.destination).await;
                    }
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        connected = true;
                        live.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::RtpPacket(p) => {
                        let ssrc = p.header.ssrc;
                        let seq = *p.seq_no;
                        let s = streams.entry(ssrc).or_insert_with(|| {
                            let mid = rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
                            let video = match mid.and_then(|m| rtc.media(m)) {
                                Some(m) => m.kind() == MediaKind::Video,
                                None => Some(p.header.payload_type) != opus_pt,
                            };
                            StreamStats::new(video, seq)
                        });
                        if s.packet(seq, p.payload.len()) {
                            live.received.fetch_add(1, Ordering::Relaxed);
                            live.received_bytes
                                .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                        }
                        if s.video
                            && let Some(size) = Vp8Info::parse(&p.payload).and_then(|i| i.keyframe)
                        {
                            s.keyframe(size);
                        }
                        report.join.get_or_insert_with(|| started.elapsed());
                    }
                    Event::KeyframeRequest(req) => {
                        report.keyframe_requests += 1;
                        if let Some(v) = video.as_mut().filter(|v| v.mid == req.mid) {
                            for (rid, layer, _) in &mut v.layers {
                                if req.rid.is_none() || *rid == req.rid {
                                    layer.request_keyframe();
                                }
                            }
                        }
                    }
                    _ => {}
                },
            }
        };
        if !rtc.is_alive() {
            // Janus closes DTLS when the client ends its session at the run's end.
            if *stop.borrow() {
                return Ok(());
            }
            return Err("peer connection closed".into());
        }
        if !connected && Instant::now() > connect_by {
            return Err(format!("ICE/DTLS not up within {CONNECT_TIMEOUT:?}"));
        }
        let mut wake = rtc_timeout.min(connect_by.max(Instant::now()));
        if connected && audio.is_some() {
            wake = wake.min(next_audio);
        }
        if connected && video.is_some() {
            wake = wake.min(next_frame);
        }
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, source) = r.map_err(|e| format!("recv: {e}"))?;
                if let Ok(contents) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    rtc.handle_input(Input::Receive(Instant::now(), contents))
                        .map_err(|e| format!("rtc input: {e}"))?;
                }
                continue;
            }
            s = signals.inbound.recv() => match s {
                Some(SignalIn::Answer(sdp)) => {
                    let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| format!("answer: {e}"))?;
                    let p = pending.take().ok_or("an answer without an offer")?;
                    rtc.sdp_api().accept_answer(p, answer).map_err(|e| format!("accept answer: {e}"))?;
                }
                Some(SignalIn::Offer(sdp)) => {
                    let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| format!("offer: {e}"))?;
                    let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| format!("accept offer: {e}"))?;
                    signals.outbound.send(SignalOut::Answer(answer.to_sdp_string())).await
                        .map_err(|_| "signaling ended".to_owned())?;
                }
                Some(SignalIn::Candidate(line)) => {
                    if let Ok(c) = Candidate::from_sdp_string(&line) {
                        rtc.add_remote_candidate(c);
                    }
                }
                // At the end of a run the signaling side may close first.
                None if *stop.borrow() => return Ok(()),
                None => return Err("signaling ended".into()),
            },
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if connected {
            if let (Some(a), Some(pt)) = (audio.as_mut(), opus_pt)
                && now >= next_audio
            {
                send_audio(&mut rtc, a, pt, now);
                live.sent.fetch_add(1, Ordering::Relaxed);
                next_audio += audio_every;
                if next_audio < now {
                    next_audio = now + audio_every;
                }
            }
            if let (Some(v), Some(pt)) = (video.as_mut(), vp8_pt)
                && now >= next_frame
            {
                let sent = send_frame(&mut rtc, v, pt, now);
                live.sent.fetch_add(sent, Ordering::Relaxed);
                next_frame += frame_every;
                if next_frame < now {
                    next_frame = now + frame_every;
                }
            }
        }
        rtc.handle_input(Input::Timeout(now))
            .map_err(|e| format!("rtc timeout: {e}"))?;
    }
}

fn pt_of(rtc: &Rtc, codec: Codec) -> Option<Pt> {
    rtc.codec_config()
        .iter()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}

fn send_audio(rtc: &mut Rtc, a: &mut AudioTrack, pt: Pt, now: Instant) {
    let payload = media::opus_payload(a.seq);
    let time = a
        .base_time
        .wrapping_add((a.seq as u32).wrapping_mul(OPUS_FRAME_SAMPLES));
    if let Some(tx) = rtc.direct_api().stream_tx_by_mid(a.mid, None) {
        tx.write_rtp(
            RtpWrite::new(pt, a.seq.into(), time, now, payload)
                .marker(a.seq == 1)
                .nackable(false),
        );
    }
    a.seq += 1;
}

/// Sends one frame on every layer; returns the packets sent.
fn send_frame(rtc: &mut Rtc, v: &mut VideoTrack, pt: Pt, now: Instant) -> u64 {
    let time = v
        .base_time
        .wrapping_add((v.frames as u32).wrapping_mul(VIDEO_CLOCK / FPS));
    v.frames += 1;
    let mut sent = 0;
    let mut api = rtc.direct_api();
    for (rid, layer, seq) in &mut v.layers {
        let (payloads, _) = layer.next_frame();
        let Some(tx) = api.stream_tx_by_mid(v.mid, *rid) else {
            continue;
        };
        let last = payloads.len() - 1;
        for (i, p) in payloads.into_iter().enumerate() {
            tx.write_rtp(
                RtpWrite::new(pt, (*seq).into(), time, now, p)
                    .marker(i == last)
                    .nackable(true),
            );
            *seq += 1;
            sent += 1;
        }
    }
    sent
}
