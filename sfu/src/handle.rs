//! [`Sfu::start`] and the [`SfuHandle`] the signaling layer holds.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::Registry;
use str0m::Candidate;
use str0m::net::TcpType;
use tokio::sync::{mpsc, oneshot};

use crate::core::allocator::Wanted;
use crate::core::shard::{Shard, placement};
use crate::core::{Core, CoreConfig, OfferReply, TrackInfo, Viewed};
use crate::driver::tcp::WorkerLink;
use crate::driver::{Command, Driver, TcpFront};
use crate::error::Error;
use crate::event::{Muted, SfuEvent, Stats, TrackSource};
use crate::ids::{ParticipantKey, RoomKey, TrackId};
use crate::metrics::Metrics;
use crate::settings::{CandidateTransports, Grants, Settings, detect_public_ips};

/// Kernel buffer asked for each way on every worker's UDP socket. One socket carries all of a
/// worker's peers, and the default (208 KiB, a few hundred datagrams) overflowed within tens of
/// milliseconds of a loaded worker in the 300-subscriber benchmark; every publisher packet
/// dropped there is lost to every subscriber.
const SOCKET_BUFFER: usize = 4 << 20;

/// Entry point. See the crate docs.
pub struct Sfu;

impl Sfu {
    /// Binds the sockets, registers the metrics and starts the media workers (see
    /// [`Settings::workers`]). Errors if a socket cannot be bound or the metrics are already
    /// registered. Works inside or outside a Tokio runtime (each worker has its own).
    pub fn start(settings: Settings, registry: &Registry) -> Result<SfuHandle, Error> {
        let metrics = Metrics::register(registry)?;
        let io = |e: std::io::Error| Error::Io(e.to_string());
        let count = settings.worker_count();

        let mut udps = Vec::with_capacity(count);
        for i in 0..count {
            let addr = settings.worker_udp_listen(i).ok_or_else(|| {
                Error::Settings(format!(
                    "{count} workers need UDP ports {} to {}, past 65535",
                    settings.udp_listen.port(),
                    usize::from(settings.udp_listen.port()) + count - 1
                ))
            })?;
            let udp = std::net::UdpSocket::bind(addr).map_err(io)?;
            udp.set_nonblocking(true).map_err(io)?;
            datagram::request_buffers_or_warn(&udp, SOCKET_BUFFER, "SFU", addr);
            udps.push(udp);
        }
        let udp_addrs = udps
            .iter()
            .map(|u| u.local_addr().map_err(io))
            .collect::<Result<Vec<_>, _>>()?;
        let tcp = match settings.tcp_listen {
            Some(addr) if settings.candidates != CandidateTransports::UdpOnly => {
                let l = std::net::TcpListener::bind(addr).map_err(io)?;
                l.set_nonblocking(true).map_err(io)?;
                Some(l)
            }
            _ => None,
        };
        let tcp_addr = match &tcp {
            Some(l) => Some(l.local_addr().map_err(io)?),
            None => None,
        };
        if settings.candidates == CandidateTransports::TcpOnly && tcp.is_none() {
            return Err(Error::Settings("TcpOnly candidates need tcp_listen".into()));
        }
        let public_ips = if settings.public_ips.is_empty() {
            detect_public_ips()
        } else {
            settings.public_ips.clone()
        };

        // Unbounded so that a command is queued the moment a handle method is called (see
        // `SfuHandle`): signaling's per-connection event rate limits bound how many can wait.
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let mut links = Vec::with_capacity(count);
        let mut drivers = Vec::with_capacity(count);
        for ((shard, udp), udp_addr) in Shard::split(count).into_iter().zip(udps).zip(&udp_addrs) {
            let core = Core::with_shard(
                CoreConfig {
                    candidates: candidates(&public_ips, &settings, *udp_addr, tcp_addr)?,
                    ice_timeout: settings.ice_timeout,
                    keyframe_request_interval: settings.keyframe_request_interval,
                    auto_subscribe: settings.auto_subscribe,
                    limits: settings.limits.clone(),
                    congestion_control: settings.congestion_control,
                    nack_history: settings.nack_history,
                    data: settings.data,
                },
                metrics.clone(),
                shard,
            );
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (tcp_tx, tcp_rx) = mpsc::channel(1024);
            links.push(WorkerLink {
                commands: cmd_tx,
                tcp: tcp_tx,
            });
            let udp_local = crate::driver::advertised(&public_ips, *udp_addr);
            drivers.push((core, udp, udp_local, tcp_rx, cmd_rx));
        }
        let links: Arc<[WorkerLink]> = links.into();
        let mut front = tcp.map(|listener| (listener, links.clone(), public_ips.clone()));

        for (index, (core, udp, udp_local, tcp_rx, cmd_rx)) in drivers.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io)?;
            let events = ev_tx.clone();
            let front = front.take();
            std::thread::Builder::new()
                .name(format!("chorus-sfu-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        if let Some((listener, workers, public_ips)) = front {
                            let listener = tokio::net::TcpListener::from_std(listener)
                                .expect("inside the runtime");
                            tokio::spawn(
                                TcpFront {
                                    listener,
                                    workers,
                                    public_ips,
                                }
                                .run(),
                            );
                        }
                        let udp = tokio::net::UdpSocket::from_std(udp).expect("inside the runtime");
                        Driver {
                            core,
                            udp,
                            udp_local,
                            tcp: tcp_rx,
                            commands: cmd_rx,
                            events,
                        }
                        .run()
                        .await;
                    });
                })
                .map_err(io)?;
        }
        metrics.workers.set(count as i64);

        Ok(SfuHandle {
            workers: links.iter().map(|l| l.commands.clone()).collect(),
            events: Arc::new(Mutex::new(Some(ev_rx))),
            udp_addrs,
            tcp_addr,
        })
    }
}

