//! What clients count, and the run's summary.
//!
//! Each received RTP stream (one SSRC) has a [`StreamStats`]: packets, bytes, and loss from
//! sequence-number gaps. Loss is `expected - received`, where expected spans the lowest to the
//! highest extended sequence number seen and received counts distinct numbers (a window of the
//! last [`WINDOW`] numbers drops duplicates, such as a retransmission of a packet that had
//! arrived after all). Video streams also count keyframes and *layer switches*: a keyframe
//! whose dimensions differ from the previous one's means the SFU switched simulcast layers.
//!
//! [`Live`] holds run-wide atomics that the measurement window samples; [`ClientReport`] is
//! what each client hands back when it stops; [`Summary`] adds them up.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const WINDOW: u64 = 1024;

/// One received stream's counters; see the module docs.
#[derive(Debug)]
pub struct StreamStats {
    pub video: bool,
    pub packets: u64,
    pub bytes: u64,
    first: u64,
    highest: u64,
    distinct: u64,
    seen: [u64; (WINDOW / 64) as usize],
    pub keyframes: u64,
    last_size: Option<(u16, u16)>,
    pub layer_switches: u64,
}

impl StreamStats {
    pub fn new(video: bool, seq: u64) -> StreamStats {
        StreamStats {
            video,
            packets: 0,
            bytes: 0,
            first: seq,
            highest: seq,
            distinct: 0,
            seen: [0; (WINDOW / 64) as usize],
            keyframes: 0,
            last_size: None,
            layer_switches: 0,
        }
    }

    /// Counts a packet; returns whether it was new (not a duplicate within the window).
    pub fn packet(&mut self, seq: u64, payload_len: usize) -> bool {
        self.packets += 1;
        self.bytes += payload_len as u64;
        if seq > self.highest {
            // Clear the bits of the numbers skipped over and of the new one.
            let clear = (seq - self.highest).min(WINDOW);
            for s in seq + 1 - clear..=seq {
                self.seen[((s % WINDOW) / 64) as usize] &= !(1 << (s % 64));
            }
            self.highest = seq;
        } else if self.highest - seq >= WINDOW {
            return false; // too old to tell: count it as a duplicate, not as a new packet
        }
        if seq < self.first {
            self.first = seq;
        }
        let (word, bit) = (((seq % WINDOW) / 64) as usize, seq % 64);
        if self.seen[word] & (1 << bit) != 0 {
            return false;
        }
        self.seen[word] |= 1 << bit;
        self.distinct += 1;
        true
    }

    /// A keyframe of `size` (width, height) arrived.
    pub fn keyframe(&mut self, size: (u16, u16)) {
        self.keyframes += 1;
        if self.last_size.is_some_and(|s| s != size) {
            self.layer_switches += 1;
        }
        self.last_size = Some(size);
    }

    pub fn lost(&self) -> u64 {
        (self.highest - self.first + 1).saturating_sub(self.distinct)
    }
}

/// Run-wide counters the measurement window samples at its start and end.
#[derive(Debug, Default)]
pub struct Live {
    /// RTP packets received by all clients (what the server forwarded to them).
    pub received: AtomicU64,
    pub received_bytes: AtomicU64,
    /// RTP packets all publishers sent.
    pub sent: AtomicU64,
    /// Peers whose ICE and DTLS are up.
    pub connected: AtomicU64,
    /// Clients that failed (signaling refused, ICE/DTLS timeout, ...).
    pub failed: AtomicU64,
}

impl Live {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.received_bytes.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        )
    }
}

/// What one client saw, handed back when it stops.
#[derive(Debug, Default)]
pub struct ClientReport {
    pub publisher: bool,
    pub failed: Option<String>,
    /// From the client's start to its first received RTP packet.
    pub join: Option<Duration>,
    pub packets: u64,
    pub bytes: u64,
    pub lost: u64,
    pub video_streams: u64,
    pub audio_streams: u64,
    pub keyframes: u64,
    pub layer_switches: u64,
    pub keyframe_requests: u64,
}

impl ClientReport {
    pub fn add_stream(&mut self, s: &StreamStats) {
        self.packets += s.packets;
        self.bytes += s.bytes;
        self.lost += s.lost();
        self.keyframes += s.keyframes;
        self.layer_switches += s.layer_switches;
        if s.video {
            self.video_streams += 1;
        } else {
            self.audio_streams += 1;
        }
    }
}

/// The server process, sampled over the window when `--server-pid` is given.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerUsage {
    pub pid: u32,
    pub cpu_seconds: f64,
    pub rss_before_kb: u64,
    pub rss_loaded_kb: u64,
}

