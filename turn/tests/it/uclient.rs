//! coturn's `turnutils_uclient` (with `turnutils_peer` echoing) against our server: UDP with a
//! static user, UDP with REST credentials (`-W`), TCP, and Send indications; each with zero loss.

use std::{process::Stdio, time::Duration};

use tokio::{io::AsyncReadExt, process::Command};

use crate::common::*;

const CLIENTS: u32 = 4;
const MESSAGES: u32 = 50;

/// Runs one uclient load against `port` and checks that every message came back.
async fn run_uclient(test: &str, port: u16, extra: &[&str]) {
    let peer_port = free_udp_port();
    let _peer = Command::new("/usr/bin/turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start turnutils_peer");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cmd = Command::new("/usr/bin/turnutils_uclient");
    cmd.args(extra)
        .args([
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port.to_string(),
            "-p",
            &port.to_string(),
        ])
        .args([
            "-c",
            "-n",
            &MESSAGES.to_string(),
            "-m",
            &CLIENTS.to_string(),
            "-l",
            "400",
        ])
        // -v: the setup steps are printed, so a hang shows the request that got no reply.
        .args(["-v", "-z", "5", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run uclient");
    // Read as it runs, so a uclient that hangs (it waits forever for a lost reply while it sets
    // up) still shows how far it got.
    let stdout = tokio::spawn(read_all(child.stdout.take().unwrap()));
    let stderr = tokio::spawn(read_all(child.stderr.take().unwrap()));
    let finished = tokio::time::timeout(Duration::from_secs(90), child.wait()).await;
    if finished.is_err() {
        let _ = child.kill().await;
    }
    let text = stdout.await.unwrap() + &stderr.await.unwrap();
    assert!(
        finished.is_ok(),
        "{test}: uclient did not finish in 90 s; it printed:\n{text}"
    );
    let totals = text
        .lines()
        .rfind(|l| l.contains("tot_send_msgs=") && !l.contains("msz="))
        .unwrap_or_else(|| panic!("{test}: no totals in uclient output:\n{text}"));
    let num = |key: &str| -> u64 {
        let rest = &totals[totals.find(key).unwrap() + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (sent, received) = (num("tot_send_msgs="), num("tot_recv_msgs="));
    assert_eq!(sent, u64::from(CLIENTS * MESSAGES), "{test}: sent\n{text}");
    assert_eq!(received, sent, "{test}: lost packets\n{text}");
    assert!(
        text.contains("Total lost packets 0 "),
        "{test}: loss reported\n{text}"
    );
    assert!(
        !text.contains("error 4") && !text.contains("error 5"),
        "{test}: TURN error\n{text}"
    );
}

/// Everything `from` yields until it ends, as text.
async fn read_all(mut from: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    let _ = from.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_udp_static_user() {
    if !have_turnutils("uclient_udp_static_user") {
        return;
    }
    let s = start(loopback_settings()).await;
    run_uclient("udp static", s.udp().port(), &["-u", "u", "-w", "p"]).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_udp_with_epoll() {
    if !have_turnutils("uclient_udp_with_epoll") {
        return;
    }
    let s = start(turn::Settings {
        relay_io: turn::RelayIo::Epoll,
        ..loopback_settings()
    })
    .await;
    run_uclient("udp epoll", s.udp().port(), &["-u", "u", "-w", "p"]).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_udp_rest_credentials() {
    if !have_turnutils("uclient_udp_rest_credentials") {
        return;
    }
    let s = start(loopback_settings()).await;
    run_uclient("udp rest", s.udp().port(), &["-u", "user42", "-W", SECRET]).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_tcp() {
    if !have_turnutils("uclient_tcp") {
        return;
    }
    let s = start(loopback_settings()).await;
    run_uclient("tcp", s.tcp().port(), &["-t", "-u", "u", "-w", "p"]).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_udp_send_indications() {
    if !have_turnutils("uclient_udp_send_indications") {
        return;
    }
    let s = start(loopback_settings()).await;
    run_uclient("udp send", s.udp().port(), &["-s", "-u", "u", "-w", "p"]).await;
    s.stop().await;
}
