//! The `chorus` CLI's server API commands against a running server.

use super::{API_KEY, server};
use crate::client::WsClient;
use serde_json::Value;
use std::process::Command;

fn chorus(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(args)
        .env("CHORUS_URL", format!("http://{addr}"))
        .env("CHORUS_TOKEN", API_KEY)
        .output()
        .expect("the chorus binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_creates_lists_and_deletes_rooms_and_revokes_tokens() {
    let server = server().await;
    let addr = server.addr;
    let run =
        move |args: Vec<&'static str>| tokio::task::spawn_blocking(move || chorus(addr, &args));
    let (ok, out, err) = run(vec!["rooms", "create", "lobby", "--metadata", "hi"])
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "created room lobby");
    let (ok, out, _) = run(vec!["rooms", "list"]).await.unwrap();
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[1].starts_with("lobby"),
        "{out}"
    );
    let (ok, out, _) = run(vec!["rooms", "list", "--json"]).await.unwrap();
    assert!(ok);
    let rooms: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rooms[0]["metadata"], "hi");

    // A participant shows in `participants list`, and `tokens revoke` closes their session.
    let mut eve = WsClient::connect(addr, &super::room_token("eve", "lobby"))
        .await
        .unwrap();
    eve.join_room("lobby").await;
    let (ok, out, _) = run(vec!["participants", "list", "lobby"]).await.unwrap();
    assert!(
        ok && out.lines().nth(1).is_some_and(|l| l.starts_with("eve")),
        "{out}"
    );
    let (ok, out, err) = run(vec!["tokens", "revoke", "--user", "eve"])
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("revoked user eve"), "{out}");
    assert_eq!(eve.expect("error").await["code"], "token_revoked");

    let (ok, _, err) = run(vec!["rooms", "delete", "nowhere"]).await.unwrap();
    assert!(!ok);
    assert!(err.contains("not_found (404)"), "{err}");
    let (ok, _, _) = run(vec!["rooms", "delete", "lobby"]).await.unwrap();
    assert!(ok);
    let (_, out, _) = run(vec!["rooms", "list", "--json"]).await.unwrap();
    assert_eq!(out.trim(), "[]");
    // A bad token is reported with its code.
    let bad = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args([
                "calls",
                "list",
                "--url",
                &format!("http://{addr}"),
                "--token",
                "nope",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("token_invalid (401)"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_cli_creates_lists_changes_rotates_and_deletes_webhook_endpoints() {
    let server = crate::server::TestServer::with(|c| {
        c.admin.api_keys = vec![API_KEY.into()];
        c.webhook.allowed_ranges = vec!["127.0.0.0/8".into()];
        c.webhooks = vec![config::WebhookEndpoint {
            id: "configured".into(),
            url: "http://127.0.0.1:9/never".into(),
            secret: config::WebhookSecrets::One("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            events: vec!["room.*".into()],
        }];
    })
    .await;
    let addr = server.addr;
    let run = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            chorus(addr, &args)
        })
    };
    let words = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let (ok, out, err) = run(words(
        "webhooks create http://127.0.0.1:9/hook --events call.*,participant.joined",
    ))
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    let mut lines = out.lines();
    let id = lines
        .next()
        .and_then(|l| l.strip_prefix("created webhook "))
        .unwrap()
        .to_owned();
    let secret = lines
        .next()
        .and_then(|l| l.strip_prefix("secret: "))
        .unwrap();
    assert!(
        id.starts_with("wh_") && secret.starts_with("whsec_"),
        "{out}"
    );

    let (ok, out, _) = run(words("webhooks list")).await.unwrap();
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[1].starts_with("configured"),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&id) && lines[2].contains("call.*,participant.joined"),
        "{out}"
    );
    assert!(!out.contains("whsec_"), "{out}");

    let (ok, out, err) = run(words(&format!(
        "webhooks update {id} --endpoint-url http://127.0.0.1:9/other --events room.*"
    )))
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(words(&format!(
        "webhooks update {id} --rotate --grace-secs 0"
    )))
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    let new = out
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("new secret: "));
    assert!(
        new.is_some_and(|s| s.starts_with("whsec_") && s != secret),
        "{out}"
    );
    let (ok, out, _) = run(words(&format!("webhooks get {id} --json")))
        .await
        .unwrap();
    assert!(ok);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["events"], serde_json::json!(["room.*"]));
    assert_eq!(shown["url"], "http://127.0.0.1:9/other");
    assert_eq!(shown["secrets"], 1, "grace 0: only the new secret signs");

    let (ok, _, err) = run(words("webhooks delete configured")).await.unwrap();
    assert!(!ok);
    assert!(err.contains("managed_by_config (409)"), "{err}");
    let (ok, out, err) = run(words(&format!("webhooks delete {id}"))).await.unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.starts_with(&format!("deleted webhook {id}")), "{out}");
    let (ok, _, err) = run(words(&format!("webhooks get {id}"))).await.unwrap();
    assert!(!ok && err.contains("not_found (404)"), "{err}");
    server.stop().await.unwrap();
}
