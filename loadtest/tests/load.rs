//! `chorus-load` (the real binary, in its own process) against a whole Chorus server started
//! in this process on 127.0.0.1: packets flow from a publisher to subscribers with no loss,
//! and the JSON summary says so.

use serde_json::Value;
use signaling::auth::Authenticator;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SECRET: &str = "load-test-secret-load-test-secret!!";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_room_forwards_every_packet() {
    let mut config = config::Config::default();
    let data = std::env::temp_dir().join(format!("chorus-load-test-{}", std::process::id()));
    config.server.data_dir = data.clone();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.auth.secret = SECRET.into();
    config.rooms.auto_create = Some(true);
    config.sfu.udp_listen = "127.0.0.1:0".parse().unwrap();
    config.sfu.tcp_listen = String::new();
    config.sfu.public_ips = vec!["127.0.0.1".into()];
    config.turn.enabled = false;
    config.validate().expect("a valid config");
    let listener = TcpListener::bind(config.server.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = chorus::build(&config, Authenticator::new(&config.auth, None).unwrap())
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        chorus::serve(listener, &config, server, async {
            let _ = stopped.await;
        })
        .await
    });

    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus-load"))
            .args(["--url", &format!("http://{addr}"), "--room", "small"])
            .args(["--publishers", "1", "--subscribers", "2", "--audio"])
            .args([
                "--video-bitrate",
                "300k",
                "--duration",
                "2",
                "--settle",
                "0.5",
            ])
            .args([
                "--ramp-per-second",
                "50",
                "--token-secret",
                SECRET,
                "--json",
            ])
            .args(["--server-pid", &std::process::id().to_string()])
            .output(),
    )
    .await
    .expect("chorus-load finishes in time")
    .expect("chorus-load runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let s: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");

    assert_eq!(s["failed"], 0, "{s:#}");
    assert_eq!(
        (s["publishers"].as_u64(), s["subscribers"].as_u64()),
        (Some(1), Some(2))
    );
    // Each subscriber receives the publisher's audio and video.
    assert_eq!(
        (s["videoStreams"].as_u64(), s["audioStreams"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(s["lost"], 0, "{s:#}");
    // 2 s of 50 audio + ~30 video packets per second, to each of two subscribers.
    let window = s["windowPackets"].as_u64().unwrap();
    assert!(window > 200, "{s:#}");
    assert!(
        s["keyframes"].as_u64().unwrap() >= 2,
        "each subscriber saw a keyframe: {s:#}"
    );
    assert!(s["serverCpuUsPerPacket"].as_f64().unwrap() > 0.0, "{s:#}");

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
    let _ = std::fs::remove_dir_all(data);
}
