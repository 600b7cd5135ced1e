-- Chat schema, shared by SQLite and PostgreSQL (portable DDL only: TEXT, BIGINT, no SERIAL).
-- Times are milliseconds since the Unix epoch (UTC).

-- One row per conversation. `last_seq` is the sequence counter: a send increments it with
-- UPDATE ... RETURNING inside the insert transaction, which row-locks it (PostgreSQL) or holds
-- the write lock (SQLite), so numbers are gap-free and unique across processes.
CREATE TABLE chat_conversations (
    id TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- Everyone who has been a participant. Kept after the call and after retention, so members
-- keep read access. `read_seq` is the read cursor (0 = nothing read); it only moves forward.
CREATE TABLE chat_members (
    conversation_id TEXT NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at BIGINT NOT NULL,
    read_seq BIGINT NOT NULL DEFAULT 0,
    read_at BIGINT,
    PRIMARY KEY (conversation_id, user_id)
);

-- Messages. Deleting is soft: content becomes '' and deleted_at is set; the row keeps its place.
-- The second UNIQUE is idempotency: a retried tempId from the same sender conflicts instead of
-- inserting (NULL temp_ids never conflict).
CREATE TABLE chat_messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    sender_id TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    reply_to_id TEXT,
    temp_id TEXT,
    created_at BIGINT NOT NULL,
    edited_at BIGINT,
    deleted_at BIGINT,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, temp_id)
);

-- The retention sweeper deletes by age.
CREATE INDEX chat_messages_created_at ON chat_messages (created_at);

CREATE TABLE chat_reactions (
    message_id TEXT NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);
