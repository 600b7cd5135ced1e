//! WHIP ingest (RFC 9725) through the whole server: a webrtc-rs (0.21) peer publishes over
//! plain HTTP (`POST /whip/v1/rooms/{room}`), a room member on the WebSocket protocol sees it
//! join and receives its media byte for byte; and every HTTP refusal the RFC names.

use crate::server::{TestServer, mint};
use serde_json::Value;
use signaling::auth::Grants;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use testkit::{Kind, Peer, WsClient, media};

/// Every test here finishes well inside this.
const LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(LIMIT, test)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {LIMIT:?}"));
}

/// A token for `user` granting `room`.
pub(crate) fn room_token(user: &str, room: &str) -> String {
    let grants = Grants {
        room: Some(room.to_owned()),
        ..Grants::default()
    };
    mint(user, grants, Duration::from_secs(600))
}

/// A server that creates rooms on first join.
pub(crate) async fn server() -> TestServer {
    server_with(|_| {}).await
}

pub(crate) async fn server_with(tweak: impl FnOnce(&mut config::Config)) -> TestServer {
    TestServer::with(|c| {
        c.rooms.auto_create = Some(true);
        tweak(c);
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 client that shows every header.

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `code` of a JSON error body.
    pub(crate) fn code(&self) -> String {
        let v: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        v["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// One request over a fresh connection, with `headers` and an optional body.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    // Read until the server closes; a refusal that left part of the body unread may end in a
    // reset after the answer, which still counts as the end.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(n) = s.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// `POST` an offer to `room`'s endpoint with `token`.
pub(crate) async fn post_offer(addr: SocketAddr, room: &str, token: &str, offer: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    send(
        addr,
        "POST",
        &format!("/whip/v1/rooms/{room}"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/sdp"),
        ],
        Some(offer),
    )
    .await
}

/// `PATCH` a fragment onto session `location`, with `If-Match` when given.
async fn patch(
    addr: SocketAddr,
    location: &str,
    token: &str,
    if_match: Option<&str>,
    fragment: &str,
) -> Reply {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/trickle-ice-sdpfrag"),
    ];
    if let Some(tag) = if_match {
        headers.push(("If-Match", tag));
    }
    send(addr, "PATCH", location, &headers, Some(fragment)).await
}

pub(crate) async fn delete(addr: SocketAddr, location: &str, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    send(
        addr,
        "DELETE",
        location,
        &[("Authorization", &bearer)],
        None,
    )
    .await
}

/// A WebRTC publisher of Opus and VP8, and its offer.
pub(crate) async fn encoder() -> (Peer, testkit::LocalTrack, testkit::LocalTrack, String) {
    let mut pc = Peer::new().await;
    let audio = pc.publish(Kind::Audio, "mic", 0x0A0D_10A1).await;
    let video = pc.publish(Kind::Video, "cam", 0x0B1D_E0B2).await;
    let offer = pc.offer().await;
    (pc, audio, video, offer)
}

/// `user` in `room` over the WebSocket protocol, with a receive-only peer connected to the SFU.
pub(crate) async fn member(addr: SocketAddr, user: &str, room: &str) -> (WsClient, Peer) {
    let mut client = WsClient::connect(addr, &room_token(user, room))
        .await
        .unwrap();
    client.join_room(room).await;
    let mut pc = Peer::new().await;
    pc.receive_only(Kind::Audio).await;
    let offer = pc.offer().await;
    let answer = client
        .offer_to_sfu(&format!("room:{room}"), &offer)
        .await
        .unwrap();
    pc.accept_answer(answer).await;
    pc.wait_connected(user).await;
    (client, pc)
}

/// `chorus_signaling_connections{transport="whip"}` from `/metrics`.
async fn whip_connections(server: &TestServer) -> i64 {
    let (status, text) = crate::server::http_get(server.addr, "/metrics", None).await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(r#"chorus_signaling_connections{transport="whip"} "#))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Polls until the server holds no WHIP session (bounded).
pub(crate) async fn no_whip_sessions(server: &TestServer) {
    let whip = server.signaling.whip.as_ref().expect("WHIP is served");
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while !whip.is_empty() {
        assert!(
            tokio::time::Instant::now() < end,
            "{} WHIP sessions left",
            whip.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whip_publisher_reaches_a_room_member_byte_for_byte() {
    bounded(async {
        let server = server().await;
        let (room, space) = ("stage", "room:stage");
        let (mut bob, mut bob_pc) = member(server.addr, "bob", room).await;

        let token = room_token("encoder", room);
        let (mut pc, audio, video, offer) = encoder().await;
        let reply = post_offer(server.addr, room, &token, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        assert_eq!(reply.header("content-type"), Some("application/sdp"));
        let location = reply.header("location").expect("Location").to_owned();
        assert!(location.starts_with("/whip/v1/sessions/"), "{location}");
        let etag = reply.header("etag").expect("ETag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert_eq!(
            reply.header("accept-patch"),
            Some("application/trickle-ice-sdpfrag")
        );
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        // The test config has one STUN and one TURN URL: a Link each, TURN with credentials.
        let links = reply.all("link");
        assert_eq!(links.len(), 2, "{links:?}");
        assert_eq!(
            links[0],
            "<stun:stun.example.test:3478>; rel=\"ice-server\""
        );
        assert!(
            links[1].starts_with(
                "<turn:turn.example.test:3478?transport=udp>; rel=\"ice-server\"; username=\""
            ) && links[1].contains(":encoder\"; credential=\"")
                && links[1].ends_with("; credential-type=\"password\""),
            "{}",
            links[1]
        );
        assert!(reply.body.contains("a=ice-lite"), "{}", reply.body);
        pc.accept_answer(reply.body.clone()).await;
        pc.wait_connected("the WHIP encoder").await;

        // The room sees the encoder join as a participant, and its two tracks published.
        let joined = bob.expect("call:participant:joined").await;
        assert_eq!(joined["callId"], space, "{joined}");
        assert_eq!(joined["participant"]["userId"], "encoder", "{joined}");
        for _ in 0..2 {
            let t = bob.expect("track:published").await;
            assert_eq!(t["userId"], "encoder", "{t}");
        }
        bob.answer_server_offer(&mut bob_pc, space).await;

        // The encoder sends 20 ms packets until bob has plenty of both kinds (bounded).
        let (mut sent, mut got_audio, mut got_video) = (0u32, 0u32, 0u32);
        let end = tokio::time::Instant::now() + Duration::from_secs(8);
        while (got_audio < 50 || got_video < 50) && tokio::time::Instant::now() < end {
            audio.send(sent).await;
            video.send(sent).await;
            sent += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Some(p) = bob_pc.try_received() {
                let n = media::number_of(p.kind, &p.payload).filter(|n| *n < sent);
                assert!(n.is_some(), "bob got a payload the encoder never sent");
                match p.kind {
                    Kind::Audio => got_audio += 1,
                    _ => got_video += 1,
                }
            }
        }
        eprintln!("WHIP sent {sent} + {sent}; bob got {got_audio} audio, {got_video} video");
        assert!(
            got_audio >= 50 && got_video >= 50,
            "{got_audio} {got_video}"
        );

        // The session counts as a signaling connection of its own transport.
        assert_eq!(whip_connections(&server).await, 1);

        // DELETE ends it: the room hears the encoder leave; the session is gone.
        let reply = delete(server.addr, &location, &token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let left = bob.expect("call:participant:left").await;
        assert_eq!(left["userId"], "encoder", "{left}");
        no_whip_sessions(&server).await;
        assert_eq!(whip_connections(&server).await, 0);
        let again = delete(server.addr, &location, &token).await;
        assert_eq!(again.status, 404, "{again:?}");
        let patched = patch(
            server.addr,
            &location,
            &token,
            Some("*"),
            "a=end-of-candidates",
        )
        .await;
        assert_eq!(patched.status, 404, "{patched:?}");
        pc.close().await;
        bob_pc.close().await;
        bob.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_posts_refusals_follow_the_rfc() {
    bounded(async {
        let server = server_with(|c| c.rooms.auto_create = Some(false)).await;
        let addr = server.addr;
        let (_pc, _audio, _video, offer) = encoder().await;
        let token = room_token("encoder", "stage");

        // No token: 401.
        let reply = send(
            addr,
            "POST",
            "/whip/v1/rooms/stage",
            &[("Content-Type", "application/sdp")],
            Some(&offer),
        )
        .await;
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(reply.code(), "token_missing");
        // A bad token: 401.
        let reply = post_offer(addr, "stage", "not.a.token", &offer).await;
        assert_eq!(reply.status, 401, "{reply:?}");
        // The token grants another room: 403.
        let reply = post_offer(addr, "backstage", &token, &offer).await;
        assert_eq!(reply.status, 403, "{reply:?}");
        assert_eq!(reply.code(), "forbidden");
        // The granted room does not exist and is not created by a join here: 404.
        let reply = post_offer(addr, "stage", &token, &offer).await;
        assert_eq!(reply.status, 404, "{reply:?}");
        assert_eq!(reply.code(), "not_found");
        // Not application/sdp: 415.
        let bearer = format!("Bearer {token}");
        let reply = send(
            addr,
            "POST",
            "/whip/v1/rooms/stage",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            Some("{}"),
        )
        .await;
        assert_eq!(reply.status, 415, "{reply:?}");
        // Nothing was left behind by the refusals.
        assert!(server.signaling.whip.as_ref().unwrap().is_empty());
        let stats = server.sfu.as_ref().unwrap().snapshot().await.unwrap();
        assert_eq!(stats, ::sfu::Stats::default());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_sdp_and_oversized_bodies_are_refused() {
    bounded(async {
        let server = server_with(|c| c.whip.max_sdp_bytes = 4096).await;
        let addr = server.addr;
        let token = room_token("encoder", "stage");
        // Not SDP at all: 400.
        let reply = post_offer(addr, "stage", &token, "hello").await;
        assert_eq!(reply.status, 400, "{reply:?}");
        // SDP-looking text the SFU cannot parse: 400, and the room is left again.
        let garbage = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=nonsense\r\n";
        let reply = post_offer(addr, "stage", &token, garbage).await;
        assert_eq!(reply.status, 400, "{reply:?}");
        assert_eq!(reply.code(), "invalid_payload");
        // Over whip.max_sdp_bytes: 413.
        let big = format!("v=0\r\n{}", "a=x\r\n".repeat(1000));
        let reply = post_offer(addr, "stage", &token, &big).await;
        assert_eq!(reply.status, 413, "{reply:?}");
        // A member who joins now finds nobody in the room: the refused offers left no one.
        let mut bob = WsClient::connect(addr, &room_token("bob", "stage"))
            .await
            .unwrap();
        let ack = bob.join_room("stage").await;
        assert_eq!(ack["participants"], serde_json::json!([]), "{ack}");
        bob.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patch_checks_its_preconditions_trickles_and_restarts_ice() {
    bounded(async {
        let server = server().await;
        let addr = server.addr;
        let token = room_token("encoder", "stage");
        let (mut pc, _audio, _video, offer) = encoder().await;
        let reply = post_offer(addr, "stage", &token, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let location = reply.header("location").unwrap().to_owned();
        let etag = reply.header("etag").unwrap().to_owned();
        let answer = reply.body.clone();
        pc.accept_answer(answer.clone()).await;
        pc.wait_connected("the WHIP encoder").await;

        let client_ufrag = line_value(&offer, "a=ice-ufrag:");
        let client_pwd = line_value(&offer, "a=ice-pwd:");
        let trickle = format!(
            "a=ice-ufrag:{client_ufrag}\r\na=ice-pwd:{client_pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
             a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
        );
        // No If-Match: 428. A stale one: 412. Wrong content type: 415.
        let reply = patch(addr, &location, &token, None, &trickle).await;
        assert_eq!(reply.status, 428, "{reply:?}");
        let reply = patch(addr, &location, &token, Some("\"stale\""), &trickle).await;
        assert_eq!(reply.status, 412, "{reply:?}");
        let bearer = format!("Bearer {token}");
        let reply = send(
            addr,
            "PATCH",
            &location,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/sdp"),
                ("If-Match", &etag),
            ],
            Some(&trickle),
        )
        .await;
        assert_eq!(reply.status, 415, "{reply:?}");
        // Garbage: 400.
        let reply = patch(addr, &location, &token, Some(&etag), "not a fragment").await;
        assert_eq!(reply.status, 400, "{reply:?}");
        // The current ETag: the candidate is trickled, 204.
        let reply = patch(addr, &location, &token, Some(&etag), &trickle).await;
        assert_eq!(reply.status, 204, "{reply:?}");
        // Another user's token, or an unknown session: 404.
        let reply = patch(addr, &location, &room_token("mallory", "stage"), Some(&etag), &trickle).await;
        assert_eq!(reply.status, 404, "{reply:?}");
        let reply = patch(addr, "/whip/v1/sessions/0123", &token, Some(&etag), &trickle).await;
        assert_eq!(reply.status, 404, "{reply:?}");

        // An ICE restart (new client credentials, If-Match: *): 200 with the server's new
        // credentials and a new ETag; the old ETag is then stale.
        let restart = "a=ice-ufrag:fresh\r\na=ice-pwd:freshpasswordfreshpassword\r\n";
        let reply = patch(addr, &location, &token, Some("*"), restart).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/trickle-ice-sdpfrag")
        );
        let new_etag = reply.header("etag").expect("a new ETag").to_owned();
        assert_ne!(new_etag, etag);
        let server_ufrag = line_value(&reply.body, "a=ice-ufrag:");
        assert!(!server_ufrag.is_empty(), "{}", reply.body);
        assert_ne!(server_ufrag, line_value(&answer, "a=ice-ufrag:"));
        assert!(reply.body.contains("a=candidate:"), "{}", reply.body);
        let reply = patch(addr, &location, &token, Some(&etag), "a=end-of-candidates\r\n").await;
        assert_eq!(reply.status, 412, "{reply:?}");
        let reply = patch(addr, &location, &token, Some(&new_etag), "a=end-of-candidates\r\n").await;
        assert_eq!(reply.status, 204, "{reply:?}");

        let reply = delete(addr, &location, &token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        no_whip_sessions(&server).await;
        pc.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn options_answers_cors_preflights() {
    bounded(async {
        let server = server().await;
        let preflight = [
            ("Origin", "https://studio.example"),
            ("Access-Control-Request-Method", "POST"),
        ];
        let reply = send(
            server.addr,
            "OPTIONS",
            "/whip/v1/rooms/stage",
            &preflight,
            None,
        )
        .await;
        assert_eq!(reply.status, 204, "{reply:?}");
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        let methods = reply.header("access-control-allow-methods").unwrap();
        assert!(methods.contains("POST"), "{methods}");
        let allowed = reply.header("access-control-allow-headers").unwrap();
        for h in ["Authorization", "Content-Type", "If-Match"] {
            assert!(allowed.contains(h), "{allowed}");
        }
        let exposed = reply.header("access-control-expose-headers").unwrap();
        for h in ["Location", "ETag", "Link"] {
            assert!(exposed.contains(h), "{exposed}");
        }
        let reply = send(
            server.addr,
            "OPTIONS",
            "/whip/v1/sessions/abc",
            &preflight,
            None,
        )
        .await;
        assert_eq!(reply.status, 204, "{reply:?}");
        let methods = reply.header("access-control-allow-methods").unwrap();
        assert!(
            methods.contains("PATCH") && methods.contains("DELETE"),
            "{methods}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_are_limited_and_end_when_ice_never_connects() {
    bounded(async {
        let server = server_with(|c| {
            c.whip.max_sessions_per_user = 1;
            c.whip.connect_timeout = config::HumanDuration::millis(700);
        })
        .await;
        let addr = server.addr;
        let mut bob = WsClient::connect(addr, &room_token("bob", "stage"))
            .await
            .unwrap();
        bob.join_room("stage").await;
        let token = room_token("encoder", "stage");
        // The encoder posts its offer but never applies the answer: ICE never comes up.
        let (_pc, _audio, _video, offer) = encoder().await;
        let reply = post_offer(addr, "stage", &token, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let joined = bob.expect("call:participant:joined").await;
        assert_eq!(joined["participant"]["userId"], "encoder", "{joined}");
        // One session per user here: a second is refused with 409 while the first lives.
        let reply = post_offer(addr, "stage", &token, &offer).await;
        assert_eq!(reply.status, 409, "{reply:?}");
        assert_eq!(reply.code(), "limit_exceeded");
        // whip.connect_timeout later the session ends and the encoder leaves the room.
        let left = bob.expect("call:participant:left").await;
        assert_eq!(left["userId"], "encoder", "{left}");
        no_whip_sessions(&server).await;
        let location = reply.header("location");
        assert!(location.is_none());
        bob.close().await;
    })
    .await;
}

/// The value of the first line starting with `prefix`.
pub(crate) fn line_value(sdp: &str, prefix: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encoder_that_hangs_up_leaves_the_room() {
    bounded(async {
        // Whether the peer's close reaches the SFU as a DTLS close or as silence, the SFU
        // drops the participant within this.
        let server = server_with(|c| c.sfu.ice_timeout = config::HumanDuration::secs(2)).await;
        let addr = server.addr;
        let mut bob = WsClient::connect(addr, &room_token("bob", "stage"))
            .await
            .unwrap();
        bob.join_room("stage").await;
        let token = room_token("encoder", "stage");
        let (mut pc, _audio, _video, offer) = encoder().await;
        let reply = post_offer(addr, "stage", &token, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        pc.accept_answer(reply.body.clone()).await;
        pc.wait_connected("the WHIP encoder").await;
        bob.expect("call:participant:joined").await;
        // Closing the peer without a DELETE: the SFU sees DTLS close, the session ends.
        pc.close().await;
        let left = bob.expect("call:participant:left").await;
        assert_eq!(left["userId"], "encoder", "{left}");
        no_whip_sessions(&server).await;
        bob.close().await;
    })
    .await;
}

/// `user`'s encoder publishes into `room` with `token` and connects; `bob`, in the room, sees
/// it join. Returns the encoder's peer.
async fn connected_encoder(
    addr: SocketAddr,
    room: &str,
    token: &str,
    user: &str,
    bob: &mut WsClient,
) -> Peer {
    let (mut pc, _audio, _video, offer) = encoder().await;
    let reply = post_offer(addr, room, token, &offer).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    pc.accept_answer(reply.body.clone()).await;
    pc.wait_connected("the WHIP encoder").await;
    let joined = bob.expect("call:participant:joined").await;
    assert_eq!(joined["participant"]["userId"], user, "{joined}");
    pc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removal_revocation_and_expiry_end_a_session() {
    bounded(async {
        let server = server_with(|c| c.auth.leeway = config::HumanDuration::secs(0)).await;
        let addr = server.addr;
        let mut bob = WsClient::connect(addr, &room_token("bob", "stage"))
            .await
            .unwrap();
        bob.join_room("stage").await;

        // The server API removes the encoder from the room: its session ends.
        let pc = connected_encoder(
            addr,
            "stage",
            &room_token("cam1", "stage"),
            "cam1",
            &mut bob,
        )
        .await;
        let (status, body) = crate::admin::api(
            addr,
            "DELETE",
            "/api/v1/admin/rooms/stage/participants/cam1",
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let left = bob.expect("call:participant:left").await;
        assert_eq!(left["userId"], "cam1", "{left}");
        no_whip_sessions(&server).await;
        pc.close().await;

        // The encoder's user is revoked: its session ends at once.
        let pc = connected_encoder(
            addr,
            "stage",
            &room_token("cam2", "stage"),
            "cam2",
            &mut bob,
        )
        .await;
        let (status, body) = crate::admin::api(
            addr,
            "POST",
            "/api/v1/admin/revocations",
            Some(serde_json::json!({"userId": "cam2"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let left = bob.expect("call:participant:left").await;
        assert_eq!(left["userId"], "cam2", "{left}");
        no_whip_sessions(&server).await;
        pc.close().await;

        // The token runs out (no leeway here): the session ends with it.
        let grants = Grants {
            room: Some("stage".into()),
            ..Grants::default()
        };
        let short = mint("cam3", grants, Duration::from_secs(3));
        let pc = connected_encoder(addr, "stage", &short, "cam3", &mut bob).await;
        let left = bob
            .expect_within("call:participant:left", Duration::from_secs(8))
            .await;
        assert_eq!(left["userId"], "cam3", "{left}");
        no_whip_sessions(&server).await;
        pc.close().await;
        bob.close().await;
    })
    .await;
}

/// Sends packets numbered from `from` on both tracks every 20 ms until `receiver` got at least
/// 50 of each kind numbered `from` or later (bounded to 8 s); returns the next number and what
/// arrived (audio, video). Every payload must be one that was sent.
pub(crate) async fn stream(
    audio: &testkit::LocalTrack,
    video: &testkit::LocalTrack,
    receiver: &mut Peer,
    from: u32,
) -> (u32, u32, u32) {
    let (mut next, mut got_audio, mut got_video) = (from, 0u32, 0u32);
    let end = tokio::time::Instant::now() + Duration::from_secs(8);
    while (got_audio < 50 || got_video < 50) && tokio::time::Instant::now() < end {
        audio.send(next).await;
        video.send(next).await;
        next += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Some(p) = receiver.try_received() {
            let n = media::number_of(p.kind, &p.payload).filter(|n| *n < next);
            let n = n.expect("every payload received is one that was sent");
            if n < from {
                continue;
            }
            match p.kind {
                Kind::Audio => got_audio += 1,
                _ => got_video += 1,
            }
        }
    }
    (next, got_audio, got_video)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ice_restart_over_patch_keeps_the_media_flowing() {
    bounded(async {
        let server = server().await;
        let (addr, room, space) = (server.addr, "stage", "room:stage");
        let (mut bob, mut bob_pc) = member(addr, "bob", room).await;
        let token = room_token("encoder", room);
        let (mut pc, audio, video, offer) = encoder().await;
        let reply = post_offer(addr, room, &token, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let location = reply.header("location").unwrap().to_owned();
        let etag = reply.header("etag").unwrap().to_owned();
        let answer = reply.body.clone();
        pc.accept_answer(answer.clone()).await;
        pc.wait_connected("the WHIP encoder").await;
        bob.expect("call:participant:joined").await;
        for _ in 0..2 {
            bob.expect("track:published").await;
        }
        bob.answer_server_offer(&mut bob_pc, space).await;
        let (next, a, v) = stream(&audio, &video, &mut bob_pc, 0).await;
        assert!(
            a >= 50 && v >= 50,
            "before the restart: {a} audio, {v} video"
        );

        // The encoder restarts ICE: its new credentials and candidates go in a PATCH, the
        // server's come back in the fragment, and the encoder applies them as its new answer.
        let restart = pc.restart_ice().await;
        let ufrag = line_value(&restart, "a=ice-ufrag:");
        let pwd = line_value(&restart, "a=ice-pwd:");
        assert_ne!(ufrag, line_value(&offer, "a=ice-ufrag:"));
        let mut fragment = format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n");
        for candidate in restart.lines().filter(|l| l.starts_with("a=candidate:")) {
            fragment.push_str(candidate);
            fragment.push_str("\r\n");
        }
        let reply = patch(addr, &location, &token, Some(&etag), &fragment).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let server_ufrag = line_value(&reply.body, "a=ice-ufrag:");
        let server_pwd = line_value(&reply.body, "a=ice-pwd:");
        assert_ne!(server_ufrag, line_value(&answer, "a=ice-ufrag:"));
        let renewed: String = answer
            .lines()
            .map(|l| {
                if l.starts_with("a=ice-ufrag:") {
                    format!("a=ice-ufrag:{server_ufrag}\r\n")
                } else if l.starts_with("a=ice-pwd:") {
                    format!("a=ice-pwd:{server_pwd}\r\n")
                } else {
                    format!("{l}\r\n")
                }
            })
            .collect();
        pc.accept_answer(renewed).await;

        // Media sent after the restart still reaches bob, and the session is still there.
        let (_, a, v) = stream(&audio, &video, &mut bob_pc, next).await;
        eprintln!("after the ICE restart bob got {a} audio and {v} video packets");
        assert!(
            a >= 50 && v >= 50,
            "after the restart: {a} audio, {v} video"
        );
        let reply = delete(addr, &location, &token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        pc.close().await;
        bob_pc.close().await;
        bob.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_cluster_a_post_goes_to_the_rooms_owner_and_members_anywhere_receive_it() {
    bounded(async {
        let options = crate::cluster::NodeOptions {
            env: vec![("CHORUS_ROOMS_AUTO_CREATE".into(), "true".into())],
        };
        let cluster = crate::cluster::Cluster::start_with("whip-owner", 2, &options).await;
        let (a, b) = (cluster.node(0), cluster.node(1));
        let (room, space) = ("hall", "room:hall");
        let token = room_token("encoder", room);
        let endpoint =
            |node: &crate::cluster::Node| format!("http://{}/whip/v1/rooms/{room}", node.addr);

        // Asked on a: answered there (a owns the room now), or sent to b, which does.
        let (mut pc, audio, video, offer) = encoder().await;
        let reply = post_offer(a.addr, room, &token, &offer).await;
        let (owner, other, reply) = match reply.status {
            201 => (a, b, reply),
            307 => {
                assert_eq!(reply.header("location"), Some(endpoint(b).as_str()));
                (b, a, post_offer(b.addr, room, &token, &offer).await)
            }
            _ => panic!("{reply:?}"),
        };
        assert_eq!(reply.status, 201, "{reply:?}");
        let location = reply.header("location").unwrap().to_owned();
        // The other node sends every POST for the room to its owner, and refuses a token
        // without the room's grant before anything else.
        let again = post_offer(other.addr, room, &room_token("encoder2", room), &offer).await;
        assert_eq!(again.status, 307, "{again:?}");
        assert_eq!(again.header("location"), Some(endpoint(owner).as_str()));
        let refused = post_offer(other.addr, "lobby", &token, &offer).await;
        assert_eq!(refused.status, 403, "{refused:?}");

        // Bob, connected to the other node, receives the stream through the owner's SFU.
        let (mut bob, mut bob_pc) = member(other.addr, "bob", room).await;
        pc.accept_answer(reply.body.clone()).await;
        pc.wait_connected("the WHIP encoder").await;
        for _ in 0..2 {
            let t = bob.expect("track:published").await;
            assert_eq!(t["userId"], "encoder", "{t}");
        }
        bob.answer_server_offer(&mut bob_pc, space).await;
        let (_, got_audio, got_video) = stream(&audio, &video, &mut bob_pc, 0).await;
        assert!(
            got_audio >= 50 && got_video >= 50,
            "{got_audio} {got_video}"
        );

        // The session lives on the owner: DELETE there.
        let reply = delete(owner.addr, &location, &token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let left = bob.expect("call:participant:left").await;
        assert_eq!(left["userId"], "encoder", "{left}");
        pc.close().await;
        bob_pc.close().await;
        bob.close().await;
    })
    .await;
}
