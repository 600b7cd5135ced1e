//! What a message may contain: its type, its text and the emoji reacting to it.
//!
//! Content is stored exactly as given (no trimming, no HTML escaping); it is only checked. Renderers
//! must treat it as text.

use crate::error::ChatError;

pub use protocol::chat::MessageKind;

/// Checks message text: not blank, at most `max_chars` scalar values, no NUL (which PostgreSQL
/// cannot store, and which no real text contains).
pub fn check_content(content: &str, max_chars: usize) -> Result<(), ChatError> {
    if content.trim().is_empty() {
        return Err(ChatError::invalid("content is empty"));
    }
    // Counting stops one past the limit so a megabyte of text costs no more than the limit.
    if content.chars().take(max_chars + 1).count() > max_chars {
        return Err(ChatError::ContentTooLong { max: max_chars });
    }
    if content.contains('\0') {
        return Err(ChatError::invalid("content contains a NUL character"));
    }
    Ok(())
}

/// Checks a reaction: 1..=`max_chars` scalar values with at least one non-ASCII one, no
/// whitespace or control characters, and no ASCII other than the keycap bases `0-9 # *`. That
/// admits emoji, skin tones, flags, ZWJ and keycap sequences, and refuses words and markup.
pub fn check_emoji(emoji: &str, max_chars: usize) -> Result<(), ChatError> {
    let count = emoji.chars().take(max_chars + 1).count();
    if count == 0 {
        return Err(ChatError::invalid("emoji is empty"));
    }
    if count > max_chars {
        return Err(ChatError::invalid(format!(
            "emoji is longer than {max_chars} characters"
        )));
    }
    let allowed = |c: char| {
        !c.is_control()
            && !c.is_whitespace()
            && (!c.is_ascii() || c.is_ascii_digit() || c == '#' || c == '*')
    };
    if !emoji.chars().all(allowed) || emoji.is_ascii() {
        return Err(ChatError::invalid("emoji is not an emoji"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ErrorCode;

    #[test]
    fn content_limits() {
        assert!(check_content("hello", 5).is_ok());
        assert_eq!(
            check_content("hello!", 5).unwrap_err().code(),
            ErrorCode::ContentTooLong
        );
        assert!(check_content("ééééé", 5).is_ok());
        assert_eq!(
            check_content("  \n", 5).unwrap_err().code(),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            check_content("a\0b", 5).unwrap_err().code(),
            ErrorCode::InvalidPayload
        );
        assert!(check_content("<b>not html</b>", 100).is_ok());
    }

    #[test]
    fn emoji_accepts_real_emoji() {
        for emoji in ["👍", "👍🏽", "🇫🇷", "👨‍👩‍👧‍👦", "1️⃣", "❤️", "🎉"]
        {
            assert!(check_emoji(emoji, 16).is_ok(), "{emoji}");
        }
    }

    #[test]
    fn emoji_refuses_text_markup_and_long() {
        for bad in ["", "a", "lol", "<script>", "👍 👍", "👍\n", "1", "👍a"] {
            assert!(check_emoji(bad, 16).is_err(), "{bad:?}");
        }
        assert!(check_emoji(&"👍".repeat(17), 16).is_err());
        assert!(check_emoji(&"👍".repeat(16), 16).is_ok());
    }
}
