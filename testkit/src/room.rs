//! Media through the SFU over signaling: joining a room and negotiating as
//! `docs/protocol.md` ("Negotiating with the SFU") describes, and [`Participant`], which does it
//! for one user.
//!
//! Negotiation: the client's targetless `offer` is answered both in the ack and by an `answer`
//! event from `sfu`; when tracks come or go the SFU sends its own `offer` (with `tracks`: mid →
//! trackId), which the client answers with a targetless `answer`. The client's offer wins glare:
//! server offers queued before the `answer` event are superseded, and a fresh one follows.

use crate::peer::{Capture, Peer};
use crate::signal::{Refusal, WAIT, WsClient};
use crate::{Kind, LocalTrack};
use serde_json::{Value, json};
use std::net::SocketAddr;

impl WsClient {
    /// `room:join {room}`; returns the ack (`roomId`, `participants`, `tracks`, `iceServers`).
    /// Panics when refused.
    pub async fn join_room(&mut self, room: &str) -> Value {
        let ack = self
            .request("room:join", json!({"room": room}))
            .await
            .unwrap_or_else(|r| panic!("room:join {room}: {r:?}"));
        assert_eq!(ack["roomId"], format!("room:{room}"), "{ack}");
        ack
    }

    /// Sends a targetless `offer` in `space` (a call id or `room:<name>`) and returns the SFU's
    /// answer SDP. Checks that the `answer` event mirrors the ack, and drops server offers
    /// buffered before it: the client's offer superseded them.
    pub async fn offer_to_sfu(&mut self, space: &str, sdp: &str) -> Result<String, Refusal> {
        let ack = self
            .request(
                "offer",
                json!({"callId": space, "offer": {"type": "offer", "sdp": sdp}}),
            )
            .await?;
        assert_eq!(ack["callId"], space, "{ack}");
        assert_eq!(ack["answer"]["type"], "answer", "{ack}");
        let answer = ack["answer"]["sdp"]
            .as_str()
            .expect("the ack carries the answer's sdp")
            .to_owned();
        let event = tokio::time::timeout(WAIT, async {
            loop {
                let found = self
                    .events
                    .iter()
                    .position(|(n, v)| n == "answer" && v["callId"] == space);
                if let Some(i) = found {
                    let event = self.events.remove(i).expect("index from position").1;
                    let mut k = 0;
                    self.events.retain(|(n, v)| {
                        let stale = k < i && n == "offer" && v["callId"] == space;
                        k += 1;
                        !stale
                    });
                    return event;
                }
                assert!(
                    self.pump().await,
                    "connection closed before the `answer` event"
                );
            }
        })
        .await
        .expect("`answer` event from the SFU");
        assert_eq!(event["from"], "sfu", "{event}");
        assert_eq!(event["answer"], ack["answer"], "the event mirrors the ack");
        Ok(answer)
    }

    /// Waits for the SFU's next `offer` in `space`, answers it with `peer`, and returns the
    /// offer's `tracks` (`[{trackId, mid}]`).
    pub async fn answer_server_offer(&mut self, peer: &mut Peer, space: &str) -> Value {
        let offer = self.expect("offer").await;
        assert_eq!(offer["callId"], space, "{offer}");
        assert_eq!(offer["from"], "sfu", "{offer}");
        assert_eq!(offer["offer"]["type"], "offer", "{offer}");
        let sdp = offer["offer"]["sdp"]
            .as_str()
            .expect("the offer carries sdp")
            .to_owned();
        let answer = peer.answer(sdp).await;
        let ack = self
            .request(
                "answer",
                json!({"callId": space, "answer": {"type": "answer", "sdp": answer}}),
            )
            .await
            .unwrap_or_else(|r| panic!("the answer to the server offer was refused: {r:?}"));
        assert_eq!(ack, json!({"ok": true}));
        offer["tracks"].clone()
    }
}

/// One user in one room: a signaling connection and a webrtc-rs peer.
///
/// Lifecycle: [`Participant::join`] connects and joins the room; add tracks with
/// `participant.peer.publish(..)`; [`Participant::connect_media`] negotiates with the SFU and
/// waits for ICE and DTLS; while in the room, answer each server offer (others' tracks come or
/// go) with [`Participant::answer_server_offer`]; [`Participant::leave`] leaves the room and
/// closes both.
pub struct Participant {
    pub signal: WsClient,
    pub peer: Peer,
    /// The room's id, `room:<name>`: the `callId` of every event about it.
    pub space: String,
    /// The room:join ack.
    pub joined: Value,
    published: bool,
    capture: Capture,
}

impl Participant {
    /// Connects to `/ws` at `addr` with `token` (which must grant the room, or `admin`) and
    /// joins `room`.
    pub async fn join(
        addr: SocketAddr,
        token: &str,
        room: &str,
        capture: Capture,
    ) -> Result<Participant, String> {
        let mut signal = WsClient::connect(addr, token).await?;
        let joined = signal.join_room(room).await;
        Ok(Participant {
            signal,
            peer: Peer::with_capture(capture).await,
            space: format!("room:{room}"),
            joined,
            published: false,
            capture,
        })
    }

    /// Adds a track of synthetic media (see [`Peer::publish`]); call before
    /// [`Participant::connect_media`].
    pub async fn publish(&mut self, kind: Kind, track_id: &str, ssrc: u32) -> LocalTrack {
        self.published = true;
        self.peer.publish(kind, track_id, ssrc).await
    }

    /// Offers to the SFU (one receive-only audio m-line when nothing is published), applies its
    /// answer, and waits until ICE and DTLS are up. Returns the answer's SDP.
    pub async fn connect_media(&mut self) -> Result<String, Refusal> {
        if !self.published {
            self.peer.receive_only(Kind::Audio).await;
        }
        let offer = self.peer.offer().await;
        let answer = self.signal.offer_to_sfu(&self.space, &offer).await?;
        self.peer.accept_answer(answer.clone()).await;
        self.peer.wait_connected(&self.space).await;
        Ok(answer)
    }

    /// After `media:moved`: closes the peer connection to the old media server and negotiates a
    /// fresh one, publishing `tracks` (kind, track id, SSRC) again, with the space's new one.
    /// Membership is untouched; the new peer's counts start from zero.
    pub async fn reconnect_media(
        &mut self,
        tracks: &[(Kind, &str, u32)],
    ) -> Result<Vec<LocalTrack>, Refusal> {
        let fresh = Peer::with_capture(self.capture).await;
        std::mem::replace(&mut self.peer, fresh).close().await;
        self.published = false;
        let mut local = Vec::new();
        for (kind, id, ssrc) in tracks {
            local.push(self.publish(*kind, id, *ssrc).await);
        }
        self.connect_media().await?;
        Ok(local)
    }

    /// Answers the SFU's next offer; returns its `tracks`.
    pub async fn answer_server_offer(&mut self) -> Value {
        self.signal
            .answer_server_offer(&mut self.peer, &self.space)
            .await
    }

    /// `room:leave`, then closes the peer connection and the signaling connection.
    pub async fn leave(mut self) {
        let room = self.space.trim_start_matches("room:").to_owned();
        let ack = self
            .signal
            .request("room:leave", json!({"room": room}))
            .await;
        assert!(ack.is_ok(), "room:leave {room}: {ack:?}");
        self.peer.close().await;
        self.signal.close().await;
    }
}
