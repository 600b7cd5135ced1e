//! The server API's routes and handlers. Each handler's `#[utoipa::path]` is its entry in the
//! OpenAPI document ([`super::openapi`]); the route table below and that document list the same
//! operations (a test checks it).

use super::model::{
    CallSummary, CreateRoom, Delivered, MuteTrack, ParticipantInfo, ParticipantKind,
    RevocationInfo, Revoke, RoomSummary, SendData, SetMetadata, TrackInfo,
};
use super::{Admin, ApiFailure, Body, elsewhere, wrong_node};
use crate::Signaling;
use crate::cluster::Topology;
use crate::hub::admin::{AdminOp, AdminOutput, MAX_METADATA_BYTES};
use crate::hub::room::room_id;
use crate::media::{AdminMedia, MediaAnswer};
use crate::revocation::{Revocation, Target, unix_now};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use protocol::{CallId, UserId};
use std::sync::Arc;

/// Most users one data message may name.
const MAX_DATA_RECIPIENTS: usize = 1000;
/// Longest data message topic, in characters.
const MAX_TOPIC_CHARS: usize = 128;
/// Latest `expiresAt` a revocation may name, from now.
const MAX_REVOCATION_SECS: u64 = 366 * 24 * 3600;

/// Every route of the server API: (method, path as in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/admin/rooms"),
    ("post", "/api/v1/admin/rooms"),
    ("get", "/api/v1/admin/rooms/{room}"),
    ("delete", "/api/v1/admin/rooms/{room}"),
    ("put", "/api/v1/admin/rooms/{room}/metadata"),
    ("post", "/api/v1/admin/rooms/{room}/data"),
    ("get", "/api/v1/admin/rooms/{room}/participants"),
    ("delete", "/api/v1/admin/rooms/{room}/participants/{user}"),
    (
        "put",
        "/api/v1/admin/rooms/{room}/participants/{user}/metadata",
    ),
    (
        "post",
        "/api/v1/admin/rooms/{room}/participants/{user}/tracks/{track}/mute",
    ),
    ("get", "/api/v1/admin/calls"),
    ("get", "/api/v1/admin/calls/{call}"),
    ("delete", "/api/v1/admin/calls/{call}"),
    ("delete", "/api/v1/admin/calls/{call}/participants/{user}"),
    (
        "post",
        "/api/v1/admin/calls/{call}/participants/{user}/tracks/{track}/mute",
    ),
    ("get", "/api/v1/admin/revocations"),
    ("post", "/api/v1/admin/revocations"),
    ("get", "/api/v1/admin/webhooks"),
    ("post", "/api/v1/admin/webhooks"),
    ("get", "/api/v1/admin/webhooks/{webhook}"),
    ("put", "/api/v1/admin/webhooks/{webhook}"),
    ("delete", "/api/v1/admin/webhooks/{webhook}"),
    ("post", "/api/v1/admin/webhooks/{webhook}/secrets"),
];

/// The server API and its OpenAPI document.
pub fn router() -> Router<Arc<Signaling>> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/admin/rooms", get(list_rooms).post(create_room))
        .route(
            "/api/v1/admin/rooms/{room}",
            get(show_room).delete(delete_room),
        )
        .route("/api/v1/admin/rooms/{room}/metadata", put(room_metadata))
        .route("/api/v1/admin/rooms/{room}/data", post(send_data))
        .route(
            "/api/v1/admin/rooms/{room}/participants",
            get(room_participants),
        )
        .route(
            "/api/v1/admin/rooms/{room}/participants/{user}",
            delete(remove_room_participant),
        )
        .route(
            "/api/v1/admin/rooms/{room}/participants/{user}/metadata",
            put(participant_metadata),
        )
        .route(
            "/api/v1/admin/rooms/{room}/participants/{user}/tracks/{track}/mute",
            post(mute_track),
        )
        .route("/api/v1/admin/calls", get(list_calls))
        .route(
            "/api/v1/admin/calls/{call}",
            get(show_call).delete(end_call),
        )
        .route(
            "/api/v1/admin/calls/{call}/participants/{user}",
            delete(remove_call_participant),
        )
        .route(
            "/api/v1/admin/calls/{call}/participants/{user}/tracks/{track}/mute",
            post(mute_call_track),
        )
        .route(
            "/api/v1/admin/revocations",
            get(list_revocations).post(revoke),
        )
        .merge(super::webhooks::router())
}

