//! Identifiers. Their definitions are chat's wire types in `protocol::chat`, checked when parsed,
//! so the rest of the crate never sees an unchecked string; chat uses them as they are.

pub use protocol::UserId;
pub use protocol::chat::{
    ConversationId, MAX_ID_CHARS, MAX_TEMP_ID_CHARS, MessageId, SequenceNumber, TempId,
};
