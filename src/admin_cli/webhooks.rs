//! `chorus webhooks list|create|get|update|delete`: webhook endpoints through the server API
//! (ADR 0074). A secret is printed by `create` and `update --rotate` only: the server does not
//! show it again.

use super::{ApiArgs, Call, request, rows, segment, summary, table, text};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// List the endpoints (configured and created through the API), without secrets.
    List,
    /// Create an endpoint; prints its id and its secret (shown this once).
    Create {
        /// `http://` or `https://` URL that receives the `POST`s (`--url` is the server's).
        #[arg(value_name = "ENDPOINT_URL")]
        endpoint_url: String,
        /// Event types or prefixes, comma-separated (`call.*,participant.joined`); default:
        /// every type but `message.sent`.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// A `whsec_` secret to sign with; default: the server makes one.
        #[arg(long)]
        secret: Option<String>,
    },
    /// Show one endpoint.
    Get { id: String },
    /// Change an endpoint's URL or events, or rotate its secret (--rotate).
    Update {
        id: String,
        /// The endpoint's new URL (`--url` is the server's).
        #[arg(long)]
        endpoint_url: Option<String>,
        /// Event types or prefixes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// Add a new secret (printed); the current ones keep signing for --grace-secs.
        #[arg(long)]
        rotate: bool,
        /// With --rotate: the new `whsec_` secret; default: the server makes one.
        #[arg(long, requires = "rotate")]
        secret: Option<String>,
        /// With --rotate: how long the current secrets keep signing (default 86400).
        #[arg(long, requires = "rotate")]
        grace_secs: Option<u64>,
    },
    /// Delete an endpoint; its undelivered events are dropped.
    Delete { id: String },
}

fn path(id: &str) -> String {
    format!("/api/v1/admin/webhooks/{}", segment(id))
}

/// Runs `chorus webhooks ...`.
pub async fn webhooks(api: &ApiArgs, command: &WebhooksCommand) -> Result<String, String> {
    let answer = match command {
        WebhooksCommand::List => request(api, &Call::get("/api/v1/admin/webhooks".into())).await?,
        WebhooksCommand::Create {
            endpoint_url,
            events,
            secret,
        } => {
            let call = Call {
                method: "POST",
                path: "/api/v1/admin/webhooks".into(),
                body: Some(json!({"url": endpoint_url, "events": events, "secret": secret})),
            };
            request(api, &call).await?
        }
        WebhooksCommand::Get { id } => request(api, &Call::get(path(id))).await?,
        WebhooksCommand::Update {
            id,
            endpoint_url,
            events,
            rotate,
            secret,
            grace_secs,
        } => {
            if endpoint_url.is_none() && events.is_none() && !rotate {
                return Err("nothing to change: pass --endpoint-url, --events or --rotate".into());
            }
            let mut answer = Value::Null;
            if endpoint_url.is_some() || events.is_some() {
                let call = Call {
                    method: "PUT",
                    path: path(id),
                    body: Some(json!({"url": endpoint_url, "events": events})),
                };
                answer = request(api, &call).await?;
            }
            if *rotate {
                let call = Call {
                    method: "POST",
                    path: format!("{}/secrets", path(id)),
                    body: Some(json!({"secret": secret, "graceSecs": grace_secs})),
                };
                answer = request(api, &call).await?;
            }
            answer
        }
        WebhooksCommand::Delete { id } => {
            let call = Call {
                method: "DELETE",
                path: path(id),
                body: None,
            };
            request(api, &call).await?
        }
    };
    if api.json {
        return Ok(summary(api, &answer));
    }
    Ok(match command {
        WebhooksCommand::List => table(
            &[
                "ID", "SOURCE", "URL", "EVENTS", "SECRETS", "PAUSED", "FAILURES",
            ],
            rows(&answer, line),
        ),
        WebhooksCommand::Get { .. } => table(
            &[
                "ID", "SOURCE", "URL", "EVENTS", "SECRETS", "PAUSED", "FAILURES",
            ],
            vec![line(&answer)],
        ),
        WebhooksCommand::Create { .. } => format!(
            "created webhook {}\nsecret: {}",
            text(&answer["webhook"]["id"]),
            text(&answer["secret"])
        ),
        WebhooksCommand::Update { id, .. } if answer.get("secret").is_some() => {
            format!(
                "updated webhook {id}\nnew secret: {}",
                text(&answer["secret"])
            )
        }
        WebhooksCommand::Update { id, .. } => format!("updated webhook {id}"),
        WebhooksCommand::Delete { id } => format!(
            "deleted webhook {id} ({} undelivered events dropped)",
            text(&answer["droppedEvents"])
        ),
    })
}

fn line(w: &Value) -> Vec<String> {
    let events: Vec<String> = w["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(text)
        .collect();
    vec![
        text(&w["id"]),
        text(&w["source"]),
        text(&w["url"]),
        if events.is_empty() {
            "*".into()
        } else {
            events.join(",")
        },
        text(&w["secrets"]),
        text(&w["paused"]),
        text(&w["failures"]),
    ]
}
