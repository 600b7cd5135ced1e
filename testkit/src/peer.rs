//! [`Peer`]: a webrtc-rs (0.21) peer connection on 127.0.0.1 for tests and load tools.
//!
//! Lifecycle: [`Peer::new`] gathers host candidates on 127.0.0.1 only. Add what it sends
//! ([`Peer::publish`]) or a receive-only m-line ([`Peer::receive_only`]) before the first offer;
//! negotiate with [`Peer::offer`] + [`Peer::accept_answer`] (the peer offers) or
//! [`Peer::answer`] (the other side offers; the SFU does when tracks come or go); then
//! [`Peer::wait_connected`] until ICE and DTLS are up; [`Peer::restart_ice`] offers new ICE
//! credentials (answer it with [`Peer::accept_answer`]). Candidates are gathered completely before
//! an offer or answer is returned, so no trickle is needed. [`Peer::close`] ends it.
//!
//! What it receives is counted per track ([`Peer::counts`]), and, with [`Capture::Payloads`],
//! kept packet by packet for [`Peer::try_received`].

use crate::Kind;
use crate::media;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability,
};
use rtc::shared::marshal::{Marshal, MarshalSize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
pub use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::data_channel::{DataChannelEvent, RTCDataChannelState};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

/// The RFC 6464 client-to-mixer audio level header extension.
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The RFC 8843 mid and RFC 8852 rid (RtpStreamId) header extensions.
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// How long ICE and DTLS may take on loopback before [`Peer::wait_connected`] gives up.
pub const CONNECT: Duration = Duration::from_secs(10);

/// Whether a [`Peer`] keeps every received packet or only counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// Keep each packet for [`Peer::try_received`] (tests that compare payloads). Drain them:
    /// they queue without bound.
    Payloads,
    /// Only count (long runs: load and soak tools).
    CountsOnly,
}

/// One received RTP packet.
#[derive(Clone, Debug)]
pub struct ReceivedPacket {
    /// The track id from the sender's msid (the SFU's `trackId`).
    pub track_id: String,
    pub kind: Kind,
    pub payload_type: u8,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// What arrived on one remote track so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackCounts {
    pub kind: Kind,
    /// The stream id from the sender's msid (the SFU puts the publisher's user id there).
    pub stream_id: String,
    pub packets: u64,
    /// Audio: every packet. Video: packets with the marker bit, which ends a frame.
    pub frames: u64,
    pub payload_bytes: u64,
}

/// A webrtc-rs peer connection; see the module docs for its lifecycle.
pub struct Peer {
    pc: Box<dyn PeerConnection>,
    gathered: mpsc::Receiver<()>,
    connected: mpsc::Receiver<()>,
    received: mpsc::UnboundedReceiver<ReceivedPacket>,
    counts: Arc<Mutex<BTreeMap<String, TrackCounts>>>,
}

impl Peer {
    /// A peer that keeps every received packet ([`Capture::Payloads`]).
    pub async fn new() -> Peer {
        Self::with_capture(Capture::Payloads).await
    }

