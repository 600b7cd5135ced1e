//! The call contract end to end, once per transport (and mixed).

use crate::server::{TestServer, Transport};
use config::HumanDuration;
use serde_json::json;
use std::time::Duration;

const BOTH: [Transport; 2] = [Transport::Ws, Transport::SocketIo];

#[tokio::test]
async fn full_two_user_call_on_each_transport_and_mixed() {
    for (a_on, b_on) in [
        (Transport::Ws, Transport::Ws),
        (Transport::SocketIo, Transport::SocketIo),
        (Transport::Ws, Transport::SocketIo),
    ] {
        full_call(a_on, b_on).await;
    }
}

async fn full_call(a_on: Transport, b_on: Transport) {
    let server = TestServer::start().await;
    let mut alice = server.client(a_on, "alice").await;
    let mut bob = server.client(b_on, "bob").await;

    let ack = alice.initiate("video", &["bob"]).await;
    let call_id = ack["callId"].as_str().unwrap().to_owned();
    let ice = ack["iceServers"].as_array().unwrap();
    assert_eq!(ice.len(), 2, "stun and turn: {ack}");
    let turn_user = ice[1]["username"].as_str().unwrap();
    assert!(turn_user.ends_with(":alice"), "{turn_user}");
    assert!(ice[1]["credential"].as_str().unwrap().len() >= 27);

    let initiated = alice.expect("call:initiated").await;
    assert_eq!(initiated["callId"], call_id.as_str());
    let incoming = bob.expect("call:incoming").await;
    assert_eq!(
        incoming,
        json!({"callId": call_id, "from": {"userId": "alice", "name": "alice name"},
               "conversationId": "conv", "callType": "video"})
    );

    let ack = bob
        .request("call:accept", json!({"callId": call_id}))
        .await
        .unwrap();
    assert_eq!(
        ack["participants"],
        json!([{"userId": "alice", "name": "alice name"}])
    );
    let accepted = alice.expect("call:accepted").await;
    assert_eq!(accepted["userId"], "bob");
    assert!(
        accepted["iceServers"][1]["username"]
            .as_str()
            .unwrap()
            .ends_with(":alice")
    );
    let joined = alice.expect("call:participant:joined").await;
    assert_eq!(joined["participant"]["userId"], "bob");

    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});
    alice
        .request(
            "offer",
            json!({"callId": call_id, "targetUserId": "bob", "offer": offer}),
        )
        .await
        .unwrap();
    let got = bob.expect("offer").await;
    assert_eq!(
        got,
        json!({"callId": call_id, "from": "alice", "offer": offer})
    );

    let answer = json!({"type": "answer", "sdp": "v=0\r\n"});
    bob.emit(
        "answer",
        json!({"callId": call_id, "targetUserId": "alice", "answer": answer}),
    )
    .await;
    assert_eq!(alice.expect("answer").await["answer"], answer);

    // Candidates keep their order.
    for i in 0..5 {
        let candidate = json!({"candidate": format!("candidate:{i} 1 udp 1 127.0.0.1 {} typ host", 5000 + i), "sdpMid": "0"});
        alice
            .emit(
                "ice-candidate",
                json!({"callId": call_id, "targetUserId": "bob", "candidate": candidate}),
            )
            .await;
    }
    for i in 0..5 {
        let c = bob.expect("ice-candidate").await;
        assert_eq!(c["from"], "alice");
        assert!(
            c["candidate"]["candidate"]
                .as_str()
                .unwrap()
                .starts_with(&format!("candidate:{i} "))
        );
    }

    bob.request(
        "call:media-toggle",
        json!({"callId": call_id, "mediaType": "audio", "enabled": false}),
    )
    .await
    .unwrap();
    assert_eq!(
        alice.expect("call:media-toggled").await,
        json!({"callId": call_id, "userId": "bob", "mediaType": "audio", "enabled": false})
    );
    alice
        .request("screen:share-start", json!({"callId": call_id}))
        .await
        .unwrap();
    assert_eq!(
        bob.expect("screen:share-started").await,
        json!({"callId": call_id, "userId": "alice"})
    );
    alice
        .request("screen:share-stop", json!({"callId": call_id}))
        .await
        .unwrap();
    assert_eq!(bob.expect("screen:share-stopped").await["userId"], "alice");

    bob.request("call:end", json!({"callId": call_id}))
        .await
        .unwrap();
    assert_eq!(
        alice.expect("call:ended").await,
        json!({"callId": call_id, "reason": "ended"})
    );
    assert_eq!(bob.expect("call:ended").await["reason"], "ended");
    let e = alice
        .request("call:end", json!({"callId": call_id}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_found");
    alice.close().await;
    bob.close().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn rejection_ends_a_one_to_one_call() {
    for transport in BOTH {
        let server = TestServer::start().await;
        let mut alice = server.client(transport, "alice").await;
        let mut bob = server.client(transport, "bob").await;
        let ack = alice.initiate("audio", &["bob"]).await;
        let id = ack["callId"].clone();
        bob.expect("call:incoming").await;
        bob.request("call:reject", json!({"callId": id}))
            .await
            .unwrap();
        assert_eq!(
            alice.expect("call:rejected").await,
            json!({"callId": id, "userId": "bob"})
        );
        assert_eq!(alice.expect("call:ended").await["reason"], "rejected");
        assert_eq!(bob.expect("call:ended").await["reason"], "rejected");
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn unanswered_calls_end_as_missed() {
    for transport in BOTH {
        let server = TestServer::with(|c| c.calls.ring_timeout = HumanDuration::millis(400)).await;
        let mut alice = server.client(transport, "alice").await;
        let mut bob = server.client(transport, "bob").await;
        alice.initiate("video", &["bob"]).await;
        bob.expect("call:incoming").await;
        let missed = bob.expect("call:missed").await;
        assert_eq!(missed["from"]["userId"], "alice");
        assert_eq!(alice.expect("call:ended").await["reason"], "missed");
        assert_eq!(bob.expect("call:ended").await["reason"], "missed");
        assert_eq!(server.signaling.hub.stats().await.unwrap().calls, 0);
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn every_device_rings_and_accepting_on_one_stops_the_others() {
    let server = TestServer::start().await;
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut phone = server.client(Transport::SocketIo, "bob").await;
    let mut laptop = server.client(Transport::Ws, "bob").await;
    let ack = alice.initiate("video", &["bob"]).await;
    let id = ack["callId"].clone();
    assert_eq!(phone.expect("call:incoming").await["callId"], id);
    assert_eq!(laptop.expect("call:incoming").await["callId"], id);
    laptop
        .request("call:accept", json!({"callId": id}))
        .await
        .unwrap();
    assert_eq!(
        phone.expect("call:answered-elsewhere").await,
        json!({"callId": id})
    );
    laptop.expect_none("call:answered-elsewhere").await;
    // Signals go to the device in the call, not to the phone.
    alice
        .request(
            "offer",
            json!({"callId": id, "targetUserId": "bob", "offer": {"sdp": "x"}}),
        )
        .await
        .unwrap();
    laptop.expect("offer").await;
    phone.expect_none("offer").await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_reload_within_the_grace_period_keeps_the_call() {
    let server = TestServer::with(|c| c.calls.reconnect_grace = HumanDuration::millis(1500)).await;
    let mut alice = server.client(Transport::SocketIo, "alice").await;
    let mut bob = server.client(Transport::Ws, "bob").await;
    let ack = alice.initiate("video", &["bob"]).await;
    let id = ack["callId"].clone();
    bob.request("call:accept", json!({"callId": id}))
        .await
        .unwrap();
    bob.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bob = server.client(Transport::Ws, "bob").await;
    let resumable = bob.expect("call:resumable").await;
    assert_eq!(resumable["callId"], id);
    bob.request("call:join", json!({"callId": id}))
        .await
        .unwrap();
    assert_eq!(
        alice.expect("call:participant:joined").await["participant"]["userId"],
        "bob"
    );
    // A timer that must not fire cannot be waited for: wait past the grace period's end
    // (1500 ms after the drop, which was before the rejoin), then the barrier delivers anything
    // the timer would have sent.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    alice.expect_none("call:ended").await;
    bob.request(
        "offer",
        json!({"callId": id, "targetUserId": "alice", "offer": {"sdp": "y"}}),
    )
    .await
    .unwrap();
    alice.expect("offer").await;

    // Without a reload, the grace period runs out and the call fails.
    bob.close().await;
    let ended = alice.expect("call:ended").await;
    assert_eq!(ended["reason"], "failed");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn outsiders_cannot_accept_join_or_signal() {
    for transport in BOTH {
        let server = TestServer::start().await;
        let mut alice = server.client(transport, "alice").await;
        let mut bob = server.client(transport, "bob").await;
        let mut mallory = server.client(transport, "mallory").await;
        let ack = alice.initiate("video", &["bob"]).await;
        let id = ack["callId"].clone();
        bob.request("call:accept", json!({"callId": id}))
            .await
            .unwrap();
        for (event, data) in [
            ("call:accept", json!({"callId": id})),
            ("call:join", json!({"callId": id})),
            (
                "offer",
                json!({"callId": id, "targetUserId": "bob", "offer": {"sdp": "evil"}}),
            ),
            (
                "ice-candidate",
                json!({"callId": id, "targetUserId": "alice", "candidate": {}}),
            ),
            (
                "call:media-toggle",
                json!({"callId": id, "mediaType": "video", "enabled": false}),
            ),
            ("call:end", json!({"callId": id})),
        ] {
            // The answer for a call that does not exist: outsiders learn nothing about it.
            let e = mallory.request(event, data).await.unwrap_err();
            assert_eq!(e.code, "not_found", "{event}");
            let err = mallory.expect("error").await;
            assert_eq!(err["code"], "not_found");
            assert_eq!(err["event"], event);
        }
        // Nothing reached the members, and the call goes on.
        bob.expect_none("offer").await;
        alice.expect_none("call:ended").await;
        // A member may not target someone outside the call either.
        let e = alice
            .request(
                "offer",
                json!({"callId": id, "targetUserId": "mallory", "offer": {}}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, "forbidden");
        mallory.expect_none("offer").await;
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn group_calls_continue_until_the_last_participant_leaves() {
    let server = TestServer::start().await;
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut bob = server.client(Transport::SocketIo, "bob").await;
    let mut carol = server.client(Transport::Ws, "carol").await;
    let ack = alice.initiate("audio", &["bob", "carol"]).await;
    let id = ack["callId"].clone();
    bob.request("call:accept", json!({"callId": id}))
        .await
        .unwrap();
    let ack = carol
        .request("call:accept", json!({"callId": id}))
        .await
        .unwrap();
    assert_eq!(ack["participants"].as_array().unwrap().len(), 2);
    bob.request("call:end", json!({"callId": id}))
        .await
        .unwrap();
    assert_eq!(alice.expect("call:participant:left").await["userId"], "bob");
    assert_eq!(carol.expect("call:participant:left").await["userId"], "bob");
    alice
        .request("call:end", json!({"callId": id}))
        .await
        .unwrap();
    carol.expect_none("call:ended").await;
    carol
        .request("call:end", json!({"callId": id}))
        .await
        .unwrap();
    assert_eq!(carol.expect("call:ended").await["reason"], "ended");
    assert_eq!(server.signaling.hub.stats().await.unwrap().calls, 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn callers_hear_that_the_callee_rings_via_socketio_ack_or_ws_event() {
    let server = TestServer::start().await;
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut bob_sio = server.client(Transport::SocketIo, "bob").await;
    let mut carol_ws = server.client(Transport::Ws, "carol").await;
    let ack = alice.initiate("video", &["bob", "carol"]).await;
    let id = ack["callId"].clone();
    bob_sio.expect("call:incoming").await;
    alice.expect_none("call:ringing").await;
    // Socket.IO: acking the server's call:incoming confirms the ring.
    let crate::client::Client::Sio(mut raw) = bob_sio else {
        unreachable!()
    };
    raw.ack_server_event("call:incoming", json!({"ok": true}))
        .await;
    assert_eq!(
        alice.expect("call:ringing").await,
        json!({"callId": id, "userId": "bob"})
    );
    // Raw WebSocket: the same with an explicit event.
    carol_ws.expect("call:incoming").await;
    carol_ws
        .request("call:ringing", json!({"callId": id}))
        .await
        .unwrap();
    assert_eq!(alice.expect("call:ringing").await["userId"], "carol");
    carol_ws
        .request("call:ringing", json!({"callId": id}))
        .await
        .unwrap();
    alice.expect_none("call:ringing").await;
    server.stop().await.unwrap();
}