type Answer<T> = Result<Json<T>, ApiFailure>;

async fn openapi_json() -> Response {
    Json(super::openapi::document()).into_response()
}

/// Runs `op` on the hub; a space it does not hold is looked up in the cluster.
async fn run(
    sig: &Signaling,
    space: Option<&CallId>,
    op: AdminOp,
) -> Result<AdminOutput, ApiFailure> {
    match sig.hub.admin(op).await {
        Ok(out) => Ok(out),
        Err(f) => Err(match space {
            Some(space) => elsewhere(sig, space, f).await,
            None => f.into(),
        }),
    }
}

fn delivered(out: AdminOutput) -> Json<Delivered> {
    let recipients = match out {
        AdminOutput::Delivered(n) => n,
        _ => 0,
    };
    Json(Delivered { recipients })
}

fn room_name(name: &str) -> Result<(), ApiFailure> {
    if protocol::valid_id(name) {
        Ok(())
    } else {
        Err(ApiFailure::invalid(
            "a room name is 1-128 characters without control characters",
        ))
    }
}

fn metadata(m: &str) -> Result<(), ApiFailure> {
    if m.len() > MAX_METADATA_BYTES {
        return Err(ApiFailure::invalid(format!(
            "`metadata` is longer than {MAX_METADATA_BYTES} bytes"
        )));
    }
    Ok(())
}

fn user_id(user: &str) -> Result<UserId, ApiFailure> {
    if protocol::valid_id(user) {
        Ok(UserId::from(user))
    } else {
        Err(ApiFailure::invalid(
            "a user id is 1-128 characters without control characters",
        ))
    }
}

/// List the rooms this node holds.
#[utoipa::path(get, path = "/api/v1/admin/rooms", tag = "rooms",
    responses((status = 200, description = "The rooms this node owns", body = [RoomSummary])))]
async fn list_rooms(_: Admin, State(sig): State<Arc<Signaling>>) -> Answer<Vec<RoomSummary>> {
    match run(&sig, None, AdminOp::Rooms).await? {
        AdminOutput::Rooms(rooms) => Ok(Json(rooms)),
        _ => Ok(Json(Vec::new())),
    }
}

/// Create a room that stays open while empty, until deleted.
#[utoipa::path(post, path = "/api/v1/admin/rooms", tag = "rooms", request_body = CreateRoom,
    responses(
        (status = 201, description = "Created", body = RoomSummary),
        (status = 409, description = "The room exists, or this node holds `rooms.max_rooms`", body = super::model::ApiError),
        (status = 421, description = "Another node owns the room's name and did not answer the forwarded request", body = super::model::ApiError),
        (status = 422, description = "Bad name or metadata", body = super::model::ApiError)))]
async fn create_room(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Body(req): Body<CreateRoom>,
) -> Result<(StatusCode, Json<RoomSummary>), ApiFailure> {
    room_name(&req.name)?;
    let meta = req.metadata.unwrap_or_default();
    metadata(&meta)?;
    let id = room_id(&req.name);
    let cluster = sig.routing.cluster();
    if cluster.topology() == Topology::Clustered {
        // The room's name is claimed for this node first, so joins through any node find it.
        let owner = cluster
            .place(&id)
            .await
            .map_err(|e| ApiFailure::from(e.failure()))?;
        if &owner != cluster.node() {
            return Err(wrong_node(&sig, &owner, &id));
        }
    }
    let op = AdminOp::CreateRoom {
        name: req.name,
        metadata: meta,
    };
    match run(&sig, None, op).await? {
        AdminOutput::Room(room) => Ok((StatusCode::CREATED, Json(room))),
        _ => Err(ApiFailure::from(protocol::Failure::new(
            protocol::ErrorCode::Internal,
            "unexpected answer",
        ))),
    }
}