    pub async fn with_capture(capture: Capture) -> Peer {
        let mut engine = MediaEngine::default();
        engine
            .register_default_codecs()
            .expect("webrtc-rs registers its default codecs");
        // As browsers do, so audio can carry its level (RFC 6464) for the SFU's speaker
        // detection; only [`LocalTrack::send_with_level`] puts it in packets.
        engine
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                Kind::Audio,
                None,
            )
            .expect("webrtc-rs registers the audio-level extension");
        // As browsers do, so a simulcast track's packets can say which m-line and layer they
        // belong to ([`Peer::publish_simulcast`]).
        for uri in [MID_URI, RID_URI] {
            engine
                .register_header_extension(
                    RTCRtpHeaderExtensionCapability {
                        uri: uri.to_owned(),
                    },
                    Kind::Video,
                    None,
                )
                .expect("webrtc-rs registers the mid and rid extensions");
        }
        let (gathered_tx, gathered) = mpsc::channel(4);
        let (connected_tx, connected) = mpsc::channel(4);
        let (received_tx, received) = mpsc::unbounded_channel();
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let handler = Handler {
            gathered: gathered_tx,
            connected: connected_tx,
            received: (capture == Capture::Payloads).then_some(received_tx),
            counts: counts.clone(),
        };
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(engine)
            .with_handler(Arc::new(handler))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("webrtc-rs builds a peer connection on 127.0.0.1");
        Peer {
            pc: Box::new(pc),
            gathered,
            connected,
            received,
            counts,
        }
    }

    /// Adds a track that sends synthetic media ([`crate::media`]) as `track_id` with `ssrc`:
    /// Opus for audio, VP8 for video. Call before the offer that announces it.
    pub async fn publish(&self, kind: Kind, track_id: &str, ssrc: u32) -> LocalTrack {
        let coding = RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec(kind),
            ..Default::default()
        };
        let track = self.add_track(track_id, kind, vec![coding]).await;
        LocalTrack {
            track,
            kind,
            ssrc,
            next: AtomicU32::new(0),
        }
    }

    /// Adds a VP8 track `track_id` sent as simulcast: one layer per `(rid, ssrc)`, lowest
    /// first, announced with `a=rid` and `a=simulcast` as a browser does. Its packets are
    /// [`media::simulcast_payload`]s. Call before the offer that announces it.
    pub async fn publish_simulcast(
        &self,
        track_id: &str,
        layers: &[(&str, u32)],
    ) -> SimulcastTrack {
        let codings = layers
            .iter()
            .map(|(rid, ssrc)| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: (*rid).to_owned(),
                    ssrc: Some(*ssrc),
                    ..Default::default()
                },
                codec: codec(Kind::Video),
                ..Default::default()
            })
            .collect();
        let track = self.add_track(track_id, Kind::Video, codings).await;
        SimulcastTrack {
            track,
            layers: layers
                .iter()
                .map(|(rid, ssrc)| ((*rid).to_owned(), *ssrc))
                .collect(),
        }
    }

    /// Adds a local track `track_id` sending `codings` (one per layer).
    async fn add_track(
        &self,
        track_id: &str,
        kind: Kind,
        codings: Vec<RTCRtpEncodingParameters>,
    ) -> Arc<TrackLocalStaticRTP> {
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "testkit".to_owned(),
            track_id.to_owned(),
            track_id.to_owned(),
            kind,
            codings,
        )));
        let local: Arc<dyn TrackLocal> = track.clone();
        self.pc
            .add_track(local)
            .await
            .expect("webrtc-rs adds the track");
        track
    }

    /// One `recvonly` m-line of `kind`, so a peer that only receives has something to offer
    /// (the SFU adds the m-lines of others' tracks with its own offers).
    pub async fn receive_only(&self, kind: Kind) {
        self.pc
            .add_transceiver_from_kind(
                kind,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .expect("webrtc-rs adds a transceiver");
    }

    /// Creates an offer, applies it locally, and returns its SDP once every candidate is in it.
    pub async fn offer(&mut self) -> String {
        let offer = self.pc.create_offer(None).await.expect("create offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set local offer");
        // Gathering host candidates on loopback takes milliseconds; the bound only keeps a
        // broken gatherer from hanging the test (the SDP then lacks candidates and ICE fails).
        let _ = tokio::time::timeout(Duration::from_secs(5), self.gathered.recv()).await;
        self.pc.local_description().await.expect("local offer").sdp
    }

    /// Creates an offer that restarts ICE (new local credentials), applies it locally, and
    /// returns its SDP once gathering is complete again.
    pub async fn restart_ice(&mut self) -> String {
        let options = rtc::peer_connection::configuration::RTCOfferOptions { ice_restart: true };
        let offer = self
            .pc
            .create_offer(Some(options))
            .await
            .expect("create an ICE-restart offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set local ICE-restart offer");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.gathered.recv()).await;
        self.pc.local_description().await.expect("local offer").sdp
    }

    /// Applies the other side's answer to [`Peer::offer`].
    pub async fn accept_answer(&self, sdp: String) {
        let answer = RTCSessionDescription::answer(sdp).expect("the answer is SDP");
        self.pc
            .set_remote_description(answer)
            .await
            .expect("webrtc-rs accepts the answer");
    }

    /// Applies the other side's offer and returns the answer's SDP.
    pub async fn answer(&mut self, sdp: String) -> String {
        let offer = RTCSessionDescription::offer(sdp).expect("the offer is SDP");
        self.pc
            .set_remote_description(offer)
            .await
            .expect("webrtc-rs accepts the offer");
        let answer = self.pc.create_answer(None).await.expect("create answer");
        self.pc
            .set_local_description(answer)
            .await
            .expect("set local answer");
        // Candidates were gathered with the first offer; a renegotiation has none to wait for.
        let _ = tokio::time::timeout(Duration::from_millis(500), self.gathered.recv()).await;
        self.pc.local_description().await.expect("local answer").sdp
    }

    /// Waits until ICE and DTLS are up; panics naming `who` after [`CONNECT`].
    pub async fn wait_connected(&mut self, who: &str) {
        tokio::time::timeout(CONNECT, self.connected.recv())
            .await
            .unwrap_or_else(|_| panic!("{who}'s ICE/DTLS is up within {CONNECT:?}"));
    }

    /// The next received packet not yet taken (only with [`Capture::Payloads`]).
    pub fn try_received(&mut self) -> Option<ReceivedPacket> {
        self.received.try_recv().ok()
    }

    /// What arrived so far, by track id.
    pub fn counts(&self) -> BTreeMap<String, TrackCounts> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Opens a data channel (in-band, DCEP) labelled `label`; `init` `None` is reliable and
    /// ordered. Call before the offer that carries it (its `m=application` line). Read it with
    /// [`next_message`].
    pub async fn data_channel(
        &self,
        label: &str,
        init: Option<RTCDataChannelInit>,
    ) -> Arc<dyn DataChannel> {
        self.pc
            .create_data_channel(label, init)
            .await
            .expect("webrtc-rs creates a data channel")
    }

    /// Closes the peer connection (errors on an already closed one are ignored).
    pub async fn close(self) {
        let _ = self.pc.close().await;
    }
}

