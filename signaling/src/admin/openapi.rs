//! The server API's OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the [`super::model`] types.

use super::model::{
    ApiError, CallSummary, ConnectionInfo, CreateRoom, CreateWebhook, Delivered, MuteTrack,
    ParticipantInfo, ParticipantKind, RevocationInfo, Revoke, RoomSummary, RotateSecret, SendData,
    SetMetadata, TrackInfo, UpdateWebhook, WebhookDeleted, WebhookInfo, WebhookSecret,
};
use super::routes::*;
use super::webhooks::*;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chorus server API",
        description = "Rooms, calls, participants, token revocation and webhook endpoints, for an application's \
                       backend. Authenticate with `Authorization: Bearer` and a JWT with the \
                       `admin` grant, or an API key from `admin.api_keys`.",
        version = "1"
    ),
    paths(
        list_rooms,
        create_room,
        show_room,
        delete_room,
        room_metadata,
        send_data,
        room_participants,
        remove_room_participant,
        participant_metadata,
        mute_track,
        list_calls,
        show_call,
        end_call,
        remove_call_participant,
        mute_call_track,
        list_revocations,
        revoke,
        list_webhooks,
        create_webhook,
        show_webhook,
        update_webhook,
        delete_webhook,
        rotate_secret
    ),
    components(schemas(
        ApiError,
        CallSummary,
        ConnectionInfo,
        CreateRoom,
        Delivered,
        MuteTrack,
        ParticipantInfo,
        ParticipantKind,
        RevocationInfo,
        Revoke,
        RoomSummary,
        SendData,
        SetMetadata,
        TrackInfo,
        CreateWebhook,
        UpdateWebhook,
        RotateSecret,
        WebhookInfo,
        WebhookSecret,
        WebhookDeleted
    )),
    modifiers(&Common),
    tags(
        (name = "rooms", description = "Named rooms"),
        (name = "participants", description = "Participants of a room"),
        (name = "calls", description = "Ringing and active calls"),
        (name = "tokens", description = "Token revocation"),
        (name = "webhooks", description = "Webhook endpoints")
    )
)]
struct ApiDoc;

/// The document served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// What every operation shares: the bearer scheme, and the refusals any of them can answer.
struct Common;

impl Modify for Common {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "ApiError",
                            ))))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                let responses = &mut op.responses.responses;
                responses
                    .entry("401".into())
                    .or_insert_with(|| error("No token, a bad or revoked one (`token_*` codes)"));
                responses.entry("403".into()).or_insert_with(|| {
                    error("A valid token without the `admin` grant (`forbidden`)")
                });
                if op.request_body.is_some() {
                    responses
                        .entry("400".into())
                        .or_insert_with(|| error("The body is not JSON (`invalid_payload`)"));
                    responses.entry("413".into()).or_insert_with(|| {
                        error("The body is over `admin.max_body_bytes` (`limit_exceeded`)")
                    });
                    responses.entry("422".into()).or_insert_with(|| {
                        error("The body is JSON of the wrong shape (`invalid_payload`)")
                    });
                }
                responses.entry("503".into()).or_insert_with(|| {
                    error("Shutting down, or the cluster or storage is unreachable")
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::routes::ROUTES;
    use std::collections::BTreeSet;

    #[test]
    fn the_document_lists_every_route_and_nothing_else() {
        let doc = serde_json::to_value(super::document()).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let mut listed = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                listed.insert((method.clone(), path.clone()));
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(listed, routed);
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
