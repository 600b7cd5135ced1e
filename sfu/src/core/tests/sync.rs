//! Lip sync through the SFU: a subscriber's sender reports map each stream's RTP times to the
//! instants its publisher captured them at, so a receiver plays one publisher's audio and
//! video as they were captured, whatever each stream's delay on the way.

use std::time::SystemTime;

use str0m::rtp::rtcp::SenderInfo;

use super::*;

/// The capture instant a sender report puts on RTP time `ts` of a stream at `clock_rate`.
fn captured_at(report: &SenderInfo, ts: u32, clock_rate: u32) -> SystemTime {
    let ticks = i64::from(ts.wrapping_sub(report.rtp_time.numer() as u32) as i32);
    let d = Duration::from_nanos(ticks.unsigned_abs() * 1_000_000_000 / u64::from(clock_rate));
    if ticks >= 0 {
        report.ntp_time + d
    } else {
        report.ntp_time - d
    }
}

/// Signed milliseconds from `b` to `a`.
fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

#[test]
fn a_subscribers_reports_keep_its_publishers_audio_and_video_timing() {
    // Alice's camera pipeline is 100 ms behind her microphone: each video frame she sends
    // was captured 100 ms before the audio frame sent with it, and her sender reports say so.
    // Both reach the SFU at once. Bob's reports must keep the 100 ms; made from arrival times
    // they said 0, and his player would show her lips 100 ms late.
    let mut w = World::with_config(config(Limits::default()));
    let (a, b, mids) = publish_two_tracks(&mut w);
    let (opus, vp8) = (w.pt_of(a, Codec::Opus), w.pt_of(a, Codec::Vp8));
    let camera_lag = Duration::from_millis(100);
    // Each frame's payload names it, so Bob's copy can be told apart.
    let mut frames: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for n in 0..400u32 {
        let audio: Vec<u8> = [b'a']
            .into_iter()
            .chain(n.to_be_bytes())
            .chain([7; 60])
            .collect();
        // A VP8 descriptor (start of partition 0), then a keyframe every 50 frames.
        let key = if n % 50 == 0 { 0x00 } else { 0x01 };
        let video: Vec<u8> = [0x10, key]
            .into_iter()
            .chain(n.to_be_bytes())
            .chain([9; 600])
            .collect();
        let now = w.now;
        let mut api = w.clients[a].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mids[0], None).unwrap();
        tx.write_rtp(RtpWrite::new(
            opus,
            (u64::from(n) + 1).into(),
            10_000 + n * 960,
            now,
            audio.clone(),
        ));
        let tx = api.stream_tx_by_mid(mids[1], None).unwrap();
        tx.write_rtp(
            RtpWrite::new(
                vp8,
                (u64::from(n) + 1).into(),
                700_000 + n * 1800,
                now - camera_lag,
                video.clone(),
            )
            .marker(true),
        );
        w.flush_client(a);
        frames.push((audio, video));
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(300));

    let bob = &w.clients[b];
    let ts_of = |payload: &[u8]| {
        bob.received
            .iter()
            .zip(&bob.headers)
            .find(|((_, p), _)| p[..] == payload[..])
            .map(|((mid, _), (_, ts))| (*mid, *ts))
    };
    let mut checked = 0;
    // The last two seconds: every stream has had reports by then, at both hops (str0m
    // reports audio every 5 s or so).
    for (audio, video) in &frames[300..] {
        let (Some((audio_mid, audio_ts)), Some((video_mid, video_ts))) =
            (ts_of(audio), ts_of(video))
        else {
            continue;
        };
        let audio_report = &bob.reports[&audio_mid];
        let video_report = &bob.reports[&video_mid];
        // A report made before the stream's first packet has no RTP time to go by.
        assert!(audio_report.sender_packet_count > 0 && video_report.sender_packet_count > 0);
        let gap = ms_between(
            captured_at(audio_report, audio_ts, 48_000),
            captured_at(video_report, video_ts, 90_000),
        );
        assert!(
            (gap - 100.0).abs() < 5.0,
            "Bob's reports put the audio {gap:.1} ms after the video sent with it (100 captured)"
        );
        checked += 1;
    }
    assert!(checked >= 40, "{checked} frame pairs reached Bob");
}