/// Show one room.
#[utoipa::path(get, path = "/api/v1/admin/rooms/{room}", tag = "rooms",
    params(("room" = String, Path, description = "The room's name")),
    responses(
        (status = 200, description = "The room", body = RoomSummary),
        (status = 404, description = "No such room", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError)))]
async fn show_room(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(room): Path<String>,
) -> Answer<RoomSummary> {
    let id = room_id(&room);
    match run(&sig, Some(&id), AdminOp::Room { name: room }).await? {
        AdminOutput::Room(room) => Ok(Json(room)),
        _ => Err(protocol::Failure::new(protocol::ErrorCode::Internal, "unexpected answer").into()),
    }
}

/// Delete a room: every participant hears `call:ended` (`terminated`) and leaves.
#[utoipa::path(delete, path = "/api/v1/admin/rooms/{room}", tag = "rooms",
    params(("room" = String, Path, description = "The room's name")),
    responses(
        (status = 200, description = "Deleted; `recipients` connections were in it", body = Delivered),
        (status = 404, description = "No such room", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError)))]
async fn delete_room(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(room): Path<String>,
) -> Answer<Delivered> {
    let id = room_id(&room);
    run(&sig, Some(&id), AdminOp::DeleteRoom { name: room })
        .await
        .map(delivered)
}

/// Set a room's metadata; the room's connections get `room:metadata`.
#[utoipa::path(put, path = "/api/v1/admin/rooms/{room}/metadata", tag = "rooms",
    params(("room" = String, Path, description = "The room's name")),
    request_body = SetMetadata,
    responses(
        (status = 200, description = "Set; `recipients` connections were told", body = Delivered),
        (status = 404, description = "No such room", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError),
        (status = 422, description = "Metadata too long", body = super::model::ApiError)))]
async fn room_metadata(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(room): Path<String>,
    Body(req): Body<SetMetadata>,
) -> Answer<Delivered> {
    metadata(&req.metadata)?;
    let id = room_id(&room);
    let op = AdminOp::RoomMetadata {
        name: room,
        metadata: req.metadata,
    };
    run(&sig, Some(&id), op).await.map(delivered)
}

/// Send a data message (`room:data`) to a room's connections, or to some of its participants.
#[utoipa::path(post, path = "/api/v1/admin/rooms/{room}/data", tag = "rooms",
    params(("room" = String, Path, description = "The room's name")),
    request_body = SendData,
    responses(
        (status = 200, description = "Queued for `recipients` connections", body = Delivered),
        (status = 404, description = "No such room", body = super::model::ApiError),
        (status = 413, description = "Body over `admin.max_body_bytes`", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError),
        (status = 422, description = "Bad topic or recipients", body = super::model::ApiError)))]
async fn send_data(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(room): Path<String>,
    Body(req): Body<SendData>,
) -> Answer<Delivered> {
    if req
        .topic
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_TOPIC_CHARS)
    {
        return Err(ApiFailure::invalid(format!(
            "`topic` is longer than {MAX_TOPIC_CHARS} characters"
        )));
    }
    let to = match req.user_ids {
        None => None,
        Some(ids) if ids.len() > MAX_DATA_RECIPIENTS => {
            return Err(ApiFailure::invalid(format!(
                "`userIds` names more than {MAX_DATA_RECIPIENTS} users"
            )));
        }
        Some(ids) => Some(
            ids.iter()
                .map(|u| user_id(u))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let id = room_id(&room);
    let op = AdminOp::SendData {
        name: room,
        topic: req.topic,
        data: req.data,
        to,
    };
    run(&sig, Some(&id), op).await.map(delivered)
}

/// List a room's participants with their connections (and nodes) and published tracks.
#[utoipa::path(get, path = "/api/v1/admin/rooms/{room}/participants", tag = "participants",
    params(("room" = String, Path, description = "The room's name")),
    responses(
        (status = 200, description = "The participants", body = [ParticipantInfo]),
        (status = 404, description = "No such room", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError)))]
