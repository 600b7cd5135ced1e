//! A WHIP or WHEP PATCH body (`application/trickle-ice-sdpfrag`, RFC 8840) as the session reads
//! it (`signaling::whip::sdp`): the fragment parser, the restart decision against current
//! credentials, the ICE-restart rewrite of a stored offer, and the answer fragment. Checked:
//! nothing panics; a rewritten offer carries exactly the fresh credentials and no candidate;
//! a fragment that restarts names the ufrag it parsed. Run:
//! `cd fuzz && cargo +nightly fuzz run whip_fragment`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::whip::sdp::{
    Fragment, IceCredentials, answer_fragment, credentials, restarted_offer,
};

fuzz_target!(|text: &str| {
    let current = IceCredentials {
        ufrag: "cur1".into(),
        pwd: "current-password-0123456789".into(),
    };
    if let Ok(fragment) = Fragment::parse(text)
        && let Ok(Some(fresh)) = fragment.restart(&current)
    {
        assert_eq!(fragment.ufrag.as_deref(), Some(fresh.ufrag.as_str()));
        assert_ne!(fresh.ufrag, current.ufrag);
    }
    // The input as a stored offer, restarted with credentials that contain no line break (as
    // the parser hands them over: one line's value).
    let fresh = IceCredentials {
        ufrag: "new1".into(),
        pwd: "fresh-password-0123456789ab".into(),
    };
    let rewritten = restarted_offer(text, &fresh);
    if credentials(text).is_some() {
        assert_eq!(credentials(&rewritten), Some(fresh.clone()));
    }
    assert!(
        !rewritten.lines().any(|l| l.starts_with("a=candidate:")),
        "an ICE restart drops the old candidates"
    );
    let _ = answer_fragment(text);
});
