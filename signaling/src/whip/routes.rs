//! The HTTP side of WHIP: checks each request in the order RFC 9725 clients rely on (token,
//! content type, size, then the SDP), and renders answers with their headers.
//!
//! Every request needs the Bearer token: a POST's must grant the room, a PATCH's or DELETE's
//! must be the session owner's (another user's token gets 404, as an unknown session would, so
//! session ids cannot be probed). Every answer carries CORS headers so browser clients on other
//! origins can read `Location`, `ETag` and `Link`; the token is a header, never a cookie, so
//! any origin may call.

use super::sdp::Fragment;
use super::session::{self, Command, Patched, Refusal, Role};
use super::{Whip, WhipId};
use crate::Signaling;
use crate::cluster::Topology;
use crate::media::ViewTarget;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use protocol::{ErrorCode, IceServer, UserId};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::oneshot;

/// Where a room's WHIP endpoint is; `{room}` is the room's name.
pub const ENDPOINT: &str = "/whip/v1/rooms/{room}";
/// Where a session lives; the `Location` of a POST's answer.
pub const SESSION: &str = "/whip/v1/sessions/{id}";

const SDP: &str = "application/sdp";
const FRAGMENT: &str = "application/trickle-ice-sdpfrag";

/// Where a WHEP endpoint is: `{user}`'s tracks in `{room}`.
pub const VIEWER_ENDPOINT: &str = "/whep/v1/rooms/{room}/participants/{user}";
/// Where the WHEP endpoint for a room's active speaker is.
pub const SPEAKER_ENDPOINT: &str = "/whep/v1/rooms/{room}/speaker";
/// Where a WHEP session lives.
pub const VIEWER_SESSION: &str = "/whep/v1/sessions/{id}";

/// The WHIP and WHEP routes, served with the signaling state.
pub fn router() -> Router<Arc<Signaling>> {
    let session = || {
        axum::routing::patch(patch)
            .delete(delete)
            .options(session_options)
    };
    Router::new()
        .route(ENDPOINT, post(publish).options(endpoint_options))
        .route(SESSION, session())
        .route(VIEWER_ENDPOINT, post(view).options(endpoint_options))
        .route(
            SPEAKER_ENDPOINT,
            post(view_speaker).options(endpoint_options),
        )
        .route(VIEWER_SESSION, session())
        .layer(axum::middleware::map_response(cors))
}

/// `POST /whip/v1/rooms/{room}`: opens a session publishing into `room`.
async fn publish(
    State(sig): State<Arc<Signaling>>,
    Path(room): Path<String>,
    request: Request,
) -> Response {
    open(sig, room, Role::Publish, request).await
}

/// `POST /whep/v1/rooms/{room}/participants/{user}`: opens a session receiving `user`'s
/// tracks in `room`.
async fn view(
    State(sig): State<Arc<Signaling>>,
    Path((room, user)): Path<(String, String)>,
    request: Request,
) -> Response {
    let viewed = ViewTarget::Participant {
        user: UserId::from(user.as_str()),
    };
    open(sig, room, Role::View { viewed }, request).await
}

/// `POST /whep/v1/rooms/{room}/speaker`: opens a session receiving the tracks of the room's
/// active speaker, moving to each new speaker as the room's `room:speakers` changes.
async fn view_speaker(
    State(sig): State<Arc<Signaling>>,
    Path(room): Path<String>,
    request: Request,
) -> Response {
    let viewed = ViewTarget::ActiveSpeaker;
    open(sig, room, Role::View { viewed }, request).await
}

/// A POST of either kind: token, content type, owner node, size, then the session.
async fn open(sig: Arc<Signaling>, room: String, role: Role, request: Request) -> Response {
    let Some(whip) = sig.whip.clone() else {
        return refuse(not_served());
    };
    let (identity, terms) = match sig.authenticate_session(request.headers(), None) {
        Ok(authenticated) => authenticated,
        Err(refused) => return refused.into_response(),
    };
    if let Err(refusal) = content_type(request.headers(), SDP) {
        return refuse(refusal);
    }
    let path = request.uri().path().to_owned();
    if let Some(redirect) = elsewhere(&sig, &identity, &room, &path).await {
        return redirect;
    }
    let offer = match body(request, whip.settings.max_sdp_bytes).await {
        Ok(offer) => offer,
        Err(refusal) => return refuse(refusal),
    };
    if !offer.starts_with("v=") {
        return refuse(Refusal::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidPayload,
            "the body is not an SDP offer",
        ));
    }
    let sessions = match role {
        Role::Publish => SESSION,
        Role::View { .. } => VIEWER_SESSION,
    };
    let opened = match session::open(&sig, &whip, identity, terms, room, (role, offer)).await {
        Ok(opened) => opened,
        Err(refusal) => return refuse(refusal),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    let location = sessions.replace("{id}", opened.id.as_str());
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&opened.etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        HeaderName::from_static("accept-patch"),
        HeaderValue::from_static(FRAGMENT),
    );
    let servers = sig
        .ice
        .for_user(&opened.identity.user_id, SystemTime::now());
    for link in ice_links(&servers) {
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.append(header::LINK, value);
        }
    }
    (StatusCode::CREATED, headers, opened.answer).into_response()
}

