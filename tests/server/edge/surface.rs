//! What the public listener exposes: `/metrics` unless it has its own listener, and the demo
//! page with its security headers unless it is turned off.

use super::fetch;
use crate::server::TestServer;

#[tokio::test]
async fn metrics_are_on_the_main_listener_unless_metrics_listen_is_set() {
    let shared = TestServer::start().await;
    let (status, _, body) = fetch(shared.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("chorus_http_connections "), "{body}");
    shared.stop().await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let apart = TestServer::with(|c| c.server.metrics_listen = format!("127.0.0.1:{port}")).await;
    let metrics_addr = format!("127.0.0.1:{port}").parse().unwrap();
    // `serve` binds it on its own task: wait until it listens.
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(metrics_addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (status, _, body) = fetch(metrics_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("chorus_calls_active 0"), "{body}");
    // The public listener serves everything else, but no longer /metrics.
    let (status, _, body) = fetch(apart.addr, "/metrics").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not_found"), "{body}");
    assert_eq!(fetch(apart.addr, "/health").await.0, 200);
    apart.stop().await.unwrap();
}

#[tokio::test]
async fn the_demo_page_is_served_with_a_content_security_policy_and_no_framing() {
    let server = TestServer::start().await;
    let (status, head, body) = fetch(server.addr, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<script src=\"/app.js\""));
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_else(|| panic!("no CSP in {head}"));
    let host = server.addr.to_string();
    for directive in [
        "default-src 'self'".to_owned(),
        "script-src 'self'".to_owned(),
        "style-src 'self'".to_owned(),
        format!("connect-src 'self' ws://{host} wss://{host}"),
        "frame-ancestors 'none'".to_owned(),
        "object-src 'none'".to_owned(),
    ] {
        assert!(csp.contains(&directive), "`{directive}` missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    for path in ["/", "/app.js", "/chat.css"] {
        let (_, head, _) = fetch(server.addr, path).await;
        assert!(head.contains("x-frame-options: deny"), "{path}: {head}");
        assert!(
            head.contains("referrer-policy: no-referrer"),
            "{path}: {head}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn with_demo_page_off_its_paths_are_404_like_any_unknown_path() {
    let server = TestServer::with(|c| c.server.demo_page = false).await;
    for path in ["/", "/app.js", "/style.css"] {
        let (status, _, body) = fetch(server.addr, path).await;
        assert_eq!(status, 404, "{path}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "not_found", "{path}: {body}");
    }
    assert_eq!(fetch(server.addr, "/health").await.0, 200);
    server.stop().await.unwrap();
}
