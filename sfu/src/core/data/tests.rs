//! Unit tests of the envelope, the token buckets and admission, with simulated time.

use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use super::envelope::{BINARY_VERSION, unwrap_binary, wrap};
use super::*;

fn limits() -> DataLimits {
    DataLimits {
        max_message_bytes: 1000,
        messages_per_second: 10,
        bytes_per_second: 4000,
        max_buffered_bytes: 64 * 1024,
    }
}

#[test]
fn text_envelope_is_json_with_the_sender() {
    let e = wrap("alice", false, "hi \"there\"\n\\ \u{1} ✓".as_bytes()).unwrap();
    let text = String::from_utf8(e).unwrap();
    assert_eq!(
        text,
        r#"{"from":"alice","data":"hi \"there\"\n\\ \u0001 ✓"}"#
    );
}

#[test]
fn text_envelope_escapes_the_sender_too() {
    let e = wrap("a\"b", false, b"x").unwrap();
    assert_eq!(e, br#"{"from":"a\"b","data":"x"}"#);
}

#[test]
fn text_that_is_not_utf8_is_refused() {
    assert_eq!(wrap("alice", false, &[0xff, 0xfe]), None);
}

#[test]
fn binary_envelope_round_trips() {
    let payload = [0u8, 1, 2, 255];
    let e = wrap("bob✓", true, &payload).unwrap();
    assert_eq!(e[0], BINARY_VERSION);
    assert_eq!(u16::from_be_bytes([e[1], e[2]]) as usize, "bob✓".len());
    assert_eq!(unwrap_binary(&e), Some(("bob✓", &payload[..])));
    let empty = wrap("bob", true, &[]).unwrap();
    assert_eq!(unwrap_binary(&empty), Some(("bob", &[][..])));
}

#[test]
fn broken_binary_envelopes_do_not_unwrap() {
    assert_eq!(unwrap_binary(&[]), None);
    assert_eq!(unwrap_binary(&[2, 0, 0]), None);
    assert_eq!(unwrap_binary(&[1, 0]), None);
    assert_eq!(unwrap_binary(&[1, 0, 5, b'a']), None);
}

#[test]
fn bucket_refills_with_time_and_caps_at_one_second() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(10, t0);
    for _ in 0..10 {
        assert!(b.fits(t0, 1));
        b.take(t0, 1);
    }
    assert!(!b.fits(t0, 1));
    let t1 = t0 + Duration::from_millis(100);
    assert!(b.fits(t1, 1));
    b.take(t1, 1);
    assert!(!b.fits(t1, 1));
    // A long pause refills to the burst, not beyond.
    let t2 = t1 + Duration::from_secs(60);
    assert!(b.fits(t2, 10));
    assert!(!b.fits(t2, 11));
    // A clock going back adds nothing and breaks nothing.
    assert!(b.fits(t0, 10));
}

#[test]
fn admission_checks_grant_then_size_then_rate() {
    let t0 = Instant::now();
    let l = limits();
    let mut s = DataState::new(&l, t0);
    let no_data = Grants {
        can_publish_data: false,
        ..Grants::default()
    };
    assert_eq!(s.admit(t0, &no_data, &l, 1), Err(DataRefusal::NoGrant));
    let g = Grants::default();
    assert_eq!(
        s.admit(t0, &g, &l, 1001),
        Err(DataRefusal::TooLarge { limit: 1000 })
    );
    assert_eq!(s.admit(t0, &g, &l, 1000), Ok(()));
    // Bytes: 4000 per second; 3000 left.
    for _ in 0..3 {
        assert_eq!(s.admit(t0, &g, &l, 1000), Ok(()));
    }
    assert_eq!(s.admit(t0, &g, &l, 1), Err(DataRefusal::RateLimited));
    // A quarter second later 1000 bytes are back.
    let t1 = t0 + Duration::from_millis(250);
    assert_eq!(s.admit(t1, &g, &l, 1000), Ok(()));
    assert_eq!(s.admit(t1, &g, &l, 1), Err(DataRefusal::RateLimited));
}

#[test]
fn message_rate_is_limited_independently_of_bytes() {
    let t0 = Instant::now();
    let l = limits();
    let mut s = DataState::new(&l, t0);
    let g = Grants::default();
    for _ in 0..10 {
        assert_eq!(s.admit(t0, &g, &l, 0), Ok(()));
    }
    assert_eq!(s.admit(t0, &g, &l, 0), Err(DataRefusal::RateLimited));
    // Refused messages take no tokens: after 100 ms exactly one more fits.
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(s.admit(t1, &g, &l, 0), Ok(()));
    assert_eq!(s.admit(t1, &g, &l, 0), Err(DataRefusal::RateLimited));
}

#[test]
fn refusal_notices_are_spaced_per_reason() {
    let t0 = Instant::now();
    let mut s = DataState::new(&limits(), t0);
    let big = DataRefusal::TooLarge { limit: 1 };
    assert!(s.notice_due(t0, &big));
    assert!(!s.notice_due(t0 + Duration::from_millis(500), &big));
    assert!(s.notice_due(t0, &DataRefusal::RateLimited));
    assert!(s.notice_due(t0 + Duration::from_secs(1), &big));
}

#[test]
fn labels_name_kinds() {
    assert_eq!(
        DataKind::from_label("chorus-reliable"),
        Some(DataKind::Reliable)
    );
    assert_eq!(DataKind::from_label("chorus-lossy"), Some(DataKind::Lossy));
    assert_eq!(DataKind::from_label("chat"), None);
    for k in [DataKind::Reliable, DataKind::Lossy] {
        assert_eq!(DataKind::from_label(k.label()), Some(k));
    }
}
