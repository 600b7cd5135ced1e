-- The webhook outbox (issue 14, ADR 0073): one row per (endpoint, event), written before the
-- clients involved hear of the event, deleted some time after it was delivered or given up.
-- `order_key` is the room, call or conversation the event belongs to; `pos` orders the events
-- of one key (a per-process monotonic microsecond clock, so a new owner after a failover orders
-- after the old one). A row is claimable only while it is the oldest undone row of its
-- (endpoint, order_key): a key's next event waits for the previous one to be delivered.
-- `lease_until` is the claim: a node that dies mid-delivery leaves a lease that expires, and
-- another node takes the row over. Times are Unix milliseconds.
CREATE TABLE webhook_outbox (
    endpoint TEXT NOT NULL,
    event_id TEXT NOT NULL,
    order_key TEXT NOT NULL,
    pos BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    done_at BIGINT,
    outcome TEXT CHECK (outcome IN ('delivered', 'failed')),
    last_error TEXT,
    PRIMARY KEY (endpoint, event_id)
);

-- The head-of-key check and claims walk a key's rows in order.
CREATE INDEX webhook_outbox_key ON webhook_outbox (endpoint, order_key, pos);
-- Claims look for due rows; pruning for old done rows.
CREATE INDEX webhook_outbox_due ON webhook_outbox (done_at, next_attempt_at);
