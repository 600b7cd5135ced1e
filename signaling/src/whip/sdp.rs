//! The little SDP work WHIP needs beside the SFU: reading a trickle-ice-sdpfrag (RFC 8840), the
//! ICE credentials of a description, and rewriting an offer for an ICE restart.
//!
//! The SFU parses and checks the offers themselves; this only looks at `a=ice-ufrag`,
//! `a=ice-pwd`, `a=candidate` and `a=end-of-candidates` lines, so it never has to understand a
//! whole description.

/// ICE credentials of one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// What a client's PATCH body (`application/trickle-ice-sdpfrag`) carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// The client's ICE ufrag, when the fragment names it.
    pub ufrag: Option<String>,
    /// The client's ICE password, when the fragment names it.
    pub pwd: Option<String>,
    /// `candidate:...` lines, without the `a=`.
    pub candidates: Vec<String>,
}

/// The fragment is not one: a line that is not SDP, or credentials given by halves.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a trickle-ice-sdpfrag: {0}")]
pub struct BadFragment(pub &'static str);

impl Fragment {
    /// Reads a fragment. Lines other than the ICE attributes (`m=`, `a=mid`, `a=group`, ...)
    /// are allowed and ignored: the SFU bundles everything on one transport, so a candidate
    /// belongs to the session whatever m-line it is listed under.
    pub fn parse(text: &str) -> Result<Fragment, BadFragment> {
        let mut fragment = Fragment::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(BadFragment("every line must be `<letter>=<value>`"));
            }
            if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
                fragment.ufrag = Some(ufrag.trim().to_owned());
            } else if let Some(pwd) = line.strip_prefix("a=ice-pwd:") {
                fragment.pwd = Some(pwd.trim().to_owned());
            } else if let Some(candidate) = line.strip_prefix("a=")
                && candidate.starts_with("candidate:")
            {
                fragment.candidates.push(candidate.to_owned());
            }
        }
        match (&fragment.ufrag, &fragment.pwd) {
            (Some(u), _) if u.is_empty() => Err(BadFragment("an empty a=ice-ufrag")),
            (_, Some(p)) if p.is_empty() => Err(BadFragment("an empty a=ice-pwd")),
            _ => Ok(fragment),
        }
    }

    /// The new credentials when this fragment restarts ICE (its ufrag differs from
    /// `current`'s); `None` for a trickle.
    pub fn restart(&self, current: &IceCredentials) -> Result<Option<IceCredentials>, BadFragment> {
        match (&self.ufrag, &self.pwd) {
            (Some(ufrag), _) if *ufrag == current.ufrag => Ok(None),
            (None, _) => Ok(None),
            (Some(ufrag), Some(pwd)) => Ok(Some(IceCredentials {
                ufrag: ufrag.clone(),
                pwd: pwd.clone(),
            })),
            (Some(_), None) => Err(BadFragment(
                "an ICE restart needs a=ice-pwd with a=ice-ufrag",
            )),
        }
    }
}

/// The first ICE credentials of a description (WHIP bundles every m-line on one transport, so
/// they are the same on each).
pub fn credentials(sdp: &str) -> Option<IceCredentials> {
    let value = |prefix: &str| {
        sdp.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
    };
    Some(IceCredentials {
        ufrag: value("a=ice-ufrag:")?,
        pwd: value("a=ice-pwd:")?,
    })
}

