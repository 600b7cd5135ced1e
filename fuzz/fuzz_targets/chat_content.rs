//! Message text and reaction checks on arbitrary UTF-8, against their documented rules: the
//! checks never panic, and what they accept has the properties they promise. Run:
//! `cd fuzz && cargo +nightly fuzz run chat_content`.
#![no_main]

use chat::{check_content, check_emoji};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &str)| {
    let (limit, text) = input;
    let max = usize::from(limit);
    if check_content(text, max).is_ok() {
        assert!(!text.trim().is_empty(), "accepted blank content");
        assert!(
            text.chars().count() <= max,
            "accepted content over the limit"
        );
        assert!(!text.contains('\0'), "accepted a NUL");
    }
    if check_emoji(text, max).is_ok() {
        let count = text.chars().count();
        assert!(
            (1..=max).contains(&count),
            "accepted {count} chars as an emoji"
        );
        assert!(!text.is_ascii(), "accepted plain ASCII as an emoji");
        assert!(
            text.chars().all(|c| !c.is_control() && !c.is_whitespace()),
            "accepted whitespace or a control character in an emoji"
        );
        assert!(
            text.chars()
                .filter(char::is_ascii)
                .all(|c| c.is_ascii_digit() || c == '#' || c == '*'),
            "accepted ASCII other than keycap bases in an emoji"
        );
    }
});
