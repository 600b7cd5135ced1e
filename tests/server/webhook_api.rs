//! Webhook endpoints through the server API (issue 14, item 1; ADR 0074), against the real
//! server over HTTP with a real receiver: an endpoint created through the API gets events
//! signed with the secret the API returned, rotates it, changes and is deleted; configured
//! endpoints are listed but refuse changes; every refusal; API endpoints survive a SIGKILL
//! and restart; deleting one drops its pending events; and in a cluster an endpoint created on
//! one node is delivered to by another; the list shows a failing endpoint paused.

use crate::admin::{API_KEY, api, call};
use crate::client::{Client, WsClient};
use crate::cluster::{Cluster, NodeOptions};
use crate::durability::Schema;
use crate::server::{TestServer, Transport, http_request, mint, scratch_dir};
use crate::webhooks::{Node, Received, Receiver, check_once_and_signed, of_space, one_call, types};
use serde_json::{Value, json};
use signaling::auth::Grants;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BASE: &str = "/api/v1/admin/webhooks";
/// The tests' receivers listen here: API endpoints may reach it only when it is allowed.
const LOOPBACK: &str = "127.0.0.0/8";

fn at(id: &str) -> String {
    format!("{BASE}/{id}")
}

/// A configured endpoint nothing is sent to in these tests (it wants room events only).
fn configured() -> config::WebhookEndpoint {
    config::WebhookEndpoint {
        id: "configured".into(),
        url: "http://127.0.0.1:9/never".into(),
        secret: config::WebhookSecrets::One("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        events: vec!["room.*".into()],
    }
}

/// Creates an endpoint for `url` with `events`: (id, secret).
async fn create(addr: std::net::SocketAddr, url: &str, events: &[&str]) -> (String, String) {
    let (status, body) = api(
        addr,
        "POST",
        BASE,
        Some(json!({"url": url, "events": events})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["webhook"]["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

/// A 1:1 call on `addr` between two fresh users; its id.
async fn a_call(addr: std::net::SocketAddr, n: usize) -> String {
    let (x, y) = (format!("alice{n}"), format!("bob{n}"));
    let token = |u: &str| mint(u, Grants::default(), Duration::from_secs(600));
    let mut caller = Client::Ws(WsClient::connect(addr, &token(&x)).await.unwrap());
    let mut callee = Client::Ws(WsClient::connect(addr, &token(&y)).await.unwrap());
    let ack = caller.initiate("audio", &[y.as_str()]).await;
    let call = ack["callId"].as_str().unwrap().to_owned();
    callee
        .request("call:accept", json!({"callId": call}))
        .await
        .unwrap();
    caller
        .request("call:end", json!({"callId": call}))
        .await
        .unwrap();
    call
}

const CALL_ONLY: [&str; 3] = ["call.started", "call.answered", "call.ended"];

/// The requests of one call, once it has all arrived.
async fn call_events(receiver: &Receiver, call: &str) -> Vec<Received> {
    let call = call.to_owned();
    receiver
        .wait_for(Duration::from_secs(20), |d| {
            of_space(d, &call).len() >= CALL_ONLY.len()
        })
        .await;
    let got: Vec<Received> = receiver
        .delivered()
        .into_iter()
        .filter(|r| r.body["data"]["callId"] == call.as_str())
        .collect();
    assert_eq!(types(&of_space(&got, &call)), CALL_ONLY);
    got
}

#[tokio::test]
async fn an_api_endpoint_gets_signed_events_rotates_changes_and_is_deleted() {
    let receiver = Receiver::start(0).await;
    let server = TestServer::with(|c| {
        c.webhook.allowed_ranges = vec![LOOPBACK.into()];
        c.webhooks = vec![configured()];
    })
    .await;
    let (status, body) = api(
        server.addr,
        "POST",
        BASE,
        Some(json!({"url": receiver.url(), "events": ["call.*"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["webhook"]["id"].as_str().unwrap().to_owned();
    let first = body["secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_"), "{body}");
    assert!(first.starts_with("whsec_"), "{body}");
    assert_eq!(body["webhook"]["source"], "api");
    assert_eq!(body["webhook"]["events"], json!(["call.*"]));
    assert_eq!(body["webhook"]["secrets"], 1);

    // Events go out signed with the secret the API returned.
    receiver.set_secret(&first);
    let call1 = a_call(server.addr, 1).await;
    let got = call_events(&receiver, &call1).await;
    assert!(got.iter().all(|r| r.verified), "{got:#?}");

    // Listed with the configured one (first), never with a secret.
    let (status, list) = api(server.addr, "GET", BASE, None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["configured", id.as_str()]);
    assert_eq!(list[0]["source"], "config");
    assert_eq!(list[1]["paused"], false);
    assert_eq!(list[1]["failures"], 0);
    let (status, one) = api(server.addr, "GET", &at(&id), None).await;
    assert_eq!((status, &one), (200, &list[1]));
    for text in [list.to_string(), one.to_string()] {
        assert!(!text.contains("whsec_"), "no secret shown: {text}");
    }

    // A configured endpoint is not changed here.
    for (method, path, body) in [
        ("DELETE", at("configured"), None),
        ("PUT", at("configured"), Some(json!({"events": ["*"]}))),
        (
            "POST",
            format!("{}/secrets", at("configured")),
            Some(json!({})),
        ),
    ] {
        let (status, err) = api(server.addr, method, &path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (409, Some("managed_by_config")),
            "{method} {path}: {err}"
        );
    }

    // Rotation: the new secret and, for the grace period, the old one both sign.
    let (status, body) = api(
        server.addr,
        "POST",
        &format!("{}/secrets", at(&id)),
        Some(json!({"graceSecs": 600})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let second = body["secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(body["webhook"]["secrets"], 2);
    let call2 = a_call(server.addr, 2).await;
    assert!(
        call_events(&receiver, &call2)
            .await
            .iter()
            .all(|r| r.verified)
    );
    receiver.set_secret(&second);
    let call3 = a_call(server.addr, 3).await;
    assert!(
        call_events(&receiver, &call3)
            .await
            .iter()
            .all(|r| r.verified)
    );

    // A rotation without grace: the previous secrets stop signing at once.
    let (status, body) = api(
        server.addr,
        "POST",
        &format!("{}/secrets", at(&id)),
        Some(json!({"graceSecs": 0})),
    )
    .await;
    assert_eq!((status, &body["webhook"]["secrets"]), (201, &json!(1)));
    let third = body["secret"].as_str().unwrap().to_owned();
    let call4 = a_call(server.addr, 4).await;
    let got = call_events(&receiver, &call4).await;
    assert!(
        got.iter().all(|r| !r.verified),
        "the second secret no longer signs"
    );
    receiver.set_secret(&third);
    let call5 = a_call(server.addr, 5).await;
    assert!(
        call_events(&receiver, &call5)
            .await
            .iter()
            .all(|r| r.verified)
    );

    // Changed to room events only: a call sends nothing.
    let (status, body) = api(
        server.addr,
        "PUT",
        &at(&id),
        Some(json!({"events": ["room.*"]})),
    )
    .await;
    assert_eq!(
        (status, &body["events"]),
        (200, &json!(["room.*"])),
        "{body}"
    );
    let before = receiver.log().len();
    a_call(server.addr, 6).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.log().len(), before, "no call events any more");

    // Back to calls, then deleted: nothing more arrives, and it is gone.
    let (status, _) = api(
        server.addr,
        "PUT",
        &at(&id),
        Some(json!({"events": ["call.*"]})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(server.addr, "DELETE", &at(&id), None).await;
    assert_eq!(
        (status, body["id"].as_str()),
        (200, Some(id.as_str())),
        "{body}"
    );
    let before = receiver.log().len();
    a_call(server.addr, 7).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.log().len(), before, "deleted: no deliveries");
    let (status, err) = api(server.addr, "GET", &at(&id), None).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
    let (status, _) = api(server.addr, "DELETE", &at(&id), None).await;
    assert_eq!(status, 404);
    let (_, list) = api(server.addr, "GET", BASE, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_webhook_api_refuses_with_a_status_and_a_code() {
    let server = TestServer::with(|c| {
        c.admin.api_keys = vec![API_KEY.into()];
        c.webhook.allowed_ranges = vec![LOOPBACK.into()];
        c.webhook.max_api_endpoints = 2;
        c.webhooks = vec![configured()];
    })
    .await;
    let addr = server.addr;
    let url = "http://127.0.0.1:9/hook";
    let create_body = json!({"url": url});
    // No token, a bad one, a token without the admin grant.
    let user = mint("someone", Grants::default(), Duration::from_secs(600));
    for (bearer, expect) in [
        (None, (401, "token_missing")),
        (Some("nope"), (401, "token_invalid")),
        (Some(user.as_str()), (403, "forbidden")),
    ] {
        for (method, path) in [
            ("GET", BASE.to_owned()),
            ("POST", BASE.to_owned()),
            ("DELETE", at("x")),
        ] {
            let (status, err) = call(addr, method, &path, bearer, Some(create_body.clone())).await;
            assert_eq!(
                (status, err["code"].as_str()),
                (expect.0, Some(expect.1)),
                "{method} {path} {bearer:?}"
            );
        }
    }
    // Unknown ids.
    for (method, path, body) in [
        ("GET", at("wh_nope"), None),
        ("PUT", at("wh_nope"), Some(json!({"events": ["*"]}))),
        ("DELETE", at("wh_nope"), None),
        (
            "POST",
            format!("{}/secrets", at("wh_nope")),
            Some(json!({})),
        ),
    ] {
        let (status, err) = api(addr, method, &path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {err}"
        );
    }
    // Bad URLs, events, secrets and shapes: 422 `invalid_payload`, naming the field.
    let long = format!("https://example.com/{}", "a".repeat(2100));
    for (body, field) in [
        (json!({"url": "ftp://example.com/hook"}), "`url`"),
        (json!({"url": "http://"}), "`url`"),
        (json!({"url": "https://exa mple.com/"}), "`url`"),
        (json!({"url": long}), "`url`"),
        (
            json!({"url": url, "events": ["call.rang"]}),
            "unknown event `call.rang`",
        ),
        (
            json!({"url": url, "events": vec!["call.ended"; 33]}),
            "`events`",
        ),
        (json!({"url": url, "secret": "plain"}), "`secret`"),
        (json!({"url": url, "secret": "whsec_c2hvcnQ="}), "`secret`"),
        (json!({"url": url, "colour": "red"}), "unknown field"),
        (json!({"events": ["*"]}), "missing field"),
    ] {
        let (status, err) = api(addr, "POST", BASE, Some(body.clone())).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (422, Some("invalid_payload")),
            "{body}: {err}"
        );
        assert!(
            err["message"].as_str().unwrap().contains(field),
            "{body}: {err}"
        );
    }
    let admin = crate::admin::admin_token();
    let (status, err) = call_raw(addr, "POST", BASE, &admin, "{not json").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_payload"))
    );
    let huge = json!({"url": format!("https://example.com/{}", "a".repeat(70_000))}).to_string();
    let (status, err) = call_raw(addr, "POST", BASE, &admin, &huge).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (413, Some("limit_exceeded"))
    );

    // At most `webhook.max_api_endpoints` (2); the configured one does not count.
    let (a, _) = create(addr, url, &[]).await;
    let (b, _) = create(addr, url, &["participant.*"]).await;
    let (status, err) = api(addr, "POST", BASE, Some(create_body.clone())).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("limit_exceeded")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("webhook.max_api_endpoints")
    );
    // Changes are checked like creations; an empty change is refused.
    for (body, what) in [
        (json!({}), "nothing to change"),
        (json!({"url": "mailto:x@example.com"}), "bad url"),
        (json!({"events": ["calls.*"]}), "unknown prefix"),
    ] {
        let (status, err) = api(addr, "PUT", &at(&a), Some(body)).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (422, Some("invalid_payload")),
            "{what}: {err}"
        );
    }
    for body in [
        json!({"graceSecs": 31 * 24 * 3600}),
        json!({"secret": "whsec_"}),
    ] {
        let (status, err) = api(
            addr,
            "POST",
            &format!("{}/secrets", at(&a)),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (422, Some("invalid_payload")),
            "{body}: {err}"
        );
    }
    // Nothing refused was stored or changed; deleting one makes room for another.
    let (_, list) = api(addr, "GET", BASE, None).await;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let (_, shown) = api(addr, "GET", &at(&a), None).await;
    assert_eq!(
        (shown["url"].as_str(), &shown["events"]),
        (Some(url), &json!([]))
    );
    let (status, _) = call(addr, "DELETE", &at(&b), Some(API_KEY), None).await;
    assert_eq!(status, 200, "an API key is an admin too");
    create(addr, url, &["call.ended"]).await;
    server.stop().await.unwrap();
}

/// A request with a raw body: (status, JSON answer).
async fn call_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    bearer: &str,
    body: &str,
) -> (u16, Value) {
    let (status, text) = http_request(addr, method, path, Some(bearer), Some(body)).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn node_config() -> String {
    "[webhook]
allowed_ranges = [\"127.0.0.0/8\"]
request_timeout = \"1s\"
lease = \"2s\"
backoff_initial = \"20ms\"
backoff_max = \"200ms\"
pause_after = 1000
"
    .into()
}

/// An endpoint created through the API is in the database: after SIGKILL and a restart it is
/// listed and delivered to with its secret. Deleting it drops its pending events.
#[tokio::test]
async fn api_endpoints_survive_a_restart_and_deleting_one_drops_its_pending_events() {
    let receiver = Receiver::start(0).await;
    let dir = scratch_dir();
    let mut node = Node::start(&dir, &node_config()).await;
    let (id, secret) = create(node.addr, &receiver.url(), &["call.*"]).await;
    receiver.set_secret(&secret);
    node.kill9();
    let node = Node::start(&dir, &node_config()).await;
    let (status, shown) = api(node.addr, "GET", &at(&id), None).await;
    assert_eq!(
        (status, shown["source"].as_str()),
        (200, Some("api")),
        "{shown}"
    );
    let call = a_call(node.addr, 1).await;
    assert!(
        call_events(&receiver, &call)
            .await
            .iter()
            .all(|r| r.verified)
    );

    // Pending while the receiver fails; deleted; nothing arrives once it is back.
    receiver.down.store(true, Ordering::SeqCst);
    let tried = receiver.log().len();
    a_call(node.addr, 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.log().len() == tried {
        assert!(Instant::now() < deadline, "the server tried to deliver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = api(node.addr, "DELETE", &at(&id), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["droppedEvents"].as_u64().unwrap() >= 1,
        "the call's events were pending: {body}"
    );
    receiver.down.store(false, Ordering::SeqCst);
    let delivered = receiver.delivered().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.delivered().len(),
        delivered,
        "dropped, not delivered"
    );
    drop(node);
    let node = Node::start(&dir, &node_config()).await;
    let (_, list) = api(node.addr, "GET", BASE, None).await;
    assert_eq!(list, json!([]), "the deletion was stored");
    check_once_and_signed(&receiver.delivered());
}

/// Waits until `done` holds for the list `addr` answers; how long it took.
async fn until_listed(addr: std::net::SocketAddr, done: impl Fn(&Value) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let (_, list) = api(addr, "GET", BASE, None).await;
        if done(&list) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the other node never saw the change: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lists(list: &Value, id: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|w| w["id"] == id))
}

/// Two nodes sharing Redis and PostgreSQL: endpoints created and deleted on node A reach node
/// B at once (announced over the cluster bus); with A killed, B delivers A's endpoint's events, signed with its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_created_on_one_node_is_delivered_to_by_another() {
    let schema = Schema::create().await;
    let receiver = Receiver::start(0).await;
    let other = Receiver::start(0).await;
    let env = vec![
        ("CHORUS_CHAT_DATABASE_URL".to_owned(), schema.url()),
        (
            "CHORUS_WEBHOOK_BACKOFF_INITIAL".to_owned(),
            "20ms".to_owned(),
        ),
        ("CHORUS_WEBHOOK_BACKOFF_MAX".to_owned(), "200ms".to_owned()),
        (
            "CHORUS_WEBHOOK_ALLOWED_RANGES".to_owned(),
            LOOPBACK.to_owned(),
        ),
    ];
    let mut cluster = Cluster::start_with("webhook-api", 2, &NodeOptions { env }).await;
    let (a, b) = (cluster.node(0).addr, cluster.node(1).addr);
    let (kept, secret) = create(a, &receiver.url(), &["call.*"]).await;
    receiver.set_secret(&secret);
    let added = until_listed(b, |l| lists(l, &kept)).await;
    let (gone, _) = create(a, &other.url(), &["call.*"]).await;
    until_listed(b, |l| lists(l, &gone)).await;
    let (status, _) = api(a, "DELETE", &at(&gone), None).await;
    assert_eq!(status, 200);
    let removed = until_listed(b, |l| !lists(l, &gone)).await;
    eprintln!(
        "webhook endpoint reached the other node after {added:?}; its deletion after {removed:?}"
    );
    // Announced over the cluster bus, a change is read at once, not at the next 2 s sync:
    // without the announcement both would be under 700 ms only about one time in eight.
    assert!(
        added < Duration::from_millis(700) && removed < Duration::from_millis(700),
        "added after {added:?}, removed after {removed:?}"
    );

    cluster.nodes[0].kill9();
    let mut alice = cluster.node(1).client(Transport::Ws, "alice").await;
    let mut bob = cluster.node(1).client(Transport::Ws, "bob").await;
    let call = one_call(&mut alice, &mut bob).await;
    let got = call_events(&receiver, &call).await;
    assert!(got.iter().all(|r| r.verified), "{got:#?}");
    assert!(other.log().is_empty(), "the deleted endpoint got nothing");
    drop(cluster);
    schema.drop_now().await;
}

/// The list shows an endpoint's health as the node asked sees it: failures in a row, and
/// `paused` after `webhook.pause_after` of them.
#[tokio::test]
async fn the_list_shows_a_failing_endpoint_paused() {
    let receiver = Receiver::start(0).await;
    receiver.down.store(true, Ordering::SeqCst);
    let server = TestServer::with(|c| {
        c.webhook.allowed_ranges = vec![LOOPBACK.into()];
        c.webhook.pause_after = 2;
        c.webhook.pause_for = config::HumanDuration::secs(60);
        c.webhook.backoff_initial = config::HumanDuration::millis(20);
        c.webhook.backoff_max = config::HumanDuration::millis(50);
    })
    .await;
    let (id, _) = create(server.addr, &receiver.url(), &["call.*"]).await;
    a_call(server.addr, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, shown) = api(server.addr, "GET", &at(&id), None).await;
        if shown["paused"] == true {
            assert!(shown["failures"].as_u64().unwrap() >= 2, "{shown}");
            break;
        }
        assert!(Instant::now() < deadline, "never paused: {shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, list) = api(server.addr, "GET", BASE, None).await;
    assert_eq!(list[0]["paused"], true, "{list}");
    server.stop().await.unwrap();
}

/// By default an endpoint created through the API reaches public addresses only: an address
/// that is not public is refused at creation (the metadata service, a private network,
/// loopback, also written as IPv4-mapped IPv6), and a host name that resolves to loopback is
/// created but never connected to, so the receiver gets nothing and the attempts fail.
#[tokio::test]
async fn api_endpoints_reach_only_public_addresses_unless_allowed() {
    let receiver = Receiver::start(0).await;
    let server = TestServer::with(|c| {
        c.webhook.backoff_initial = config::HumanDuration::millis(20);
        c.webhook.backoff_max = config::HumanDuration::millis(50);
    })
    .await;
    for url in [
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.1.2.3:8080/hook".to_owned(),
        "https://[::ffff:127.0.0.1]/hook".to_owned(),
        receiver.url(),
    ] {
        let (status, body) = api(server.addr, "POST", BASE, Some(json!({ "url": url }))).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["code"], "invalid_payload", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("webhook.allowed_ranges")),
            "{body}"
        );
    }
    let by_name = receiver.url().replace("127.0.0.1", "localhost");
    let (id, _secret) = create(server.addr, &by_name, &["call.*"]).await;
    let path = format!("{BASE}/{id}");
    let (status, body) = api(
        server.addr,
        "PUT",
        &path,
        Some(json!({"url": "http://192.168.1.10/hook"})),
    )
    .await;
    assert_eq!(status, 422, "an update is checked too: {body}");
    a_call(server.addr, 0).await;
    // Attempts happen and fail (retried), and none reaches the receiver.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = crate::server::http_get(server.addr, "/metrics", None).await;
        let retried = metrics.lines().any(|l| {
            l.starts_with(&format!(
                "chorus_webhook_events_retried_total{{endpoint=\"{id}\"}}"
            ))
        });
        if retried {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint's attempts fail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.log().is_empty(), "nothing reached the receiver");
    server.stop().await.unwrap();
}