async fn room_participants(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(room): Path<String>,
) -> Answer<Vec<ParticipantInfo>> {
    participants(&sig, room_id(&room)).await.map(Json)
}

/// The participants of a space, with the tracks the media server knows of.
async fn participants(sig: &Signaling, space: CallId) -> Result<Vec<ParticipantInfo>, ApiFailure> {
    let op = AdminOp::Participants {
        space: space.clone(),
    };
    let media = AdminMedia::Tracks {
        space: space.clone(),
    };
    let (out, tracks) = match sig.hub.admin_with_media(op, Some(media)).await {
        Ok(answer) => answer,
        Err(f) => return Err(elsewhere(sig, &space, f).await),
    };
    let AdminOutput::Participants(mut list) = out else {
        return Ok(Vec::new());
    };
    if let Some(MediaAnswer::Tracks(tracks)) = tracks {
        for t in tracks {
            let publisher = list.iter_mut().find(|p| {
                p.kind == ParticipantKind::Participant && p.user_id == t.user_id.as_str()
            });
            if let Some(p) = publisher {
                p.tracks.push(TrackInfo {
                    track_id: t.track_id,
                    kind: word(&t.kind),
                    source: word(&t.source),
                    muted: t.muted,
                });
            }
        }
    }
    Ok(list)
}

/// Remove a participant from a room: their connections hear `call:ended` (`removed`) and
/// leave; the others hear `call:participant:left`.
#[utoipa::path(delete, path = "/api/v1/admin/rooms/{room}/participants/{user}", tag = "participants",
    params(("room" = String, Path, description = "The room's name"),
           ("user" = String, Path, description = "The participant's user id")),
    responses(
        (status = 200, description = "Removed; `recipients` of their connections were in the room", body = Delivered),
        (status = 404, description = "No such room or participant", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError)))]
async fn remove_room_participant(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path((room, user)): Path<(String, String)>,
) -> Answer<Delivered> {
    let id = room_id(&room);
    let user = user_id(&user)?;
    let op = AdminOp::Remove {
        space: id.clone(),
        user,
    };
    run(&sig, Some(&id), op).await.map(delivered)
}

/// Set a participant's metadata in a room; the room's connections get `participant:metadata`.
#[utoipa::path(put, path = "/api/v1/admin/rooms/{room}/participants/{user}/metadata", tag = "participants",
    params(("room" = String, Path, description = "The room's name"),
           ("user" = String, Path, description = "The participant's user id")),
    request_body = SetMetadata,
    responses(
        (status = 200, description = "Set; `recipients` connections were told", body = Delivered),
        (status = 404, description = "No such room or participant", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError),
        (status = 422, description = "Metadata too long", body = super::model::ApiError)))]
async fn participant_metadata(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path((room, user)): Path<(String, String)>,
    Body(req): Body<SetMetadata>,
) -> Answer<Delivered> {
    metadata(&req.metadata)?;
    let id = room_id(&room);
    let op = AdminOp::ParticipantMetadata {
        name: room,
        user: user_id(&user)?,
        metadata: req.metadata,
    };
    run(&sig, Some(&id), op).await.map(delivered)
}

/// Mute or unmute a track a participant publishes: a muted track is not forwarded (its
/// publisher cannot unmute it) and the room hears `track:muted` / `track:unmuted`.
#[utoipa::path(post, path = "/api/v1/admin/rooms/{room}/participants/{user}/tracks/{track}/mute", tag = "participants",
    params(("room" = String, Path, description = "The room's name"),
           ("user" = String, Path, description = "The publisher's user id"),
           ("track" = String, Path, description = "The track id (as in `track:published`)")),
    request_body = MuteTrack,
    responses(
        (status = 200, description = "Done", body = MuteTrack),
        (status = 404, description = "No such room, participant or track", body = super::model::ApiError),
        (status = 409, description = "No SFU on this server", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError)))]
