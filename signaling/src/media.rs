//! The seam to a media server (the SFU), plugged in by the binary.
//!
//! Signaling decides *who* may send media where; the media server moves the media. A
//! participant is one connection in one space: an SFU-mode call, or a named room
//! (`room:<name>`). The session authorizes every media event with the hub first (the
//! connection must be in the space, and a call must be in SFU mode), then calls the media
//! server. The hub reports connections leaving spaces; the driver passes those on with
//! [`MediaServer::leave`]. Events from the media server (tracks published, server-initiated
//! offers) come back through [`crate::driver::HubHandle::deliver_to_space`] and
//! [`crate::driver::HubHandle::deliver_to`].

use crate::auth::Grants;
use protocol::{CallId, ConnectionId, Failure, TrackPublished, UserId};
use serde_json::Value;
use std::time::Instant;

/// One connection's seat in a media space, as authorized by the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaParticipant {
    /// The call id, or `room:<name>`.
    pub space: CallId,
    pub user: UserId,
    pub name: String,
    pub conn: ConnectionId,
    pub grants: Grants,
}

/// The answer to a client offer, and possibly a server offer to send right after it (when the
/// server has tracks to add that the client's offer did not make room for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub answer: String,
    pub follow_up_offer: Option<ServerOffer>,
}

/// An offer the media server makes: the SDP, and the `(trackId, mid)` of each forwarded track
/// it carries so the client can map transceivers to publishers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOffer {
    pub sdp: String,
    pub tracks: Vec<(String, String)>,
}

impl ServerOffer {
    /// The `offer` event from `sfu` for this offer in `space`.
    pub fn event(&self, space: &CallId) -> protocol::ServerEvent {
        let mut event = crate::session::sfu_signal(
            space,
            "offer",
            serde_json::json!({"type": "offer", "sdp": self.sdp}),
        );
        if let protocol::ServerEvent::Offer(signal) = &mut event {
            let tracks = self
                .tracks
                .iter()
                .map(|(track, mid)| serde_json::json!({"trackId": track, "mid": mid}))
                .collect();
            signal.payload.insert("tracks".into(), Value::Array(tracks));
        }
        event
    }
}

/// A media server; see the module docs.
#[async_trait::async_trait]
pub trait MediaServer: Send + Sync + 'static {
    /// The client's offer; returns the server's answer. The participant joins the media space
    /// on its first offer. `started` is when the user's join began (join-time metric).
    async fn offer(
        &self,
        who: &MediaParticipant,
        sdp: String,
        started: Instant,
    ) -> Result<Negotiated, Failure>;

    /// The client's answer to a server-initiated offer.
    async fn answer(&self, who: &MediaParticipant, sdp: String) -> Result<(), Failure>;

    /// A trickled ICE candidate from the client (`RTCIceCandidateInit` JSON).
    async fn candidate(&self, who: &MediaParticipant, candidate: Value) -> Result<(), Failure>;

    /// Starts (`subscribe = true`) or stops receiving one track.
    async fn subscribe(
        &self,
        who: &MediaParticipant,
        track_id: &str,
        subscribe: bool,
    ) -> Result<(), Failure>;

    /// Tells the media server about a mute toggle, so it can announce `track:muted`.
    async fn set_muted(&self, who: &MediaParticipant, kind: protocol::MediaType, muted: bool);

    /// The tracks currently published in a space.
    async fn tracks(&self, space: &CallId) -> Vec<TrackPublished>;

    /// The connection left the space (left, ended, disconnected): free its media state.
    async fn leave(&self, space: &CallId, conn: ConnectionId);
}
