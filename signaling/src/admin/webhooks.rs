//! `/api/v1/admin/webhooks`: webhook endpoints through the server API (issue 14, ADR 0074).
//!
//! Webhooks belong to the binary (it owns delivery and the outbox), and this crate does not
//! depend on it: the binary plugs in a [`WebhookAdmin`] ([`crate::Parts::webhooks`]), and these
//! handlers only authenticate, parse and answer, like every other route of the API. Without
//! one, every route answers 409 `invalid_state`.
//!
//! The implementation decides what is valid and keeps the endpoints; it answers with
//! [`Failure`]s whose codes map to statuses as everywhere in the API: `not_found` 404,
//! `managed_by_config` 409 (a `[[webhooks]]` endpoint), `limit_exceeded` 409, `invalid_payload`
//! 422, `storage_unavailable` 503.

use super::model::{
    CreateWebhook, RotateSecret, UpdateWebhook, WebhookDeleted, WebhookInfo, WebhookSecret,
};
use super::{Admin, ApiFailure, Body};
use crate::Signaling;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::{ErrorCode, Failure};
use std::sync::Arc;

/// Webhook endpoints as the server API manages them; implemented by the binary.
#[async_trait::async_trait]
pub trait WebhookAdmin: Send + Sync + 'static {
    /// Every endpoint, configured ones first.
    fn list(&self) -> Vec<WebhookInfo>;

    /// One endpoint.
    fn show(&self, id: &str) -> Result<WebhookInfo, Failure>;

    /// Creates an endpoint; answers with its secret.
    async fn create(&self, request: CreateWebhook) -> Result<WebhookSecret, Failure>;

    /// Changes an API endpoint's URL or events.
    async fn update(&self, id: &str, request: UpdateWebhook) -> Result<WebhookInfo, Failure>;

    /// Adds a signing secret to an API endpoint; the others keep signing for the grace period.
    async fn rotate(&self, id: &str, request: RotateSecret) -> Result<WebhookSecret, Failure>;

    /// Deletes an API endpoint and its undelivered events.
    async fn delete(&self, id: &str) -> Result<WebhookDeleted, Failure>;
}

/// The webhook routes (listed in [`super::ROUTES`]).
pub fn router() -> Router<Arc<Signaling>> {
    Router::new()
        .route(
            "/api/v1/admin/webhooks",
            get(list_webhooks).post(create_webhook),
        )
        .route(
            "/api/v1/admin/webhooks/{webhook}",
            get(show_webhook).put(update_webhook).delete(delete_webhook),
        )
        .route(
            "/api/v1/admin/webhooks/{webhook}/secrets",
            post(rotate_secret),
        )
}

type Answer<T> = Result<Json<T>, ApiFailure>;

fn admin(sig: &Signaling) -> Result<&dyn WebhookAdmin, ApiFailure> {
    sig.webhooks.as_deref().ok_or_else(|| {
        ApiFailure::new(
            StatusCode::CONFLICT,
            ErrorCode::InvalidState,
            "this server does not manage webhooks",
        )
    })
}

/// List the webhook endpoints, configured and created through this API, without secrets.
#[utoipa::path(get, path = "/api/v1/admin/webhooks", tag = "webhooks",
    responses((status = 200, description = "Every endpoint; health as seen by the node asked", body = [WebhookInfo])))]
async fn list_webhooks(_: Admin, State(sig): State<Arc<Signaling>>) -> Answer<Vec<WebhookInfo>> {
    Ok(Json(admin(&sig)?.list()))
}

/// Create a webhook endpoint. The answer holds its secret, which is not shown again.
#[utoipa::path(post, path = "/api/v1/admin/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; every node delivers to it within a few seconds", body = WebhookSecret),
        (status = 409, description = "`webhook.max_api_endpoints` exist (`limit_exceeded`)", body = super::model::ApiError),
        (status = 422, description = "Bad URL, unknown event, bad secret, or a field too long", body = super::model::ApiError)))]
async fn create_webhook(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Body(req): Body<CreateWebhook>,
) -> Result<(StatusCode, Json<WebhookSecret>), ApiFailure> {
    let created = admin(&sig)?.create(req).await?;
    sig.routing.announce_webhook_change();
    Ok((StatusCode::CREATED, Json(created)))
}

/// Show one webhook endpoint, without secrets.
#[utoipa::path(get, path = "/api/v1/admin/webhooks/{webhook}", tag = "webhooks",
    params(("webhook" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookInfo),
        (status = 404, description = "No such endpoint", body = super::model::ApiError)))]
async fn show_webhook(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(id): Path<String>,
) -> Answer<WebhookInfo> {
    Ok(Json(admin(&sig)?.show(&id)?))
}

/// Change an endpoint's URL or events. Configured endpoints are changed in the configuration
/// file.
#[utoipa::path(put, path = "/api/v1/admin/webhooks/{webhook}", tag = "webhooks",
    params(("webhook" = String, Path, description = "The endpoint's id")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "Changed", body = WebhookInfo),
        (status = 404, description = "No such endpoint", body = super::model::ApiError),
        (status = 409, description = "A configured endpoint (`managed_by_config`), or changed concurrently (`invalid_state`)", body = super::model::ApiError),
        (status = 422, description = "Nothing to change, bad URL or unknown event", body = super::model::ApiError)))]
async fn update_webhook(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(id): Path<String>,
    Body(req): Body<UpdateWebhook>,
) -> Answer<WebhookInfo> {
    let updated = admin(&sig)?.update(&id, req).await?;
    sig.routing.announce_webhook_change();
    Ok(Json(updated))
}

/// Rotate an endpoint's secret: requests are signed with the new secret and, for the grace
/// period, with the current ones too, so the receiver can switch without missing an event.
#[utoipa::path(post, path = "/api/v1/admin/webhooks/{webhook}/secrets", tag = "webhooks",
    params(("webhook" = String, Path, description = "The endpoint's id")),
    request_body = RotateSecret,
    responses(
        (status = 201, description = "The new secret, shown this once", body = WebhookSecret),
        (status = 404, description = "No such endpoint", body = super::model::ApiError),
        (status = 409, description = "A configured endpoint (`managed_by_config`), eight secrets sign already (`limit_exceeded`), or changed concurrently (`invalid_state`)", body = super::model::ApiError),
        (status = 422, description = "Bad secret or grace period", body = super::model::ApiError)))]
async fn rotate_secret(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(id): Path<String>,
    Body(req): Body<RotateSecret>,
) -> Result<(StatusCode, Json<WebhookSecret>), ApiFailure> {
    let rotated = admin(&sig)?.rotate(&id, req).await?;
    sig.routing.announce_webhook_change();
    Ok((StatusCode::CREATED, Json(rotated)))
}

/// Delete an endpoint: deliveries to it stop and its undelivered events are dropped.
#[utoipa::path(delete, path = "/api/v1/admin/webhooks/{webhook}", tag = "webhooks",
    params(("webhook" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "Deleted", body = WebhookDeleted),
        (status = 404, description = "No such endpoint", body = super::model::ApiError),
        (status = 409, description = "A configured endpoint (`managed_by_config`)", body = super::model::ApiError)))]
async fn delete_webhook(
    _: Admin,
    State(sig): State<Arc<Signaling>>,
    Path(id): Path<String>,
) -> Answer<WebhookDeleted> {
    let deleted = admin(&sig)?.delete(&id).await?;
    sig.routing.announce_webhook_change();
    Ok(Json(deleted))
}
