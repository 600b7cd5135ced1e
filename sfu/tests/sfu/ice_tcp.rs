//! ICE-TCP: with only a passive TCP candidate advertised, a client connects over one TCP
//! connection (RFC 4571 framing) and its media reaches the SFU. The SFU runs two media workers
//! and the room lives on the second, so the connection, accepted on the first worker's thread,
//! must be handed to the worker that owns its participant.

use std::time::{Duration, Instant};

use sfu::{CandidateTransports, Grants, Settings, Sfu, SfuEvent};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[tokio::test]
async fn client_connects_and_publishes_over_ice_tcp() {
    let registry = prometheus::Registry::new();
    let settings = Settings {
        candidates: CandidateTransports::TcpOnly,
        workers: 2,
        ..Settings::loopback()
    };
    let sfu = Sfu::start(settings, &registry).unwrap();
    let room = (0..)
        .map(|i| sfu::RoomKey::new(format!("tcp-{i}")))
        .find(|r| sfu.worker_of(r) == 1)
        .expect("some room lands on the second worker");
    let mut events = sfu.events().unwrap();
    let server = sfu.tcp_addr().unwrap();

    let stream = TcpStream::connect(server).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let (frames_tx, mut frames) = mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        while let Ok(len) = rd.read_u16().await {
            let mut buf = vec![0; len as usize];
            if rd.read_exact(&mut buf).await.is_err() {
                break;
            }
            let _ = frames_tx.send(buf).await;
        }
    });

    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    let cand = Candidate::builder()
        .tcp()
        .host(local)
        .tcptype(TcpType::Active)
        .build()
        .unwrap();
    rtc.add_local_candidate(cand);
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    sfu.join(
        room.clone(),
        "tina".into(),
        Grants::default(),
        Instant::now(),
    )
    .await
    .unwrap();
    let reply = sfu
        .offer(room.clone(), "tina".into(), offer.to_sdp_string())
        .await
        .unwrap();
    assert!(reply.answer.contains("tcptype passive"));
    assert!(
        !reply.answer.contains(" udp "),
        "TcpOnly advertises no UDP candidate"
    );
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&reply.answer).unwrap())
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut connected, mut written) = (false, 0u64);
    let mut done_at: Option<Instant> = None;
    while Instant::now() < deadline && done_at.is_none_or(|t| Instant::now() < t) {
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let mut out = (t.contents.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&t.contents);
                    wr.write_all(&out).await.unwrap();
                }
                Output::Event(Event::Connected) => connected = true,
                Output::Event(_) => {}
            }
        };
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(20));
        tokio::select! {
            f = frames.recv() => {
                let f = f.expect("server keeps the connection");
                let r = Receive::new(Protocol::Tcp, server, local, &f).unwrap();
                rtc.handle_input(Input::Receive(Instant::now(), r)).unwrap();
                continue;
            }
            _ = tokio::time::sleep(wait) => {
                rtc.handle_input(Input::Timeout(Instant::now())).unwrap();
            }
        }
        if !connected || written >= 20 {
            continue;
        }
        // One write per tick, drained at the top of the loop (str0m's contract).
        loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    let mut out = (t.contents.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&t.contents);
                    wr.write_all(&out).await.unwrap();
                }
                Output::Event(_) => {}
            }
        }
        let pt = rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == Codec::Opus)
            .unwrap()
            .pt();
        let now = Instant::now();
        if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
            written += 1;
            tx.write_rtp(RtpWrite::new(
                pt,
                written.into(),
                (written * 960) as u32,
                now,
                vec![1, 2, 3],
            ));
            if written == 20 {
                done_at = Some(now + Duration::from_millis(500));
            }
        }
    }
    assert!(connected, "ICE-TCP + DTLS connected");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        crate::metric(&registry, "chorus_sfu_rtp_packets_total", Some("in")) >= 15.0,
        "media arrived over TCP"
    );
    let mut saw_connected = false;
    while let Ok(e) = events.try_recv() {
        saw_connected |= matches!(e, SfuEvent::Connected { .. });
    }
    assert!(saw_connected);
    sfu.leave(room.clone(), "tina".into()).await.unwrap();
    assert_eq!(sfu.snapshot().await.unwrap(), sfu::Stats::default());
    sfu.shutdown().await;
}
