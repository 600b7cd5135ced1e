//! When each forwarded packet was captured, on the server's clock, from its publisher's
//! sender reports: the wallclock str0m's sender reports to subscribers are written from.
//!
//! str0m writes a subscriber's sender report (RFC 3550 § 6.4.1) from the RTP time and the
//! wallclock of the last packet written to that stream, extrapolated to the report's time.
//! A receiver pairs the reports of one sender's audio and video to play them in sync. With
//! each packet's *arrival* as its wallclock, every stream's mapping carried its own network
//! delay, and a video frame's packets, which share one RTP time but are paced out over tens of
//! milliseconds (a keyframe over hundreds), mapped one RTP time to many wallclocks. Audio and
//! video then drifted apart by the difference of their delays, and a report written after the
//! late last packet of a frame could carry an older RTP time than the one before it, which
//! Chromium drops ("Newer RTCP SR report with older RTP timestamp").
//!
//! The publisher's own reports say which instant of its clock each RTP time was captured
//! at, for every stream on one clock. [`CaptureClock`] keeps one offset per publisher from
//! that clock to the server's: the smallest arrival-minus-capture seen, so a capture time
//! never lands after the packet arrived. Every stream of one publisher maps through the same
//! offset, so their relation is the publisher's, and within a stream the wallclock is linear
//! in the RTP time. The offset only falls (when a packet arrives sooner after its capture
//! than any before it) and starts over after a jump (see [`MAX_LAG`]). Until a stream's first
//! report, its packets' arrival is used.
//!
//! Lifecycle: one per participant, fed every packet it publishes, dropped with it.

use std::time::{Duration, Instant, SystemTime};

/// A capture time this far before its packet's arrival means the publisher's clock jumped
/// (or its reports lie): the offset starts over from that packet.
pub const MAX_LAG: Duration = Duration::from_secs(5);

/// A publisher's sender report for one stream: the instant on the publisher's clock and the
/// RTP time captured at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The report's NTP time, on the publisher's clock.
    pub ntp: SystemTime,
    /// The RTP time (low 32 bits) of the same instant.
    pub rtp_time: u32,
}

/// See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureClock {
    /// A capture instant on the publisher's clock and the server instant it maps to.
    base: Option<(SystemTime, Instant)>,
}

impl CaptureClock {
    /// The server instant at which a packet with `rtp_time`, arrived at `arrival`, was
    /// captured: from `report` when its stream has one, else `arrival`. Never after `arrival`.
    pub fn wallclock(
        &mut self,
        arrival: Instant,
        rtp_time: u32,
        clock_rate: u32,
        report: Option<Report>,
    ) -> Instant {
        let Some(report) = report.filter(|_| clock_rate > 0) else {
            return arrival;
        };
        // Reports come every second or so: the difference fits in 32 signed bits.
        let ticks = i64::from(rtp_time.wrapping_sub(report.rtp_time) as i32);
        let since_report =
            Duration::from_nanos(ticks.unsigned_abs() * 1_000_000_000 / u64::from(clock_rate));
        let captured = if ticks >= 0 {
            report.ntp.checked_add(since_report)
        } else {
            report.ntp.checked_sub(since_report)
        };
        let Some(captured) = captured else {
            return arrival;
        };
        if let Some((ntp, at)) = self.base {
            let mapped = match captured.duration_since(ntp) {
                Ok(later) => at.checked_add(later),
                Err(earlier) => at.checked_sub(earlier.duration()),
            };
            if let Some(wallclock) = mapped
                && wallclock <= arrival
                && arrival.duration_since(wallclock) <= MAX_LAG
            {
                return wallclock;
            }
        }
        // The first report, a packet that came sooner after its capture than any before it
        // (the offset falls to it), or a jump.
        self.base = Some((captured, arrival));
        arrival
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: u32 = 90_000;
    const AUDIO: u32 = 48_000;

    #[test]
    fn without_a_report_the_arrival_is_the_wallclock() {
        let mut clock = CaptureClock::default();
        let t0 = Instant::now();
        assert_eq!(clock.wallclock(t0, 1234, VIDEO, None), t0);
    }

    #[test]
    fn streams_of_one_publisher_keep_its_timing_whatever_their_delays() {
        // The publisher captures audio and video at the same instants; video arrives 80 ms
        // after capture (paced), audio 20 ms. Both map to the same server instants, 20 ms
        // after capture (the smallest delay seen).
        let mut clock = CaptureClock::default();
        let t0 = Instant::now();
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let video = Report {
            ntp: epoch,
            rtp_time: 1_000,
        };
        let audio = Report {
            ntp: epoch,
            rtp_time: 50_000,
        };
        let ms = Duration::from_millis;
        for frame in 0..10u32 {
            let captured = t0 + ms(u64::from(frame) * 20);
            let a = clock.wallclock(
                captured + ms(20),
                50_000 + frame * AUDIO / 50,
                AUDIO,
                Some(audio),
            );
            let v = clock.wallclock(
                captured + ms(80),
                1_000 + frame * VIDEO / 50,
                VIDEO,
                Some(video),
            );
            assert_eq!(a, captured + ms(20), "audio frame {frame}");
            assert_eq!(v, captured + ms(20), "video frame {frame}");
        }

        // Packets of one frame, paced out over 200 ms, keep one wallclock.
        let rtp = 1_000 + 10 * VIDEO / 50;
        let captured = t0 + ms(200);
        for spread in [0, 50, 100, 200] {
            let v = clock.wallclock(captured + ms(80 + spread), rtp, VIDEO, Some(video));
            assert_eq!(v, captured + ms(20));
        }
    }

    #[test]
    fn the_offset_falls_to_the_fastest_packet_and_starts_over_after_a_jump() {
        let mut clock = CaptureClock::default();
        let t0 = Instant::now();
        let report = Report {
            ntp: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            rtp_time: 0,
        };
        let ms = Duration::from_millis;
        // 50 ms after capture, then 30: the second sets the offset (never after arrival).
        assert_eq!(
            clock.wallclock(t0 + ms(50), 0, VIDEO, Some(report)),
            t0 + ms(50)
        );
        assert_eq!(
            clock.wallclock(t0 + ms(130), 9_000, VIDEO, Some(report)),
            t0 + ms(130)
        );
        assert_eq!(
            clock.wallclock(t0 + ms(260), 18_000, VIDEO, Some(report)),
            t0 + ms(230)
        );
        // The publisher's clock jumps back 10 s: its packets now seem 10 s late.
        let jumped = Report {
            ntp: report.ntp - Duration::from_secs(10),
            rtp_time: 27_000,
        };
        let at = t0 + ms(330);
        assert_eq!(clock.wallclock(at, 27_000, VIDEO, Some(jumped)), at);
        assert_eq!(
            clock.wallclock(at + ms(110), 36_000, VIDEO, Some(jumped)),
            at + ms(100)
        );
        // RTP time before the report's, and wrapping.
        let wrap = Report {
            ntp: jumped.ntp + ms(200),
            rtp_time: 5,
        };
        let w = clock.wallclock(at + ms(300), u32::MAX - 8_994, VIDEO, Some(wrap));
        assert_eq!(w, at + ms(100));
    }
}