/// The whole run; printed as a table, or as JSON with `--json`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub target: String,
    pub publishers: u64,
    pub subscribers: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
    pub window_seconds: f64,
    /// Received by all clients within the window: the server's forwarded packets.
    pub window_packets: u64,
    pub window_packets_per_second: f64,
    pub window_bitrate_bps: f64,
    pub window_sent_packets: u64,
    /// Over the whole run.
    pub packets: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub video_streams: u64,
    pub audio_streams: u64,
    pub keyframes: u64,
    pub layer_switches: u64,
    pub keyframe_requests: u64,
    pub join_ms_p50: Option<f64>,
    pub join_ms_p95: Option<f64>,
    pub join_ms_max: Option<f64>,
    pub server: Option<ServerUsage>,
    /// Server CPU-µs per forwarded packet in the window.
    pub server_cpu_us_per_packet: Option<f64>,
    /// (rss loaded - rss before) / clients.
    pub server_rss_kb_per_client: Option<f64>,
}

impl Summary {
    pub fn add_reports(&mut self, reports: &[ClientReport]) {
        let mut joins = Vec::new();
        for r in reports {
            if r.publisher {
                self.publishers += 1;
            } else {
                self.subscribers += 1;
            }
            if let Some(f) = &r.failed {
                self.failed += 1;
                self.first_failure.get_or_insert_with(|| f.clone());
            }
            joins.extend(r.join.map(|d| d.as_secs_f64() * 1000.0));
            self.packets += r.packets;
            self.lost += r.lost;
            self.video_streams += r.video_streams;
            self.audio_streams += r.audio_streams;
            self.keyframes += r.keyframes;
            self.layer_switches += r.layer_switches;
            self.keyframe_requests += r.keyframe_requests;
        }
        let expected = self.packets + self.lost;
        self.loss_ratio = if expected == 0 {
            0.0
        } else {
            self.lost as f64 / expected as f64
        };
        joins.sort_by(f64::total_cmp);
        let at = |q: f64| {
            joins
                .get(((joins.len() as f64 - 1.0) * q).round() as usize)
                .copied()
        };
        self.join_ms_p50 = at(0.5);
        self.join_ms_p95 = at(0.95);
        self.join_ms_max = joins.last().copied();
    }

    pub fn table(&self) -> String {
        let opt = |v: Option<f64>, digits: usize| {
            v.map(|v| format!("{v:.digits$}"))
                .unwrap_or_else(|| "-".into())
        };
        let mut rows = vec![
            ("target", self.target.clone()),
            (
                "clients",
                format!(
                    "{} publishers, {} subscribers, {} failed",
                    self.publishers, self.subscribers, self.failed
                ),
            ),
            (
                "streams received",
                format!("{} video, {} audio", self.video_streams, self.audio_streams),
            ),
            (
                "window",
                format!(
                    "{:.1} s: {} packets forwarded ({:.0}/s, {:.2} Mbit/s), {} sent",
                    self.window_seconds,
                    self.window_packets,
                    self.window_packets_per_second,
                    self.window_bitrate_bps / 1e6,
                    self.window_sent_packets
                ),
            ),
            (
                "whole run",
                format!(
                    "{} packets received, {} lost ({:.4} %)",
                    self.packets,
                    self.lost,
                    self.loss_ratio * 100.0
                ),
            ),
            (
                "video",
                format!(
                    "{} keyframes received, {} layer switches, {} keyframe requests to publishers",
                    self.keyframes, self.layer_switches, self.keyframe_requests
                ),
            ),
            (
                "join ms (p50/p95/max)",
                format!(
                    "{} / {} / {}",
                    opt(self.join_ms_p50, 0),
                    opt(self.join_ms_p95, 0),
                    opt(self.join_ms_max, 0)
                ),
            ),
        ];
        if let Some(s) = &self.server {
            rows.push((
                "server",
                format!(
                    "pid {}: {:.2} CPU-s in window, {} CPU-µs/packet; RSS {} kB idle → {} kB loaded ({} kB/client)",
                    s.pid,
                    s.cpu_seconds,
                    opt(self.server_cpu_us_per_packet, 2),
                    s.rss_before_kb,
                    s.rss_loaded_kb,
                    opt(self.server_rss_kb_per_client, 1)
                ),
            ));
        }
        if let Some(f) = &self.first_failure {
            rows.push(("first failure", f.clone()));
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_loss_and_duplicates_are_not_packets() {
        let mut s = StreamStats::new(false, 100);
        for seq in [100, 101, 103, 104, 104, 102, 106] {
            s.packet(seq, 10);
        }
        // 100..=106 expected (7), distinct 100-104 and 106 (6): 105 lost.
        assert_eq!(s.lost(), 1);
        assert_eq!(s.packets, 7);
    }

    #[test]
    fn a_jump_beyond_the_window_counts_the_gap() {
        let mut s = StreamStats::new(true, 10);
        s.packet(10, 1);
        s.packet(10 + 3 * WINDOW, 1);
        s.packet(11 + 3 * WINDOW, 1);
        assert_eq!(s.lost(), 3 * WINDOW - 1);
        // A number inside the window that was cleared by the jump is new.
        assert!(s.packet(3 * WINDOW, 1));
    }

    #[test]
    fn layer_switches_are_keyframe_size_changes() {
        let mut s = StreamStats::new(true, 0);
        s.keyframe((1280, 720));
        s.keyframe((1280, 720));
        s.keyframe((640, 360));
        assert_eq!((s.keyframes, s.layer_switches), (3, 1));
    }
}