async fn mute_track(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path((room, user, track)): Path<(String, String, String)>,
    Body(req): Body<MuteTrack>,
) -> Answer<MuteTrack> {
    hold(&sig, room_id(&room), &user, track, req).await
}

/// Mute or unmute a track a participant publishes in an SFU-mode call, as for rooms.
#[utoipa::path(post, path = "/api/v1/admin/calls/{call}/participants/{user}/tracks/{track}/mute", tag = "calls",
    params(("call" = String, Path, description = "The call id"),
           ("user" = String, Path, description = "The publisher's user id"),
           ("track" = String, Path, description = "The track id (as in `track:published`)")),
    request_body = MuteTrack,
    responses(
        (status = 200, description = "Done", body = MuteTrack),
        (status = 404, description = "No such call, participant or track", body = super::model::ApiError),
        (status = 409, description = "No SFU on this server", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError)))]
async fn mute_call_track(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path((call, user, track)): Path<(String, String, String)>,
    Body(req): Body<MuteTrack>,
) -> Answer<MuteTrack> {
    hold(&sig, CallId(call), &user, track, req).await
}

/// Holds or releases `track` of `user` in `space`.
async fn hold(
    sig: &Signaling,
    space: CallId,
    user: &str,
    track: String,
    req: MuteTrack,
) -> Answer<MuteTrack> {
    let user = user_id(user)?;
    let op = AdminOp::Seats {
        space: space.clone(),
        user: user.clone(),
    };
    let media = AdminMedia::Hold {
        space: space.clone(),
        user,
        track,
        held: req.muted,
    };
    match sig.hub.admin_with_media(op, Some(media)).await {
        Ok(_) => Ok(Json(req)),
        Err(f) => Err(elsewhere(sig, &space, f).await),
    }
}

/// List the calls this node owns that have not ended.
#[utoipa::path(get, path = "/api/v1/admin/calls", tag = "calls",
    responses((status = 200, description = "The calls this node owns", body = [CallSummary])))]
async fn list_calls(_: Admin, State(sig): State<Arc<Signaling>>) -> Answer<Vec<CallSummary>> {
    match run(&sig, None, AdminOp::Calls).await? {
        AdminOutput::Calls(calls) => Ok(Json(calls)),
        _ => Ok(Json(Vec::new())),
    }
}

/// Show one call with its participants' tracks.
#[utoipa::path(get, path = "/api/v1/admin/calls/{call}", tag = "calls",
    params(("call" = String, Path, description = "The call id")),
    responses(
        (status = 200, description = "The call", body = CallSummary),
        (status = 404, description = "No such call", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError)))]
async fn show_call(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(call): Path<String>,
) -> Answer<CallSummary> {
    let id = CallId(call);
    let calls = match run(&sig, Some(&id), AdminOp::Calls).await? {
        AdminOutput::Calls(calls) => calls,
        _ => Vec::new(),
    };
    let Some(mut summary) = calls.into_iter().find(|c| c.call_id == id.as_str()) else {
        let gone = protocol::Failure::new(protocol::ErrorCode::NotFound, "no such call");
        return Err(elsewhere(&sig, &id, gone).await);
    };
    if let Ok(with_tracks) = participants(&sig, id).await {
        summary.participants = with_tracks;
    }
    Ok(Json(summary))
}

/// End a call for everyone: they hear `call:ended` (`terminated`).
#[utoipa::path(delete, path = "/api/v1/admin/calls/{call}", tag = "calls",
    params(("call" = String, Path, description = "The call id")),
    responses(
        (status = 200, description = "Ended; `recipients` connections were in it", body = Delivered),
        (status = 404, description = "No such call", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError)))]
async fn end_call(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(call): Path<String>,
) -> Answer<Delivered> {
    let id = CallId(call);
    run(&sig, Some(&id), AdminOp::EndCall { id: id.clone() })
        .await
        .map(delivered)
}

