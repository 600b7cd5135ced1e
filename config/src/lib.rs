//! Typed Chorus configuration.
//!
//! Sources, each overriding the one before:
//! 1. built-in defaults (every key has one; `chorus.example.toml` lists them all);
//! 2. a TOML file (`--config FILE`);
//! 3. `CHORUS_<SECTION>_<KEY>` environment variables, e.g. `CHORUS_AUTH_SECRET`,
//!    `CHORUS_CALLS_RING_TIMEOUT=30s`. Section names hold no underscore, so the first `_` after
//!    the section splits it from the key. Values are read as TOML (`50`, `true`, `["a","b"]`);
//!    anything that does not parse is taken as a string, and a string given for a list is split
//!    on commas;
//! 4. command-line overrides (`--set calls.ring_timeout=30s` and the dedicated flags).
//!
//! [`Config::load`] merges them into one TOML tree, deserialises it (errors name the key, e.g.
//! `calls.ring_timeout`), then [`Config::validate`] checks what types cannot (ranges, files that
//! must exist, combinations).

mod duration;
mod model;
mod sources;
mod webhook;

pub use duration::HumanDuration;
pub use model::*;
pub use sources::{ConfigError, Overrides};
pub use webhook::{
    MAX_API_WEBHOOK_ENDPOINTS, MAX_WEBHOOK_ENDPOINTS, MAX_WEBHOOK_EVENT_ENTRIES,
    MAX_WEBHOOK_URL_BYTES, OPT_IN_EVENTS, WEBHOOK_EVENTS, WebhookConfig, WebhookEndpoint,
    WebhookSecrets, check_webhook_events, check_webhook_url, webhook_secret_key,
};
