//! A cheap scan of a client offer before it reaches str0m: limits, codec usability, and
//! the per-mid hints (msid) used to infer a track's source. str0m does the real parsing;
//! this only reads `m=`, `a=mid`, `a=msid` and `a=rtpmap` lines and never panics.

use crate::error::{Error, SdpFault};

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
            lines.push(MLine {
                kind,
                stopped,
                sends: true,
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
        } else if let Some(rtpmap) = line.strip_prefix("a=rtpmap:") {
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
    fn garbage_never_panics() {
        assert!(check_offer("", 10).is_err());
        let _ = check_offer("m=\na=rtpmap:\na=mid:\n", 10);
        let _ = check_offer("m=audio\na=rtpmap:1\n", 10);
    }
}