/// `offer` with its ICE credentials replaced by `fresh` and its candidates dropped (the client
/// trickles those of the restarted agent), and its session version raised as RFC 3264 wants
/// for a changed description.
pub fn restarted_offer(offer: &str, fresh: &IceCredentials) -> String {
    let mut out = String::with_capacity(offer.len());
    for line in offer.lines() {
        // Matched as `credentials` reads them (surrounding blanks ignored), so every credential
        // line it could find is replaced.
        let line = line.trim();
        if line.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{}\r\n", fresh.ufrag));
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{}\r\n", fresh.pwd));
        } else if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        } else if let Some(origin) = line.strip_prefix("o=") {
            out.push_str(&format!("o={}\r\n", next_version(origin)));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

/// The fragment answering an ICE restart: the server's new credentials and its candidates,
/// under the first m-line of `answer` (RFC 8840 §9.2 lists candidates per media section).
pub fn answer_fragment(answer: &str) -> Option<String> {
    let creds = credentials(answer)?;
    let mut out = format!("a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", creds.ufrag, creds.pwd);
    let mut lines = answer.lines().map(|l| l.trim_end_matches('\r'));
    if let Some(media) = lines.find(|l| l.starts_with("m=")) {
        out.push_str(media);
        out.push_str("\r\n");
        for line in lines.take_while(|l| !l.starts_with("m=")) {
            if line.starts_with("a=mid:") || line.starts_with("a=candidate:") {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("a=end-of-candidates\r\n");
    }
    Some(out)
}

/// `o=` value with its session version (the third field) raised by one; unchanged when it is
/// not a number.
fn next_version(origin: &str) -> String {
    let mut fields: Vec<String> = origin.split(' ').map(str::to_owned).collect();
    if let Some(version) = fields.get_mut(2)
        && let Ok(n) = version.parse::<u64>()
    {
        *version = n.wrapping_add(1).to_string();
    }
    fields.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 42 7 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
        a=ice-ufrag:old\r\na=ice-pwd:oldpassword\r\n\
        a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:old\r\na=ice-pwd:oldpassword\r\n";

    #[test]
    fn a_trickle_fragment_lists_its_candidates() {
        let text = "a=ice-ufrag:old\r\na=ice-pwd:oldpassword\r\nm=audio 9 RTP/AVP 0\r\n\
            a=mid:0\r\na=candidate:1 1 udp 1 10.0.0.1 9 typ host\r\na=end-of-candidates\r\n";
        let f = Fragment::parse(text).unwrap();
        assert_eq!(f.candidates, ["candidate:1 1 udp 1 10.0.0.1 9 typ host"]);
        let current = credentials(OFFER).unwrap();
        assert_eq!(f.restart(&current), Ok(None));
        // Without credentials it is a trickle too.
        let bare = Fragment::parse("a=candidate:2 1 udp 1 10.0.0.2 9 typ host").unwrap();
        assert_eq!(bare.restart(&current), Ok(None));
    }

    #[test]
    fn new_credentials_are_a_restart_and_half_of_them_is_refused() {
        let current = credentials(OFFER).unwrap();
        let f = Fragment::parse("a=ice-ufrag:new\na=ice-pwd:newpassword\n").unwrap();
        assert_eq!(
            f.restart(&current).unwrap(),
            Some(IceCredentials {
                ufrag: "new".into(),
                pwd: "newpassword".into()
            })
        );
        let half = Fragment::parse("a=ice-ufrag:new\n").unwrap();
        assert!(half.restart(&current).is_err());
    }

    #[test]
    fn garbage_is_not_a_fragment() {
        for text in ["hello", "a candidate", "=x", "a=ice-ufrag:\n", "A=x"] {
            assert!(Fragment::parse(text).is_err(), "{text:?}");
        }
        assert_eq!(Fragment::parse(""), Ok(Fragment::default()));
    }

    #[test]
    fn credential_lines_with_blanks_around_them_are_rewritten_too() {
        let offer = "v=0\r\n  a=ice-ufrag:old1 \r\n\ta=ice-pwd:old-password-0123456789\r\n";
        assert!(credentials(offer).is_some());
        let fresh = IceCredentials {
            ufrag: "new1".into(),
            pwd: "new-password-0123456789ab".into(),
        };
        let rewritten = restarted_offer(offer, &fresh);
        assert_eq!(credentials(&rewritten), Some(fresh));
        assert!(!rewritten.contains("old"), "{rewritten:?}");
    }

    #[test]
    fn a_restarted_offer_has_the_new_credentials_and_no_old_candidates() {
        let fresh = IceCredentials {
            ufrag: "new".into(),
            pwd: "newpassword".into(),
        };
        let offer = restarted_offer(OFFER, &fresh);
        assert_eq!(credentials(&offer), Some(fresh));
        assert!(!offer.contains("old"), "{offer}");
        assert!(!offer.contains("candidate"), "{offer}");
        assert!(offer.contains("o=- 42 8 IN IP4"), "{offer}");
        assert_eq!(offer.matches("a=ice-ufrag:new").count(), 2);
        assert!(offer.contains("a=mid:1\r\n"));
    }

    #[test]
    fn the_answer_fragment_carries_credentials_and_candidates() {
        let answer = "v=0\r\na=ice-lite\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=ice-ufrag:srv\r\na=ice-pwd:serverpassword\r\na=mid:0\r\n\
            a=candidate:1 1 udp 1 127.0.0.1 7882 typ host\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=candidate:1 1 udp 1 127.0.0.1 7882 typ host\r\n";
        let f = answer_fragment(answer).unwrap();
        assert_eq!(
            f,
            "a=ice-ufrag:srv\r\na=ice-pwd:serverpassword\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
             a=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 7882 typ host\r\na=end-of-candidates\r\n"
        );
        assert_eq!(answer_fragment("v=0\r\n"), None);
    }
}