/// Remove a participant from a call: they hear `call:ended` (`removed`); a 1:1 call ends for
/// the other too (`terminated`); a participant still ringing stops ringing.
#[utoipa::path(delete, path = "/api/v1/admin/calls/{call}/participants/{user}", tag = "calls",
    params(("call" = String, Path, description = "The call id"),
           ("user" = String, Path, description = "The participant's user id")),
    responses(
        (status = 200, description = "Removed", body = Delivered),
        (status = 404, description = "No such call or participant", body = super::model::ApiError),
        (status = 409, description = "The participant already left", body = super::model::ApiError),
        (status = 421, description = "Another node owns it and did not answer the forwarded request", body = super::model::ApiError)))]
async fn remove_call_participant(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path((call, user)): Path<(String, String)>,
) -> Answer<Delivered> {
    let id = CallId(call);
    let op = AdminOp::Remove {
        space: id.clone(),
        user: user_id(&user)?,
    };
    run(&sig, Some(&id), op).await.map(delivered)
}

/// List the revocations in force.
#[utoipa::path(get, path = "/api/v1/admin/revocations", tag = "tokens",
    responses((status = 200, description = "Revocations in force", body = [RevocationInfo])))]
async fn list_revocations(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
) -> Answer<Vec<RevocationInfo>> {
    Ok(Json(sig.revocations.list().iter().map(info).collect()))
}

/// Revoke a user's tokens, or one token by its `jti`: live sessions using them are closed
/// at once with `token_revoked` (WebSocket 4003) on every node, and the tokens are refused at
/// connect and at `session:refresh` until the revocation lapses.
#[utoipa::path(post, path = "/api/v1/admin/revocations", tag = "tokens", request_body = Revoke,
    responses(
        (status = 201, description = "Revoked", body = RevocationInfo),
        (status = 409, description = "`admin.max_revocations` are in force", body = super::model::ApiError),
        (status = 422, description = "Neither or both of userId and jti, or a bad expiresAt", body = super::model::ApiError),
        (status = 503, description = "The revocation could not be kept", body = super::model::ApiError)))]
async fn revoke(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Body(req): Body<Revoke>,
) -> Result<(StatusCode, Json<RevocationInfo>), ApiFailure> {
    let target = match (req.user_id, req.jti) {
        (Some(user), None) => Target::User(user_id(&user)?),
        (None, Some(jti)) if !jti.is_empty() && jti.len() <= crate::revocation::MAX_JTI_BYTES => {
            Target::Token(jti)
        }
        (None, Some(_)) => {
            return Err(ApiFailure::invalid(format!(
                "`jti` must be 1-{} bytes",
                crate::revocation::MAX_JTI_BYTES
            )));
        }
        _ => {
            return Err(ApiFailure::invalid(
                "name exactly one of `userId` and `jti`",
            ));
        }
    };
    let now = unix_now();
    let expires_at = match req.expires_at {
        None => now + sig.admin.revocation_ttl.as_secs(),
        Some(at) if at > now && at <= now + MAX_REVOCATION_SECS => at,
        Some(_) => {
            return Err(ApiFailure::invalid(
                "`expiresAt` must be a Unix second in the future, at most a year ahead",
            ));
        }
    };
    let revocation = Revocation {
        target,
        revoked_at: now,
        expires_at,
    };
    sig.revocations.revoke(&revocation).await?;
    sig.routing.announce_revocation(&revocation);
    Ok((StatusCode::CREATED, Json(info(&revocation))))
}

fn info(r: &Revocation) -> RevocationInfo {
    let (kind, subject) = match &r.target {
        Target::User(u) => ("user", u.to_string()),
        Target::Token(j) => ("token", j.clone()),
    };
    RevocationInfo {
        kind: kind.into(),
        subject,
        revoked_at: r.revoked_at,
        expires_at: r.expires_at,
    }
}

/// A unit enum's serde name.
fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
