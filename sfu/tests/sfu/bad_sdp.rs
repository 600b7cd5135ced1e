//! Bad offers get typed errors and leave the SFU working.

use std::time::Instant;

use sfu::{Error, Grants};

use crate::start_sfu;

const GOOD_AUDIO: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=setup:actpass\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

#[tokio::test]
async fn bad_offers_get_typed_errors() {
    let (sfu, _registry) = start_sfu();
    let (room, who) = ("bad".to_string(), "mallory".to_string());
    sfu.join(
        room.clone().into(),
        who.clone().into(),
        Grants::default(),
        Instant::now(),
    )
    .await
    .unwrap();

    let pcmu = GOOD_AUDIO.replace("opus/48000/2", "PCMU/8000");
    let r = sfu
        .offer(room.clone().into(), who.clone().into(), pcmu)
        .await;
    assert!(
        matches!(r, Err(Error::NoUsableCodec { mline: 0, .. })),
        "{r:?}"
    );

    let mut many = GOOD_AUDIO.to_string();
    for i in 1..300 {
        many.push_str(&format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{i}\r\na=rtpmap:111 opus/48000/2\r\n"
        ));
    }
    let r = sfu
        .offer(room.clone().into(), who.clone().into(), many)
        .await;
    assert!(
        matches!(r, Err(Error::TooManyMLines { limit: 256, .. })),
        "{r:?}"
    );

    let r = sfu
        .offer(
            room.clone().into(),
            who.clone().into(),
            "\u{0}garbage".into(),
        )
        .await;
    assert!(matches!(r, Err(Error::BadSdp(_))), "{r:?}");

    // The SFU still answers a good offer afterwards.
    let r = sfu
        .offer(room.clone().into(), who.clone().into(), GOOD_AUDIO.into())
        .await
        .expect("good offer is answered");
    assert!(r.answer.contains("a=ice-lite"));
    assert!(r.answer.contains("127.0.0.1"));

    sfu.leave(room.into(), who.into()).await.unwrap();
    let s = sfu.snapshot().await.unwrap();
    assert_eq!(s, sfu::Stats::default());
    sfu.shutdown().await;
}
