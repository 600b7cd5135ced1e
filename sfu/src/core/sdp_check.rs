//! A cheap scan of a client offer before it reaches str0m: limits, codec usability, payload
//! type consistency, and the per-mid hints (msid) used to infer a track's source. str0m does
//! the real parsing; this only reads `m=`, `a=mid`, `a=msid`, `a=rtpmap`, `a=fmtp` and
//! `a=rtcp-fb` lines and never panics.
//!
//! Payload types: str0m 0.25 panics ("Pt locked multiple times") on an offer that describes a
//! payload type under an m-line that does not list it, or uses one number for both audio and
//! video (found by `fuzz/fuzz_targets/sdp_offer.rs`). Browsers do neither, so such offers are
//! refused here, before str0m sees them.

use crate::error::{Error, SdpFault};
use std::collections::HashMap;

/// Codecs the SFU forwards (case-insensitive rtpmap encoding names).
const USABLE: [&str; 5] = ["opus", "vp8", "vp9", "h264", "av1"];

/// What the scan learnt about one m-line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MLine {
    /// `audio`, `video`, `application`…
    pub kind: String,
    /// `a=mid`.
    pub mid: Option<String>,
    /// `a=msid` stream and track ids, joined with a space.
    pub msid: Option<String>,
    /// Port 0: the m-line is rejected/stopped.
    pub stopped: bool,
    /// At least one forwardable codec.
    pub usable: bool,
    /// The direction attribute says the client sends (`sendrecv`, the default, or
    /// `sendonly`).
    pub sends: bool,
    /// The payload types the `m=` line lists.
    formats: Vec<String>,
}

impl MLine {
    /// An audio/video m-line on which the client sends media (a track to publish).
    pub fn is_publishing(&self) -> bool {
        (self.kind == "audio" || self.kind == "video") && !self.stopped && self.sends
    }
}

/// Scans `sdp`, enforcing the m-line limit and codec usability.
pub fn check_offer(sdp: &str, max_mlines: usize) -> Result<Vec<MLine>, Error> {
    let mut lines: Vec<MLine> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
            let stopped = parts.next() == Some("0");
            let _proto = parts.next();
            lines.push(MLine {
                kind,
                stopped,
                sends: true,
                formats: parts.map(str::to_owned).collect(),
                ..MLine::default()
            });
            if lines.len() > max_mlines {
                let count = sdp.lines().filter(|l| l.starts_with("m=")).count();
                return Err(Error::TooManyMLines {
                    count,
                    limit: max_mlines,
                });
            }
            continue;
        }
        let Some(cur) = lines.last_mut() else {
            continue;
        };
        if line == "a=recvonly" || line == "a=inactive" {
            cur.sends = false;
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            cur.mid = Some(mid.trim().to_string());
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            cur.msid = Some(msid.trim().to_string());
        }
        if let Some(pt) = described_payload_type(line)
            && pt != "*"
            && !cur.formats.iter().any(|f| f == pt)
        {
            return Err(Error::BadSdp(SdpFault::explained(
                "a payload type is described under an m-line that does not list it",
                format!("{line:.100}"),
            )));
        }
        if let Some(rtpmap) = line.strip_prefix("a=rtpmap:") {
            let name = rtpmap
                .split_whitespace()
                .nth(1)
                .and_then(|enc| enc.split('/').next())
                .unwrap_or_default();
            if USABLE.iter().any(|u| u.eq_ignore_ascii_case(name)) {
                cur.usable = true;
            }
        }
    }
    if lines.is_empty() {
        return Err(Error::BadSdp(SdpFault::plain("offer has no m-lines")));
    }
    let mut kinds: HashMap<&str, &str> = HashMap::new();
    for l in lines
        .iter()
        .filter(|l| l.kind == "audio" || l.kind == "video")
    {
        for pt in &l.formats {
            if let Some(other) = kinds.insert(pt, &l.kind)
                && other != l.kind
            {
                return Err(Error::BadSdp(SdpFault::explained(
                    "a payload type is used by both an audio and a video m-line",
                    format!("payload type {pt:.16}"),
                )));
            }
        }
    }
    for (i, l) in lines.iter().enumerate() {
        let media = l.kind == "audio" || l.kind == "video";
        if media && !l.stopped && !l.usable {
            return Err(Error::NoUsableCodec {
                mline: i,
                kind: l.kind.clone(),
            });
        }
    }
    Ok(lines)
}

/// The payload type an `a=rtpmap`, `a=fmtp` or `a=rtcp-fb` line describes.
fn described_payload_type(line: &str) -> Option<&str> {
    ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
        .iter()
        .find_map(|prefix| line.strip_prefix(prefix))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=msid:s1 mic\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=msid:s1 screen-abc\r\na=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn reads_mids_and_msids() {
        let lines = check_offer(OFFER, 10).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].mid.as_deref(), Some("1"));
        assert_eq!(lines[1].msid.as_deref(), Some("s1 screen-abc"));
        assert!(lines.iter().all(|l| l.usable));
    }

    #[test]
    fn too_many_mlines() {
        assert_eq!(
            check_offer(OFFER, 1),
            Err(Error::TooManyMLines { count: 2, limit: 1 })
        );
    }

    #[test]
    fn no_usable_codec() {
        let sdp = OFFER.replace("opus/48000/2", "PCMU/8000");
        assert_eq!(
            check_offer(&sdp, 10),
            Err(Error::NoUsableCodec {
                mline: 0,
                kind: "audio".into()
            })
        );
        // A stopped m-line without codecs is fine.
        let sdp = sdp.replace("m=audio 9", "m=audio 0");
        assert!(check_offer(&sdp, 10).is_ok());
    }

    #[test]
    fn payload_types_must_be_listed_and_not_shared_by_audio_and_video() {
        // Described under an m-line that does not list it.
        let sdp = OFFER.replace(
            "a=rtpmap:111 opus/48000/2\r\n",
            "a=rtpmap:111 opus/48000/2\r\na=rtpmap:96 VP8/90000\r\n",
        );
        assert!(matches!(check_offer(&sdp, 10), Err(Error::BadSdp(_))));
        let sdp = OFFER.replace(
            "a=rtpmap:111 opus/48000/2\r\n",
            "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:108 nack\r\n",
        );
        assert!(matches!(check_offer(&sdp, 10), Err(Error::BadSdp(_))));
        // One number for audio and video.
        let sdp = OFFER
            .replace("SAVPF 96", "SAVPF 111")
            .replace("a=rtpmap:96", "a=rtpmap:111");
        assert!(matches!(check_offer(&sdp, 10), Err(Error::BadSdp(_))));
        // Wildcard feedback, and the same payload type in two video m-lines, are fine.
        let sdp = OFFER.replace(
            "a=rtpmap:96 VP8/90000\r\n",
            "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:* transport-cc\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rtpmap:96 VP8/90000\r\n",
        );
        assert_eq!(check_offer(&sdp, 10).map(|l| l.len()), Ok(3));
    }

    #[test]
    fn garbage_never_panics() {
        assert!(check_offer("", 10).is_err());
        let _ = check_offer("m=\na=rtpmap:\na=mid:\n", 10);
        let _ = check_offer("m=audio\na=rtpmap:1\n", 10);
    }
}
