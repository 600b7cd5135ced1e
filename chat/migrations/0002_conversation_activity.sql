-- Conversations are swept once idle (issue 10, item 5): `active_at` is the last time anyone joined
-- the conversation or a message was committed to it. The retention sweeper deletes a
-- conversation, with its members, once it has no messages left and `active_at` is older than
-- the retention window. A message insert updates `active_at` in the same transaction that takes
-- the counter row, so a sweep that races a send sees the new time and keeps the conversation.
ALTER TABLE chat_conversations ADD COLUMN active_at BIGINT NOT NULL DEFAULT 0;
UPDATE chat_conversations SET active_at = created_at;
CREATE INDEX chat_conversations_active_at ON chat_conversations (active_at);
