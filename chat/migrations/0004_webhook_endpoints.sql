-- Webhook endpoints created through the server API (issue 14, ADR 0074); `[[webhooks]]` from the
-- configuration file are not stored. Every node reads this table every few seconds, so an
-- endpoint created or deleted on one node reaches the others. `events` is a JSON array of event
-- types; `secrets` a JSON array of `{"secret": "whsec_...", "expiresAt": <ms or null>}`, newest
-- first: a rotated-out secret keeps signing until `expiresAt`. `revision` counts changes, so two
-- concurrent updates cannot both apply. Times are Unix milliseconds.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secrets TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 1
);
