//! What the server API takes and answers (JSON, camelCase), with the OpenAPI schema of each.
//!
//! The hub builds the answers directly from its state; they are plain data.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A room held by this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    /// The room's name, as in `room:join {room}`.
    pub name: String,
    /// `room:<name>`: the `callId` of every event about the room.
    pub id: String,
    /// Users in the room as participants (viewers are not among them).
    pub participants: usize,
    /// Participants' connections in the room (a user may join from several devices).
    pub connections: usize,
    /// WHEP viewers watching the room (connections): hidden from the room's members.
    pub viewers: usize,
    /// The application's metadata; empty when none.
    pub metadata: String,
    /// Whether the room stays while empty (created through this API) or closes when its last
    /// participant leaves (created by a join).
    pub kept: bool,
    /// When the room was opened (RFC 3339).
    pub created_at: String,
    /// The node that owns the room (`local` on a single node).
    pub node: String,
}

/// A participant of a room or call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    pub user_id: String,
    /// Display name from the participant's token.
    pub name: String,
    /// `participant`, or `viewer` for a room's WHEP viewers, which the room's members are
    /// never shown. A user who is both is listed once as each.
    pub kind: ParticipantKind,
    /// In a call: `ringing`, `joined`, `reconnecting`, `declined`, `missed` or `left`; in a
    /// room always `joined`.
    pub state: String,
    /// The application's metadata for the participant (rooms); empty when none.
    pub metadata: String,
    /// The participant's connections in the space, each with the node it is connected to.
    pub connections: Vec<ConnectionInfo>,
    /// Tracks the participant publishes through the SFU.
    pub tracks: Vec<TrackInfo>,
}

/// What kind of seat a [`ParticipantInfo`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParticipantKind {
    /// A member of the room or call, as its other members see it.
    Participant,
    /// A WHEP viewer (rooms only): receives media, publishes nothing, and is hidden from the
    /// room's members and from participant webhooks.
    Viewer,
}

/// One connection of a participant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// The connection's id (unique in the cluster).
    pub id: u64,
    /// The node the client is connected to.
    pub node: String,
    /// When it joined the space (RFC 3339).
    pub joined_at: String,
}

/// A published track.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrackInfo {
    pub track_id: String,
    /// `audio` or `video`.
    pub kind: String,
    /// `microphone`, `camera`, `screen` (as in `track:published`).
    pub source: String,
    /// Muted by its publisher or by this API.
    pub muted: bool,
}

/// A call that has not ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallSummary {
    pub call_id: String,
    pub conversation_id: String,
    /// `audio` or `video`.
    pub call_type: String,
    /// `p2p` or `sfu`.
    pub mode: String,
    /// `ringing` or `active`.
    pub phase: String,
    pub initiator: String,
    /// When the call was initiated (RFC 3339).
    pub started_at: String,
    /// Every member, whatever their state.
    pub participants: Vec<ParticipantInfo>,
    /// The node that owns the call.
    pub node: String,
}

/// `POST /api/v1/admin/rooms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRoom {
    /// 1-128 characters, no control characters.
    pub name: String,
    /// At most 4096 bytes.
    #[serde(default)]
    pub metadata: Option<String>,
}

/// `PUT .../metadata`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetMetadata {
    /// The application's own string, at most 4096 bytes; empty clears it.
    pub metadata: String,
}

/// `POST .../tracks/{track}/mute`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MuteTrack {
    /// `true` mutes (the SFU stops forwarding the track), `false` unmutes.
    pub muted: bool,
}

/// `POST /api/v1/admin/rooms/{room}/data`: a `room:data` event for the room's members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendData {
    /// Any JSON value; the whole request is at most `admin.max_body_bytes`.
    pub data: Value,
    /// The application's label (at most 128 characters).
    #[serde(default)]
    pub topic: Option<String>,
    /// Only these participants receive it; absent: everyone in the room.
    #[serde(default)]
    pub user_ids: Option<Vec<String>>,
}

/// How many connections an operation reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivered {
    /// Connections the event was queued for.
    pub recipients: usize,
}

/// `POST /api/v1/admin/revocations`: exactly one of `userId` and `jti`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Revoke {
    /// Revokes every token of this user issued (`iat`) at or before now; tokens without `iat`
    /// count as issued before.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Revokes the token with this `jti` claim.
    #[serde(default)]
    pub jti: Option<String>,
    /// Unix seconds when the revocation may be forgotten: the revoked tokens' `exp`. Absent:
    /// now plus `admin.revocation_ttl`.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// An active revocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevocationInfo {
    /// `user` or `token`.
    pub kind: String,
    /// The user id or the `jti`.
    pub subject: String,
    /// Unix seconds when it was made.
    pub revoked_at: u64,
    /// Unix seconds when it lapses.
    pub expires_at: u64,
}

/// A webhook endpoint as the server API shows it: never its secrets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookInfo {
    /// `wh_...` for endpoints created through this API; a `[[webhooks]]` endpoint's `id` (or
    /// URL) for configured ones.
    pub id: String,
    pub url: String,
    /// Event types and prefixes it receives (`call.ended`, `room.*`, `*`); empty: every type
    /// but `message.sent`.
    pub events: Vec<String>,
    /// `config` (from `[[webhooks]]`: listed, not changed here) or `api`.
    pub source: String,
    /// Secrets that sign its requests now (more than one during a rotation's grace period).
    pub secrets: usize,
    /// Whether the node asked has paused deliveries to it after repeated failures
    /// (`webhook.pause_after`).
    pub paused: bool,
    /// Failed attempts in a row, on the node asked.
    pub failures: u32,
}

/// `POST /api/v1/admin/webhooks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` or `https://` with a host, at most 2048 bytes.
    pub url: String,
    /// Known event types (`call.ended`), prefixes (`call.*`) or `*`; at most 32 entries.
    /// Absent or empty: every type but `message.sent`, which is sent only when named.
    #[serde(default)]
    pub events: Vec<String>,
    /// A `whsec_` secret (base64 of 24-64 bytes) to sign with; absent: the server makes one.
    #[serde(default)]
    pub secret: Option<String>,
}

/// `PUT /api/v1/admin/webhooks/{webhook}`: what to change (at least one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhook {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// `POST /api/v1/admin/webhooks/{webhook}/secrets`: a new signing secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateSecret {
    /// The new `whsec_` secret; absent: the server makes one.
    #[serde(default)]
    pub secret: Option<String>,
    /// How long the current secrets keep signing beside the new one, in seconds (at most 30
    /// days); absent: 86400 (a day). 0 drops them at once.
    #[serde(default)]
    pub grace_secs: Option<u64>,
}

/// The answer to a creation or a rotation: the only time a secret is shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSecret {
    pub webhook: WebhookInfo,
    /// The new secret (`whsec_...`): verify signatures with it; it is not shown again.
    pub secret: String,
}

/// The answer to a deletion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeleted {
    pub id: String,
    /// Undelivered events dropped with it.
    pub dropped_events: u64,
}

/// Every error of the server API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    /// A protocol error code: `token_missing`, `token_invalid`, `token_revoked`, `forbidden`,
    /// `not_found`, `invalid_payload`, `invalid_state`, `limit_exceeded`, `wrong_node`,
    /// `cluster_unavailable`, `shutting_down`, ...
    pub code: String,
    pub message: String,
    /// `wrong_node` only: the node that owns the call or room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `wrong_node` only: where that node serves this API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}