/// The next message on `channel` as (text?, bytes), skipping other events (open, buffer
/// levels); `None` when the channel closes or nothing arrives within `within`.
pub async fn next_message(
    channel: &Arc<dyn DataChannel>,
    within: Duration,
) -> Option<(bool, Vec<u8>)> {
    let wait = async {
        loop {
            match channel.poll().await? {
                DataChannelEvent::OnMessage(m) => return Some((m.is_string, m.data.to_vec())),
                DataChannelEvent::OnClose => return None,
                _ => {}
            }
        }
    };
    tokio::time::timeout(within, wait).await.ok().flatten()
}

/// Waits until `channel` is open (bounded by [`CONNECT`]).
pub async fn wait_open(channel: &Arc<dyn DataChannel>) {
    let open = async {
        loop {
            if channel.ready_state().await.ok() == Some(RTCDataChannelState::Open) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(CONNECT, open)
        .await
        .expect("the data channel opens within CONNECT");
}

/// A track a [`Peer`] publishes, sending the synthetic packets of [`crate::media`].
pub struct LocalTrack {
    track: Arc<TrackLocalStaticRTP>,
    kind: Kind,
    ssrc: u32,
    next: AtomicU32,
}

impl LocalTrack {
    /// Sends packet `n` ([`media::packet`]).
    pub async fn send(&self, n: u32) {
        self.track
            .write_rtp(media::packet(self.kind, self.ssrc, n))
            .await
            .expect("webrtc-rs writes RTP on a negotiated track");
    }

    /// Sends packet `n` with an RFC 6464 audio level of `dbov` dB below full scale (0 loudest,
    /// 127 silence), as a browser's microphone track does.
    pub async fn send_with_level(&self, n: u32, dbov: u8) {
        let level = HeaderExtension::AudioLevel(AudioLevelExtension {
            level: dbov.min(127),
            voice: dbov < 127,
        });
        self.track
            .write_rtp_with_extensions(media::packet(self.kind, self.ssrc, n), &[level])
            .await
            .expect("webrtc-rs writes RTP on a negotiated track");
    }

    /// Sends the packet after the last one [`LocalTrack::send_next`] sent (0 first) and returns
    /// its number.
    pub async fn send_next(&self) -> u32 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.send(n).await;
        n
    }

    /// How many packets [`LocalTrack::send_next`] has sent.
    pub fn sent(&self) -> u32 {
        self.next.load(Ordering::Relaxed)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// A simulcast video track a [`Peer`] publishes ([`Peer::publish_simulcast`]).
pub struct SimulcastTrack {
    track: Arc<TrackLocalStaticRTP>,
    /// (rid, ssrc), lowest layer first.
    layers: Vec<(String, u32)>,
}

impl SimulcastTrack {
    /// Sends packet `n` of layer `layer` (an index into the layers given, 0 lowest), a
    /// keyframe of `size`, on m-line `mid`: its header carries the mid and the layer's rid,
    /// which is how a receiver tells the layers apart (RFC 8852; webrtc-rs adds neither).
    pub async fn send(&self, mid: &str, layer: usize, n: u32, size: (u16, u16)) {
        let (rid, ssrc) = &self.layers[layer];
        let packet = Packet {
            header: Header {
                version: 2,
                payload_type: media::VP8_PT,
                sequence_number: n as u16,
                timestamp: n.wrapping_mul(3000),
                ssrc: *ssrc,
                marker: true,
                ..Default::default()
            },
            payload: media::simulcast_payload(layer as u8, n, size).into(),
        };
        let sdes = |uri: &'static str, text: &str| HeaderExtension::Custom {
            uri: uri.into(),
            extension: Box::new(SdesText(text.as_bytes().to_vec())),
        };
        self.track
            .write_rtp_with_extensions(packet, &[sdes(MID_URI, mid), sdes(RID_URI, rid)])
            .await
            .expect("webrtc-rs writes RTP on a negotiated simulcast track");
    }
}

/// The value of an SDES header extension (mid, rid): the text itself.
struct SdesText(Vec<u8>);

impl MarshalSize for SdesText {
    fn marshal_size(&self) -> usize {
        self.0.len()
    }
}

impl Marshal for SdesText {
    fn marshal_to(&self, buf: &mut [u8]) -> rtc::shared::error::Result<usize> {
        let out = buf
            .get_mut(..self.0.len())
            .ok_or(rtc::shared::error::Error::ErrBufferTooSmall)?;
        out.copy_from_slice(&self.0);
        Ok(self.0.len())
    }
}

/// The mid of the first m-line of `kind` ("audio", "video") in `sdp`.
pub fn mid_of(sdp: &str, kind: &str) -> Option<String> {
    let section = sdp.split("\nm=").find(|m| m.starts_with(kind))?;
    section
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(|m| m.trim().to_owned())
}

fn codec(kind: Kind) -> RTCRtpCodec {
    match kind {
        Kind::Audio => RTCRtpCodec {
            mime_type: "audio/opus".into(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
            rtcp_feedback: vec![],
        },
        _ => RTCRtpCodec {
            mime_type: "video/VP8".into(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
    }
}

/// webrtc-rs calls this from its driver task; it must not block.
struct Handler {
    gathered: mpsc::Sender<()>,
    connected: mpsc::Sender<()>,
    /// `None` with [`Capture::CountsOnly`].
    received: Option<mpsc::UnboundedSender<ReceivedPacket>>,
    counts: Arc<Mutex<BTreeMap<String, TrackCounts>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.try_send(());
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = self.received.clone();
        let counts = self.counts.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            let track_id = track.track_id().await;
            let stream_id = track.stream_id().await;
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(p) = event else {
                    continue;
                };
                {
                    let mut all = counts.lock().unwrap_or_else(|e| e.into_inner());
                    let c = all.entry(track_id.clone()).or_insert_with(|| TrackCounts {
                        kind,
                        stream_id: stream_id.clone(),
                        packets: 0,
                        frames: 0,
                        payload_bytes: 0,
                    });
                    c.packets += 1;
                    c.frames += u64::from(kind == Kind::Audio || p.header.marker);
                    c.payload_bytes += p.payload.len() as u64;
                }
                if let Some(tx) = &received {
                    let _ = tx.send(ReceivedPacket {
                        track_id: track_id.clone(),
                        kind,
                        payload_type: p.header.payload_type,
                        marker: p.header.marker,
                        payload: p.payload.to_vec(),
                    });
                }
            }
        });
    }
}