/// In a cluster, where a POST for `room` must go: `None` when this node owns the room (or
/// is given it now), else `307` to the owner, whose SFU carries the room's media and whose
/// hub hears its SFU's news about the session (RFC 9725 §4.5 lets a WHIP endpoint redirect).
/// A token without the room's grant is refused first, so it cannot claim room names.
async fn elsewhere(
    sig: &Signaling,
    identity: &crate::auth::Identity,
    room: &str,
    path: &str,
) -> Option<Response> {
    let cluster = sig.routing.cluster();
    if cluster.topology() == Topology::Solo {
        return None;
    }
    if identity.grants.room.as_deref() != Some(room) && !identity.grants.admin {
        return Some(refuse(Refusal::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("your token does not grant room `{room}`"),
        )));
    }
    let owner = match cluster.place(&crate::hub::room::room_id(room)).await {
        Ok(owner) => owner,
        Err(e) => return Some(refuse(e.failure().into())),
    };
    if &owner == cluster.node() {
        return None;
    }
    let url = cluster
        .nodes()
        .into_iter()
        .find(|n| n.id == owner)
        .map(|n| n.url);
    let location = url
        .map(|url| format!("{}{path}", url.trim_end_matches('/')))
        .and_then(|location| HeaderValue::from_str(&location).ok());
    let Some(location) = location else {
        return Some(refuse(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ClusterUnavailable,
            format!("room `{room}` is owned by node {owner}, whose address is not known here"),
        )));
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, location);
    Some((StatusCode::TEMPORARY_REDIRECT, headers).into_response())
}

/// `PATCH /whip/v1/sessions/{id}`: trickle ICE or an ICE restart.
async fn patch(
    State(sig): State<Arc<Signaling>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let commands = match owned_session(&sig, request.headers(), &id) {
        Ok(commands) => commands,
        Err(refusal) => return refuse(refusal),
    };
    if let Err(refusal) = content_type(request.headers(), FRAGMENT) {
        return refuse(refusal);
    }
    let if_match = request
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limit = sig.whip.as_ref().map_or(0, |w| w.settings.max_sdp_bytes);
    let text = match body(request, limit).await {
        Ok(text) => text,
        Err(refusal) => return refuse(refusal),
    };
    let fragment = match Fragment::parse(&text) {
        Ok(fragment) => fragment,
        Err(e) => {
            return refuse(Refusal::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidPayload,
                e.to_string(),
            ));
        }
    };
    let (reply, answer) = oneshot::channel();
    let command = Command::Patch {
        if_match,
        fragment,
        reply,
    };
    if commands.send(command).await.is_err() {
        return refuse(unknown_session());
    }
    match answer.await {
        Ok(Ok(Patched::Trickled)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(Patched::Restarted { fragment, etag })) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FRAGMENT));
            if let Ok(value) = HeaderValue::from_str(&etag) {
                headers.insert(header::ETAG, value);
            }
            (StatusCode::OK, headers, fragment).into_response()
        }
        Ok(Err(refusal)) => refuse(refusal),
        Err(_) => refuse(unknown_session()),
    }
}

/// `DELETE /whip/v1/sessions/{id}`: ends the session; answered once its participant has
/// left the room.
async fn delete(
    State(sig): State<Arc<Signaling>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let commands = match owned_session(&sig, &headers, &id) {
        Ok(commands) => commands,
        Err(refusal) => return refuse(refusal),
    };
    let (reply, done) = oneshot::channel();
    if commands.send(Command::Delete { reply }).await.is_err() {
        return refuse(unknown_session());
    }
    match done.await {
        Ok(()) => StatusCode::OK.into_response(),
        // The session ended on its own meanwhile.
        Err(_) => refuse(unknown_session()),
    }
}