fn candidates(
    ips: &[IpAddr],
    settings: &Settings,
    udp: SocketAddr,
    tcp: Option<SocketAddr>,
) -> Result<Vec<Candidate>, Error> {
    let bad = |e: str0m::error::IceError| Error::Settings(e.to_string());
    let mut out = Vec::new();
    for ip in ips {
        if settings.candidates != CandidateTransports::TcpOnly {
            out.push(Candidate::host(SocketAddr::new(*ip, udp.port()), "udp").map_err(bad)?);
        }
        if let Some(tcp) = tcp {
            let c = Candidate::builder()
                .tcp()
                .host(SocketAddr::new(*ip, tcp.port()))
                .tcptype(TcpType::Passive)
                .build()
                .map_err(bad)?;
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err(Error::Settings("no candidate to advertise".into()));
    }
    Ok(out)
}

/// Cheap to clone, `Send + Sync`; every method is one round trip to the SFU worker.
/// When the last handle is dropped (or [`SfuHandle::shutdown`] is called) the worker
/// stops and the sockets close.
///
/// Ordering: each method queues its command when it is *called*, not when the returned future is
/// first polled, so commands reach the worker in the order of the calls. The signaling layer
/// relies on this to issue one participant's join, offers and leave in the order its own state
/// changed, from one task, without waiting for each answer.
///
/// Each room lives on one media worker ([`crate::core::shard::placement`]); a method about a
/// room goes to that worker, and [`SfuHandle::snapshot`] sums over all of them.
#[derive(Clone)]
pub struct SfuHandle {
    /// One command queue per media worker, by index.
    workers: Arc<[mpsc::UnboundedSender<Command>]>,
    events: Arc<Mutex<Option<mpsc::UnboundedReceiver<SfuEvent>>>>,
    udp_addrs: Vec<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
}

/// The answer to a queued command; see [`SfuHandle`] on ordering.
pub type Reply<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'static>>;

impl SfuHandle {
    /// The event stream. Can be taken once; later calls return [`Error::EventsTaken`].
    pub fn events(&self) -> Result<mpsc::UnboundedReceiver<SfuEvent>, Error> {
        self.events
            .lock()
            .expect("not poisoned: nothing panics while holding it")
            .take()
            .ok_or(Error::EventsTaken)
    }

    /// The first media worker's bound UDP address (useful with port 0).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addrs[0]
    }

    /// Every media worker's bound UDP address, by worker index.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// The media worker that holds `room` (an index into [`SfuHandle::udp_addrs`]).
    pub fn worker_of(&self, room: &RoomKey) -> usize {
        placement(room, self.workers.len())
    }

    /// The bound ICE-TCP address, if enabled.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Adds a participant. `started` is when the user's join began (for the join-time
    /// histogram, observed when media is first forwarded to it).
    pub fn join(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        grants: Grants,
        started: Instant,
    ) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.join(now, room, participant, grants, started)
        })
    }

    /// A client offer → the answer, plus possibly a server offer to send right after it
    /// (see [`crate::core::negotiation`]). Sources are inferred from msid.
    pub fn offer(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        sdp: String,
    ) -> Reply<OfferReply> {
        self.offer_with_sources(room, participant, sdp, Vec::new())
    }

    /// Like [`Self::offer`], naming the source of some mids explicitly.
    pub fn offer_with_sources(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        sdp: String,
        sources: Vec<(String, TrackSource)>,
    ) -> Reply<OfferReply> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.offer(now, &room, &participant, &sdp, &sources)
        })
    }

    /// An offer from a participant that may not have joined yet: joins it first (see
    /// [`Core::offer_joining`]). This is how signaling seats a connection on its first offer.
    pub fn offer_joining(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        grants: Grants,
        started: Instant,
        sdp: String,
    ) -> Reply<OfferReply> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.offer_joining(now, room, participant, grants, started, &sdp)
        })
    }

    /// A viewer's offer (WHEP): joins it on the first, and binds the tracks of whom it views
    /// to the offer's receive-only m-lines (see [`Core::offer_viewing`]); never a server offer.
    pub fn offer_viewing(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        viewed: Viewed,
        started: Instant,
        sdp: String,
    ) -> Reply<OfferReply> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.offer_viewing(now, room, participant, viewed, started, &sdp)
        })
    }

    /// The client's answer to a server offer ([`SfuEvent::Offer`] or
    /// [`OfferReply::server_offer`]).
    pub fn answer(&self, room: RoomKey, participant: ParticipantKey, sdp: String) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.answer(now, &room, &participant, &sdp)
        })
    }

    /// A trickled client candidate. Optional (ICE-lite learns addresses from checks).
    pub fn add_remote_candidate(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        candidate: String,
    ) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.add_remote_candidate(now, &room, &participant, &candidate)
        })
    }

    /// Records a mute toggle of a published track; emits [`SfuEvent::TrackMuted`].
    pub fn set_track_muted(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        track: TrackId,
        muted: Muted,
    ) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, _| {
            c.set_track_muted(&room, &participant, &track, muted)
        })
    }

    /// Mutes (`held`) or unmutes a track of `user` in `room` for the server API: a held track
    /// is not forwarded; see [`crate::core::Core::set_track_held`].
    pub fn set_track_held(
        &self,
        room: RoomKey,
        user: String,
        track: TrackId,
        held: bool,
    ) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.set_track_held(now, &room, &user, &track, held)
        })
    }

    /// Records a mute toggle of every track of `participant` from `source`.
    pub fn set_source_muted(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        source: TrackSource,
        muted: Muted,
    ) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, _| {
            c.set_source_muted(&room, &participant, source, muted)
        })
    }

    /// Starts receiving a track (needs `can_subscribe`).
    pub fn subscribe(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        track: TrackId,
    ) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.subscribe(now, &room, &participant, &track)
        })
    }

    /// Stops receiving a track.
    pub fn unsubscribe(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        track: TrackId,
    ) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.unsubscribe(now, &room, &participant, &track)
        })
    }

    /// What `participant` wants of a video track it receives (`track:settings`): see
    /// [`crate::core::Core::set_track_settings`].
    pub fn set_track_settings(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        track: TrackId,
        wanted: Wanted,
        fps: Option<u32>,
    ) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.set_track_settings(now, &room, &participant, &track, wanted, fps)
        })
    }

    /// The most `participant` wants to receive (bit/s; `None`: no cap): see
    /// [`crate::core::Core::set_receive_cap`].
    pub fn set_receive_cap(
        &self,
        room: RoomKey,
        participant: ParticipantKey,
        cap: Option<u64>,
    ) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.set_receive_cap(now, &room, &participant, cap)
        })
    }

    /// Removes a participant; its tracks are unpublished.
    pub fn leave(&self, room: RoomKey, participant: ParticipantKey) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.leave(now, &room, &participant)
        })
    }

    /// Removes everyone in a room (call or room ended).
    pub fn close_room(&self, room: RoomKey) -> Reply<()> {
        self.fallible(self.worker_of(&room), move |c, now| {
            c.close_room(now, &room)
        })
    }

    /// Published tracks of a room (for the `room:join` ack).
    pub fn room_tracks(&self, room: RoomKey) -> Reply<Vec<TrackInfo>> {
        self.call(self.worker_of(&room), move |c, _| c.room_tracks(&room))
    }

    /// Counts of rooms, participants, tracks, subscriptions and routes.
    pub fn snapshot(&self) -> Reply<Stats> {
        let replies: Vec<Reply<Stats>> = (0..self.workers.len())
            .map(|w| self.call(w, |c, _| c.stats()))
            .collect();
        Box::pin(async move {
            let mut all = Vec::with_capacity(replies.len());
            for r in replies {
                all.push(r.await?);
            }
            Ok(all.into_iter().sum())
        })
    }

    /// Stops every media worker and waits until each has said goodbye to its peers (DTLS
    /// close_notify) and closed its sockets. Other handles then get [`Error::Stopped`].
    pub async fn shutdown(&self) {
        for w in self.workers.iter() {
            let _ = w.send(Command::Shutdown);
        }
        for w in self.workers.iter() {
            w.closed().await;
        }
    }

    /// Resolves once a media worker has ended: after [`SfuHandle::shutdown`], or when one
    /// died (a panic in its core). The binary uses it to stop serving instead of carrying on
    /// with some rooms' media gone.
    pub async fn ended(&self) {
        let mut closed: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = self
            .workers
            .iter()
            .map(|w| Box::pin(w.closed()) as Pin<Box<dyn Future<Output = ()> + Send + '_>>)
            .collect();
        std::future::poll_fn(|cx| {
            if closed.iter_mut().any(|c| c.as_mut().poll(cx).is_ready()) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// Queues `f` now; the reply resolves with its result.
    fn call<R: Send + 'static>(
        &self,
        worker: usize,
        f: impl FnOnce(&mut Core, Instant) -> R + Send + 'static,
    ) -> Reply<R> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Run(Box::new(move |core, now| {
            let _ = tx.send(f(core, now));
        }));
        let queued = self.workers[worker].send(cmd).map_err(|_| Error::Stopped);
        Box::pin(async move {
            queued?;
            rx.await.map_err(|_| Error::Stopped)
        })
    }

    fn fallible<R: Send + 'static>(
        &self,
        worker: usize,
        f: impl FnOnce(&mut Core, Instant) -> Result<R, Error> + Send + 'static,
    ) -> Reply<R> {
        let reply = self.call(worker, f);
        Box::pin(async move { reply.await? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<SfuHandle>();
        check::<SfuEvent>();
        check::<OfferReply>();
    }

    #[test]
    fn double_registration_is_a_typed_error() {
        let registry = Registry::new();
        let settings = Settings {
            tcp_listen: None,
            ..Settings::loopback()
        };
        let sfu = Sfu::start(settings.clone(), &registry).unwrap();
        assert!(matches!(
            Sfu::start(settings, &registry),
            Err(Error::Metrics(_))
        ));
        drop(sfu);
    }

    fn start_loopback() -> SfuHandle {
        let settings = Settings {
            tcp_listen: None,
            ..Settings::loopback()
        };
        Sfu::start(settings, &Registry::new()).unwrap()
    }

    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

    #[tokio::test]
    async fn a_panicking_worker_is_seen_as_ended() {
        let sfu = start_loopback();
        // A bug in the core, reached through the real command path.
        let failed = sfu.call(0, |_, _| -> () { panic!("core bug") }).await;
        assert!(matches!(failed, Err(Error::Stopped)), "{failed:?}");
        tokio::time::timeout(PATIENCE, sfu.ended())
            .await
            .expect("the handle sees the worker gone");
        assert!(matches!(sfu.snapshot().await, Err(Error::Stopped)));
    }

    #[tokio::test]
    async fn shutdown_returns_once_the_worker_has_ended() {
        let sfu = start_loopback();
        let other = sfu.clone();
        sfu.snapshot().await.expect("running");
        tokio::time::timeout(PATIENCE, sfu.shutdown())
            .await
            .expect("shutdown completes");
        // No grace period: by the time shutdown returned, the worker was gone.
        assert!(other.workers.iter().all(|w| w.is_closed()));
        assert!(matches!(other.snapshot().await, Err(Error::Stopped)));
    }
}
