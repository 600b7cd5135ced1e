//! Every operation of the server API, and every refusal.

use super::{API_KEY, admin_token, api, call, room_token, server};
use crate::client::{Client, WsClient};
use crate::server::{Transport, http_request, mint};
use serde_json::json;
use signaling::auth::Grants;
use std::time::Duration;
use testkit::{Capture, Kind, Participant};

#[tokio::test]
async fn every_route_refuses_a_missing_bad_or_non_admin_token() {
    let server = server().await;
    let user = mint("someone", Grants::default(), Duration::from_secs(600));
    for (method, path) in signaling::admin::ROUTES {
        let path = path
            .replace("{room}", "r")
            .replace("{user}", "u")
            .replace("{track}", "t")
            .replace("{call}", "c")
            .replace("{webhook}", "w");
        let method = method.to_uppercase();
        let body = Some(json!({}));
        let (status, err) = call(server.addr, &method, &path, None, body.clone()).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (401, Some("token_missing")),
            "{method} {path}"
        );
        let (status, err) = call(server.addr, &method, &path, Some("nope"), body.clone()).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (401, Some("token_invalid")),
            "{method} {path}"
        );
        let (status, err) = call(server.addr, &method, &path, Some(&user), body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}"
        );
    }
    // A key that is not configured is a bad token; the configured one is let in.
    let wrong = "admin-api-key-admin-api-key-0123456780";
    let (status, _) = call(server.addr, "GET", "/api/v1/admin/rooms", Some(wrong), None).await;
    assert_eq!(status, 401);
    let (status, rooms) = call(
        server.addr,
        "GET",
        "/api/v1/admin/rooms",
        Some(API_KEY),
        None,
    )
    .await;
    assert_eq!((status, rooms), (200, json!([])));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_is_served_and_lists_every_route() {
    let server = server().await;
    let (status, doc) = call(server.addr, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for (method, path) in signaling::admin::ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
        assert!(doc["paths"][path][method]["responses"]["401"].is_object());
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_with_a_code() {
    let server = server().await;
    let addr = server.addr;
    let token = admin_token();
    let raw = |body: &'static str| {
        let token = token.clone();
        async move {
            http_request(
                addr,
                "POST",
                "/api/v1/admin/rooms",
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    let (status, body) = raw("{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_payload"));
    let (status, body) = raw(r#"{"name": 7}"#).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = raw(r#"{"name": "x", "extra": 1}"#).await;
    assert_eq!(status, 422, "{body}");
    let big = format!(r#"{{"name": "x", "metadata": "{}"}}"#, "m".repeat(70_000));
    let (status, body) = http_request(
        addr,
        "POST",
        "/api/v1/admin/rooms",
        Some(&token),
        Some(&big),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("limit_exceeded"));
    let (status, err) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms",
        Some(json!({"name": ""})),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (422, Some("invalid_payload"))
    );
    let long = "m".repeat(5000);
    let (status, _) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms",
        Some(json!({"name": "a", "metadata": long})),
    )
    .await;
    assert_eq!(status, 422);
    // Unknown rooms, calls and participants.
    for (method, path) in [
        ("GET", "/api/v1/admin/rooms/none"),
        ("DELETE", "/api/v1/admin/rooms/none"),
        ("GET", "/api/v1/admin/rooms/none/participants"),
        ("DELETE", "/api/v1/admin/rooms/none/participants/u"),
        ("DELETE", "/api/v1/admin/calls/none"),
        ("GET", "/api/v1/admin/calls/none"),
        ("DELETE", "/api/v1/admin/calls/none/participants/u"),
    ] {
        let (status, err) = api(addr, method, path, None).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}"
        );
    }
    let (status, _) = api(
        addr,
        "PUT",
        "/api/v1/admin/rooms/none/metadata",
        Some(json!({"metadata": "x"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms/none/data",
        Some(json!({"data": 1})),
    )
    .await;
    assert_eq!(status, 404);
    // Revocations need exactly one subject and a sane expiry.
    for body in [
        json!({}),
        json!({"userId": "a", "jti": "b"}),
        json!({"jti": ""}),
        json!({"userId": "a", "expiresAt": 5}),
    ] {
        let (status, err) = api(
            addr,
            "POST",
            "/api/v1/admin/revocations",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (422, Some("invalid_payload")),
            "{body}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn rooms_are_created_listed_described_messaged_and_deleted() {
    let server = server().await;
    let addr = server.addr;
    let (status, room) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms",
        Some(json!({"name": "town", "metadata": "m0"})),
    )
    .await;
    assert_eq!(status, 201, "{room}");
    assert_eq!(
        (room["id"].as_str(), room["kept"].as_bool()),
        (Some("room:town"), Some(true))
    );
    let (status, err) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms",
        Some(json!({"name": "town"})),
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (409, Some("invalid_state")));
    // The room exists for a token that grants it, though auto-creation is off.
    let mut alice = WsClient::connect(addr, &room_token("alice", "town"))
        .await
        .unwrap();
    let ack = alice.join_room("town").await;
    assert_eq!(ack["metadata"], "m0");
    let mut bob = WsClient::connect(addr, &room_token("bob", "town"))
        .await
        .unwrap();
    bob.join_room("town").await;
    alice.expect("call:participant:joined").await;
    let (_, rooms) = api(addr, "GET", "/api/v1/admin/rooms", None).await;
    assert_eq!(rooms[0]["participants"], 2, "{rooms}");
    let (status, one) = api(addr, "GET", "/api/v1/admin/rooms/town", None).await;
    assert_eq!((status, &one["name"]), (200, &json!("town")));

    let (status, sent) = api(
        addr,
        "PUT",
        "/api/v1/admin/rooms/town/metadata",
        Some(json!({"metadata": "m1"})),
    )
    .await;
    assert_eq!((status, &sent["recipients"]), (200, &json!(2)));
    for c in [&mut alice, &mut bob] {
        let e = c.expect("room:metadata").await;
        assert_eq!(
            (e["callId"].as_str(), e["metadata"].as_str()),
            (Some("room:town"), Some("m1"))
        );
    }
    let (status, _) = api(
        addr,
        "PUT",
        "/api/v1/admin/rooms/town/participants/bob/metadata",
        Some(json!({"metadata": "speaker"})),
    )
    .await;
    assert_eq!(status, 200);
    let e = alice.expect("participant:metadata").await;
    assert_eq!(
        (e["userId"].as_str(), e["metadata"].as_str()),
        (Some("bob"), Some("speaker"))
    );
    bob.expect("participant:metadata").await;
    let (status, _) = api(
        addr,
        "PUT",
        "/api/v1/admin/rooms/town/participants/carol/metadata",
        Some(json!({"metadata": "x"})),
    )
    .await;
    assert_eq!(status, 404);

    let (status, sent) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms/town/data",
        Some(json!({"data": {"poll": 1}, "topic": "polls"})),
    )
    .await;
    assert_eq!((status, &sent["recipients"]), (200, &json!(2)));
    for c in [&mut alice, &mut bob] {
        let e = c.expect("room:data").await;
        assert_eq!(
            (e["topic"].as_str(), &e["data"]),
            (Some("polls"), &json!({"poll": 1}))
        );
    }
    let (_, sent) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms/town/data",
        Some(json!({"data": "psst", "userIds": ["bob"]})),
    )
    .await;
    assert_eq!(sent["recipients"], 1);
    assert_eq!(bob.expect("room:data").await["data"], "psst");
    alice.expect_none("room:data").await;

    let (status, people) = api(addr, "GET", "/api/v1/admin/rooms/town/participants", None).await;
    assert_eq!(status, 200);
    let bob_entry = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["userId"] == "bob")
        .unwrap();
    assert_eq!(bob_entry["metadata"], "speaker");
    assert_eq!(bob_entry["connections"][0]["node"], "local", "{people}");

    // Removing bob: he hears why, alice hears he left; the room stays.
    let (status, _) = api(
        addr,
        "DELETE",
        "/api/v1/admin/rooms/town/participants/bob",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let ended = bob.expect("call:ended").await;
    assert_eq!(
        (ended["callId"].as_str(), ended["reason"].as_str()),
        (Some("room:town"), Some("removed"))
    );
    assert_eq!(alice.expect("call:participant:left").await["userId"], "bob");
    let (status, _) = api(
        addr,
        "DELETE",
        "/api/v1/admin/rooms/town/participants/bob",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Deleting: alice hears it; the room is gone; a kept room left empty stays until then.
    let (status, done) = api(addr, "DELETE", "/api/v1/admin/rooms/town", None).await;
    assert_eq!((status, &done["recipients"]), (200, &json!(1)));
    assert_eq!(alice.expect("call:ended").await["reason"], "terminated");
    let (_, rooms) = api(addr, "GET", "/api/v1/admin/rooms", None).await;
    assert_eq!(rooms, json!([]));
    let (status, _) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms",
        Some(json!({"name": "empty"})),
    )
    .await;
    assert_eq!(status, 201);
    let mut carol = WsClient::connect(addr, &room_token("carol", "empty"))
        .await
        .unwrap();
    carol.join_room("empty").await;
    carol
        .request("room:leave", json!({"room": "empty"}))
        .await
        .unwrap();
    let (status, room) = api(addr, "GET", "/api/v1/admin/rooms/empty", None).await;
    assert_eq!((status, &room["participants"]), (200, &json!(0)));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn calls_are_listed_their_participants_removed_and_ended() {
    let server = server().await;
    let addr = server.addr;
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut bob = server.client(Transport::SocketIo, "bob").await;
    let mut carol = server.client(Transport::Ws, "carol").await;
    let call_id = alice.initiate("video", &["bob", "carol"]).await["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.expect("call:incoming").await;
    carol.expect("call:incoming").await;
    let (status, calls) = api(addr, "GET", "/api/v1/admin/calls", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (calls[0]["callId"].as_str(), calls[0]["phase"].as_str()),
        (Some(call_id.as_str()), Some("ringing")),
        "{calls}"
    );
    bob.request("call:accept", json!({"callId": call_id}))
        .await
        .unwrap();
    carol
        .request("call:accept", json!({"callId": call_id}))
        .await
        .unwrap();
    let (_, one) = api(addr, "GET", &format!("/api/v1/admin/calls/{call_id}"), None).await;
    assert_eq!(one["phase"], "active", "{one}");
    let states: Vec<&str> = one["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["joined", "joined", "joined"]);

    // Removing carol from the group call: she hears `removed`, the call goes on.
    let (status, _) = api(
        addr,
        "DELETE",
        &format!("/api/v1/admin/calls/{call_id}/participants/carol"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(carol.expect("call:ended").await["reason"], "removed");
    let (status, err) = api(
        addr,
        "DELETE",
        &format!("/api/v1/admin/calls/{call_id}/participants/carol"),
        None,
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (409, Some("invalid_state")));

    let (status, done) = api(
        addr,
        "DELETE",
        &format!("/api/v1/admin/calls/{call_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    for c in [&mut alice, &mut bob] {
        let ended = c.expect("call:ended").await;
        assert_eq!(ended["reason"], "terminated");
    }
    let (_, calls) = api(addr, "GET", "/api/v1/admin/calls", None).await;
    assert_eq!(calls, json!([]));
    let (status, _) = api(
        addr,
        "DELETE",
        &format!("/api/v1/admin/calls/{call_id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    drop(carol);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_published_track_is_listed_and_muted_by_the_api() {
    let server = server().await;
    let addr = server.addr;
    let (status, _) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms",
        Some(json!({"name": "stage"})),
    )
    .await;
    assert_eq!(status, 201);
    let mut speaker = Participant::join(
        addr,
        &room_token("speaker", "stage"),
        "stage",
        Capture::CountsOnly,
    )
    .await
    .unwrap();
    let _mic = speaker.publish(Kind::Audio, "mic", 0xA1).await;
    speaker.connect_media().await.unwrap();
    let mut listener = Client::Ws(
        WsClient::connect(addr, &room_token("listener", "stage"))
            .await
            .unwrap(),
    );
    listener
        .request("room:join", json!({"room": "stage"}))
        .await
        .unwrap();

    let mut track = None;
    for _ in 0..50 {
        let (_, people) = api(addr, "GET", "/api/v1/admin/rooms/stage/participants", None).await;
        let speaker_entry = people
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["userId"] == "speaker")
            .cloned();
        if let Some(t) = speaker_entry.and_then(|p| p["tracks"].get(0).cloned()) {
            assert_eq!(t["kind"], "audio", "{t}");
            track = t["trackId"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let track = track.expect("the speaker's track is listed");
    let path = format!("/api/v1/admin/rooms/stage/participants/speaker/tracks/{track}/mute");
    let (status, body) = api(addr, "POST", &path, Some(json!({"muted": true}))).await;
    assert_eq!(status, 200, "{body}");
    let muted = listener.expect("track:muted").await;
    assert_eq!(muted["trackId"], track.as_str());
    let (_, people) = api(addr, "GET", "/api/v1/admin/rooms/stage/participants", None).await;
    let speaker_entry = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["userId"] == "speaker")
        .unwrap();
    assert_eq!(speaker_entry["tracks"][0]["muted"], true);
    let (status, _) = api(addr, "POST", &path, Some(json!({"muted": false}))).await;
    assert_eq!(status, 200);
    listener.expect("track:unmuted").await;
    // Another user's track, or an unknown one, is not found.
    let wrong = format!("/api/v1/admin/rooms/stage/participants/listener/tracks/{track}/mute");
    let (status, _) = api(addr, "POST", &wrong, Some(json!({"muted": true}))).await;
    assert_eq!(status, 404);
    let (status, _) = api(
        addr,
        "POST",
        "/api/v1/admin/rooms/stage/participants/speaker/tracks/none/mute",
        Some(json!({"muted": true})),
    )
    .await;
    assert_eq!(status, 404);
    drop(speaker);
    server.stop().await.unwrap();
}
