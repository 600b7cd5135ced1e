//! Prometheus metrics. Labels never name a room or participant (bounded cardinality);
//! updates are atomic adds, cheap enough for the per-packet path.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::error::Error;
use crate::event::{TrackKind, TrackSource};

/// All SFU metrics. Cloning shares the underlying counters.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `chorus_sfu_rooms`.
    pub rooms: IntGauge,
    /// `chorus_sfu_participants`.
    pub participants: IntGauge,
    /// `chorus_sfu_tracks{kind,source}`.
    pub tracks: IntGaugeVec,
    /// `chorus_sfu_rtp_packets_total{direction="in"|"out"}`.
    pub rtp_packets: IntCounterVec,
    /// `chorus_sfu_rtp_bytes_total{direction}` (RTP payload bytes).
    pub rtp_bytes: IntCounterVec,
    /// `chorus_sfu_nacks_total`: NACKs received from subscribers (answered from the
    /// send buffers, not forwarded).
    pub nacks: IntCounter,
    /// `chorus_sfu_keyframe_requests_total{kind="pli"|"fir",outcome="sent"|"deferred"}`.
    pub keyframe_requests: IntCounterVec,
    /// `chorus_sfu_ice_failures_total`: participants removed for ICE timeout.
    pub ice_failures: IntCounter,
    /// `chorus_sfu_rtc_failures_total`: participants removed for a WebRTC engine error
    /// (mostly DTLS).
    pub rtc_failures: IntCounter,
    /// `chorus_sfu_dropped_packets_total{reason}`.
    pub dropped: IntCounterVec,
    /// `chorus_sfu_join_seconds`: from the caller's join start to first media forwarded.
    pub join_time: Histogram,
    /// `chorus_sfu_speaker_changes_total`: active speaker changes announced (`room:speakers`).
    pub speaker_changes: IntCounter,
    /// `chorus_sfu_layer_switches_total`: a subscriber started receiving another layer of
    /// a video track (including the first one and resuming after a pause).
    pub layer_switches: IntCounter,
    /// `chorus_sfu_video_subscriptions{layer="0"|"1"|"2"|"none"}`: open video
    /// subscriptions by the layer forwarded (0 lowest; `none`: paused or waiting for a
    /// keyframe). Refreshed every allocation tick.
    pub subscriptions_by_layer: IntGaugeVec,
    /// `chorus_sfu_video_subscriptions_reduced_frame_rate`: open video subscriptions that
    /// receive only some of their layer's temporal layers (asked for with `frameRate`, or
    /// below the lowest layer for bandwidth). Refreshed every allocation tick.
    pub reduced_frame_rate: IntGauge,
    /// `chorus_sfu_dynacast_total{action="stopped"|"resumed"}`: simulcast layers a
    /// publisher was asked to stop or resume.
    pub dynacast: IntCounterVec,
    /// `chorus_sfu_bandwidth_estimate_bps`: subscribers' downlink estimates, as reported.
    pub bandwidth_estimate: Histogram,
    /// `chorus_sfu_data_messages_total{direction="in"|"out",channel="reliable"|"lossy"}`: data
    /// channel messages received from senders / written to receivers (one per receiver).
    pub data_messages: IntCounterVec,
    /// `chorus_sfu_data_bytes_total{direction,channel}`: their payload bytes (envelope not
    /// counted).
    pub data_bytes: IntCounterVec,
    /// `chorus_sfu_data_refused_total{reason}`: messages (or channels) refused, by
    /// `DataRefusal` reason (`no_grant`, `too_large`, `rate_limited`, `malformed`,
    /// `unknown_channel`).
    pub data_refused: IntCounterVec,
    /// `chorus_sfu_data_dropped_total{reason="receiver_busy"}`: admitted messages not written
    /// to one receiver whose send buffer was full.
    pub data_dropped: IntCounterVec,
    /// `chorus_sfu_ice_restarts_total`: client offers that restarted ICE (new credentials),
    /// answered with new server credentials on the same participant.
    pub ice_restarts: IntCounter,
    /// `chorus_sfu_workers`: media worker threads (each holds its own rooms).
    pub workers: IntGauge,
    /// `chorus_sfu_worker_participants{worker="0"…}`: participants held by each media worker,
    /// to see how rooms spread over the workers. One series per worker.
    pub worker_participants: IntGaugeVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, Error> {
        let m = Self::unregistered()?;
        let collectors: [Box<dyn prometheus::core::Collector>; 24] = [
            Box::new(m.rooms.clone()),
            Box::new(m.participants.clone()),
            Box::new(m.tracks.clone()),
            Box::new(m.rtp_packets.clone()),
            Box::new(m.rtp_bytes.clone()),
            Box::new(m.nacks.clone()),
            Box::new(m.keyframe_requests.clone()),
            Box::new(m.ice_failures.clone()),
            Box::new(m.rtc_failures.clone()),
            Box::new(m.dropped.clone()),
            Box::new(m.join_time.clone()),
            Box::new(m.speaker_changes.clone()),
            Box::new(m.layer_switches.clone()),
            Box::new(m.subscriptions_by_layer.clone()),
            Box::new(m.reduced_frame_rate.clone()),
            Box::new(m.dynacast.clone()),
            Box::new(m.bandwidth_estimate.clone()),
            Box::new(m.data_messages.clone()),
            Box::new(m.data_bytes.clone()),
            Box::new(m.data_refused.clone()),
            Box::new(m.data_dropped.clone()),
            Box::new(m.workers.clone()),
            Box::new(m.worker_participants.clone()),
            Box::new(m.ice_restarts.clone()),
        ];
        for c in collectors {
            registry
                .register(c)
                .map_err(|e| Error::Metrics(e.to_string()))?;
        }
        Ok(m)
    }

    /// Metrics not registered anywhere (unit tests).
    pub fn unregistered() -> Result<Self, Error> {
        let err = |e: prometheus::Error| Error::Metrics(e.to_string());
        Ok(Self {
            rooms: IntGauge::new("chorus_sfu_rooms", "Rooms with participants").map_err(err)?,
            participants: IntGauge::new("chorus_sfu_participants", "Participants (one Rtc each)")
                .map_err(err)?,
            tracks: IntGaugeVec::new(
                Opts::new("chorus_sfu_tracks", "Published tracks"),
                &["kind", "source"],
            )
            .map_err(err)?,
            rtp_packets: IntCounterVec::new(
                Opts::new(
                    "chorus_sfu_rtp_packets_total",
                    "RTP packets received/forwarded",
                ),
                &["direction"],
            )
            .map_err(err)?,
            rtp_bytes: IntCounterVec::new(
                Opts::new(
                    "chorus_sfu_rtp_bytes_total",
                    "RTP payload bytes received/forwarded",
                ),
                &["direction"],
            )
            .map_err(err)?,
            nacks: IntCounter::new("chorus_sfu_nacks_total", "NACKs received from subscribers")
                .map_err(err)?,
            keyframe_requests: IntCounterVec::new(
                Opts::new(
                    "chorus_sfu_keyframe_requests_total",
                    "Keyframe requests (PLI/FIR) from subscribers",
                ),
                &["kind", "outcome"],
            )
            .map_err(err)?,
            ice_failures: IntCounter::new(
                "chorus_sfu_ice_failures_total",
                "Participants removed for ICE timeout",
            )
            .map_err(err)?,
            rtc_failures: IntCounter::new(
                "chorus_sfu_rtc_failures_total",
                "Participants removed for a WebRTC (DTLS/SRTP) error",
            )
            .map_err(err)?,
            dropped: IntCounterVec::new(
                Opts::new("chorus_sfu_dropped_packets_total", "Packets dropped"),
                &["reason"],
            )
            .map_err(err)?,
            join_time: Histogram::with_opts(
                HistogramOpts::new(
                    "chorus_sfu_join_seconds",
                    "Join start to first media forwarded to the participant",
                )
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0]),
            )
            .map_err(err)?,
            speaker_changes: IntCounter::new(
                "chorus_sfu_speaker_changes_total",
                "Active speaker changes announced to rooms (room:speakers)",
            )
            .map_err(err)?,
            layer_switches: IntCounter::new(
                "chorus_sfu_layer_switches_total",
                "Subscribers switched to another layer of a video track",
            )
            .map_err(err)?,
            subscriptions_by_layer: IntGaugeVec::new(
                Opts::new(
                    "chorus_sfu_video_subscriptions",
                    "Open video subscriptions by the layer forwarded",
                ),
                &["layer"],
            )
            .map_err(err)?,
            reduced_frame_rate: IntGauge::new(
                "chorus_sfu_video_subscriptions_reduced_frame_rate",
                "Open video subscriptions receiving fewer than all frames of their layer",
            )
            .map_err(err)?,
            dynacast: IntCounterVec::new(
                Opts::new(
                    "chorus_sfu_dynacast_total",
                    "Simulcast layers publishers were asked to stop or resume",
                ),
                &["action"],
            )
            .map_err(err)?,
            bandwidth_estimate: Histogram::with_opts(
                HistogramOpts::new(
                    "chorus_sfu_bandwidth_estimate_bps",
                    "Subscribers' downlink bandwidth estimates",
                )
                .buckets(vec![
                    100e3, 250e3, 500e3, 1e6, 1.5e6, 2.5e6, 4e6, 8e6, 16e6, 32e6,
                ]),
            )
            .map_err(err)?,
            data_messages: IntCounterVec::new(
                Opts::new(
                    "chorus_sfu_data_messages_total",
                    "Data channel messages received/relayed",
                ),
                &["direction", "channel"],
            )
            .map_err(err)?,
            data_bytes: IntCounterVec::new(
                Opts::new(
                    "chorus_sfu_data_bytes_total",
                    "Data channel payload bytes received/relayed",
                ),
                &["direction", "channel"],
            )
            .map_err(err)?,
            data_refused: IntCounterVec::new(
                Opts::new(
                    "chorus_sfu_data_refused_total",
                    "Data channel messages or channels refused",
                ),
                &["reason"],
            )
            .map_err(err)?,
            data_dropped: IntCounterVec::new(
                Opts::new(
                    "chorus_sfu_data_dropped_total",
                    "Data channel messages not written to a busy receiver",
                ),
                &["reason"],
            )
            .map_err(err)?,
            ice_restarts: IntCounter::new(
                "chorus_sfu_ice_restarts_total",
                "Client offers that restarted ICE (network change)",
            )
            .map_err(err)?,
            workers: IntGauge::new("chorus_sfu_workers", "SFU media worker threads")
                .map_err(err)?,
            worker_participants: IntGaugeVec::new(
                Opts::new(
                    "chorus_sfu_worker_participants",
                    "Participants held by each SFU media worker",
                ),
                &["worker"],
            )
            .map_err(err)?,
        })
    }

    pub(crate) fn track_gauge(&self, kind: TrackKind, source: TrackSource) -> IntGauge {
        self.tracks
            .with_label_values(&[kind.as_str(), source.as_str()])
    }
}