/// `OPTIONS` on the endpoint: a CORS preflight, and what the endpoint takes.
async fn endpoint_options() -> Response {
    let mut headers = preflight("POST, OPTIONS");
    headers.insert(
        HeaderName::from_static("accept-post"),
        HeaderValue::from_static(SDP),
    );
    (StatusCode::NO_CONTENT, headers).into_response()
}

/// `OPTIONS` on a session: a CORS preflight.
async fn session_options() -> Response {
    let mut headers = preflight("PATCH, DELETE, OPTIONS");
    headers.insert(
        HeaderName::from_static("accept-patch"),
        HeaderValue::from_static(FRAGMENT),
    );
    (StatusCode::NO_CONTENT, headers).into_response()
}

fn preflight(methods: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let methods = HeaderValue::from_static(methods);
    headers.insert(header::ALLOW, methods.clone());
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    headers
}

/// Adds the CORS headers every WHIP answer carries.
async fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Patch"),
    );
    response
}

/// The session `id` if the request's token is its owner's; else the refusal to give.
fn owned_session(
    sig: &Signaling,
    headers: &HeaderMap,
    id: &str,
) -> Result<tokio::sync::mpsc::Sender<Command>, Refusal> {
    let Some(whip) = sig.whip.as_ref() else {
        return Err(not_served());
    };
    let identity = sig
        .authenticate(headers, None)
        .map_err(|refused| Refusal::new(refused.status, refused.code, refused.message))?;
    let id = WhipId(id.to_owned());
    match Whip::commands(whip, &id) {
        Some((user, commands)) if user == identity.user_id => Ok(commands),
        _ => Err(unknown_session()),
    }
}

/// Refuses a body whose media type is not `expected` (parameters such as `charset` allowed).
fn content_type(headers: &HeaderMap, expected: &str) -> Result<(), Refusal> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = given.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    Err(Refusal::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::InvalidPayload,
        format!("the body must be `{expected}`"),
    ))
}

/// The request's body as text, at most `limit` bytes (413 past it, 400 when not UTF-8).
async fn body(request: Request, limit: usize) -> Result<String, Refusal> {
    let bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::LimitExceeded,
                format!("the body is larger than {limit} bytes (`whip.max_sdp_bytes`)"),
            )
        })?;
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidPayload,
            "the body is not UTF-8 text",
        )
    })
}

/// One `Link` value per ICE server URL (RFC 9725 §4.6), with the TURN credentials.
pub fn ice_links(servers: &[IceServer]) -> Vec<String> {
    let mut links = Vec::new();
    for server in servers {
        for url in &server.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(username), Some(credential)) = (&server.username, &server.credential) {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quoted(username),
                    quoted(credential)
                ));
            }
            links.push(link);
        }
    }
    links
}

/// `s` safe inside a quoted-string.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn refuse(refusal: Refusal) -> Response {
    crate::http::failure(refusal.status, refusal.failure)
}

fn unknown_session() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such WHIP session (it ended, or was never opened)",
    )
}

fn not_served() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "WHIP is not served here (it needs the SFU and `whip.enabled`)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_each_url_with_turn_credentials() {
        let servers = vec![
            IceServer {
                urls: vec!["stun:s.example:3478".into()],
                username: None,
                credential: None,
            },
            IceServer {
                urls: vec![
                    "turn:t.example:3478?transport=udp".into(),
                    "turn:t.example:3478?transport=tcp".into(),
                ],
                username: Some("1000:alice".into()),
                credential: Some("pa\"ss".into()),
            },
        ];
        let links = ice_links(&servers);
        assert_eq!(
            links,
            [
                "<stun:s.example:3478>; rel=\"ice-server\"",
                "<turn:t.example:3478?transport=udp>; rel=\"ice-server\"; username=\"1000:alice\"; \
                 credential=\"pa\\\"ss\"; credential-type=\"password\"",
                "<turn:t.example:3478?transport=tcp>; rel=\"ice-server\"; username=\"1000:alice\"; \
                 credential=\"pa\\\"ss\"; credential-type=\"password\"",
            ]
        );
    }

    #[test]
    fn the_media_type_is_checked_without_its_parameters() {
        let mut headers = HeaderMap::new();
        assert!(content_type(&headers, SDP).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/SDP; charset=utf-8"),
        );
        assert!(content_type(&headers, SDP).is_ok());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let refusal = content_type(&headers, SDP).unwrap_err();
        assert_eq!(refusal.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
