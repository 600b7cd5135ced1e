//! A webrtc-rs (0.21) peer for the tests: publishes synthetic RTP and records what it
//! receives.

use std::sync::Arc;
use std::time::Duration;

use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

/// What a client received: (kind, payload type, payload).
pub type Received = (RtpCodecKind, u8, Vec<u8>);

struct Handler {
    gathered: mpsc::Sender<()>,
    connected: mpsc::Sender<()>,
    received: mpsc::UnboundedSender<Received>,
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
        let tx = self.received.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            while let Some(ev) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                    let _ = tx.send((kind, p.header.payload_type, p.payload.to_vec()));
                }
            }
        });
    }
}

pub struct Client {
    pub pc: Box<dyn PeerConnection>,
    gathered: mpsc::Receiver<()>,
    pub connected: mpsc::Receiver<()>,
    pub received: mpsc::UnboundedReceiver<Received>,
}

pub fn codec(kind: RtpCodecKind) -> RTCRtpCodec {
    match kind {
        RtpCodecKind::Audio => RTCRtpCodec {
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

impl Client {
    pub async fn new() -> Client {
        let mut me = MediaEngine::default();
        me.register_default_codecs().expect("default codecs");
        let (gtx, grx) = mpsc::channel(4);
        let (ctx, crx) = mpsc::channel(4);
        let (rtx, rrx) = mpsc::unbounded_channel();
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(me)
            .with_handler(Arc::new(Handler {
                gathered: gtx,
                connected: ctx,
                received: rtx,
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("peer connection");
        Client {
            pc: Box::new(pc),
            gathered: grx,
            connected: crx,
            received: rrx,
        }
    }

    /// Adds a sending track with a fixed SSRC.
    pub async fn add_track(
        &self,
        kind: RtpCodecKind,
        id: &str,
        ssrc: u32,
    ) -> Arc<TrackLocalStaticRTP> {
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "stream-a".to_owned(),
            id.to_owned(),
            id.to_owned(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: codec(kind),
                ..Default::default()
            }],
        )));
        let local: Arc<dyn TrackLocal> = track.clone();
        self.pc.add_track(local).await.expect("add track");
        track
    }

    pub async fn add_recvonly(&self, kind: RtpCodecKind) {
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
            .expect("transceiver");
    }

    /// Creates an offer with all candidates gathered.
    pub async fn offer(&mut self) -> String {
        let offer = self.pc.create_offer(None).await.expect("offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set local");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.gathered.recv()).await;
        self.pc
            .local_description()
            .await
            .expect("local description")
            .sdp
    }

    pub async fn accept_answer(&self, sdp: String) {
        let answer = RTCSessionDescription::answer(sdp).expect("answer parses");
        self.pc
            .set_remote_description(answer)
            .await
            .expect("set remote answer");
    }

    /// Applies a server offer and returns the answer.
    pub async fn answer(&mut self, sdp: String) -> String {
        let offer = RTCSessionDescription::offer(sdp).expect("offer parses");
        self.pc
            .set_remote_description(offer)
            .await
            .expect("set remote offer");
        let answer = self.pc.create_answer(None).await.expect("answer");
        self.pc
            .set_local_description(answer)
            .await
            .expect("set local");
        let _ = tokio::time::timeout(Duration::from_millis(500), self.gathered.recv()).await;
        self.pc
            .local_description()
            .await
            .expect("local description")
            .sdp
    }
}
