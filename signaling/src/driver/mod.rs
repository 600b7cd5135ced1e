//! The tokio task that owns the [`Hub`].
//!
//! Connections talk to it through a [`HubHandle`] (a bounded command channel); it answers acks
//! on oneshot channels and pushes server events into each connection's [`Outbox`], bounded in
//! bytes and events. Each event is rendered once into a [`Frame`](crate::transport::outbox::Frame) that all its recipients share.
//! A connection whose outbox is full is too slow to keep up: it is dropped rather than allowed to
//! hold the hub back or grow memory without bound.
//!
//! In a cluster the driver also relays: deliveries to guests (connections homed on other
//! nodes) go to their node, and the hub's cluster notices go to the [`Cluster`] (see the
//! private `task` module).
//!
//! Lifecycle events (webhooks) go to a [`LifecycleSink`] first: a step's acks and server events
//! leave only once the sink has stored the step's lifecycle events (ADR 0073).
//!
//! Lifecycle: [`spawn`] starts the task; it runs until every [`HubHandle`] is dropped.

mod task;

use crate::auth::Identity;
use crate::cluster::{Cluster, Guest, MoveReason, NodeId};
use crate::hub::admin::{AdminOp, AdminOutput};
use crate::hub::cluster::{Adopted, Elsewhere, Lookup};
use crate::hub::snapshot::SpaceSnapshot;
use crate::hub::{Hub, HubStats};
use crate::lifecycle::LifecycleSink;
use crate::media::{AdminMedia, MediaAnswer, MediaReply, MediaRequest, MediaSeat, MediaServer};
use crate::transport::outbox::Outbox;
use protocol::{CallId, ClientEvent, ConnectionId, Failure, Presence, ServerEvent, UserId};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Commands the driver understands.
enum Command {
    Connect {
        conn: ConnectionId,
        identity: Identity,
        outbox: Outbox,
        elsewhere: Elsewhere,
    },
    Disconnect {
        conn: ConnectionId,
        elsewhere: Elsewhere,
    },
    Event {
        conn: ConnectionId,
        event: ClientEvent,
        placed: Option<CallId>,
        reply: oneshot::Sender<Result<Value, Failure>>,
    },
    /// Seat `conn` as a viewer of room `room` (WHEP); the ack is `{"roomId"}`.
    View {
        conn: ConnectionId,
        room: String,
        reply: oneshot::Sender<Result<Value, Failure>>,
    },
    Presence {
        viewer: Identity,
        users: Vec<UserId>,
        reply: oneshot::Sender<Vec<Presence>>,
    },
    PresenceLookup {
        viewer: Identity,
        users: Vec<UserId>,
        reply: oneshot::Sender<Vec<(Presence, Lookup)>>,
    },
    Shutdown {
        reconnect_in: Duration,
    },
    Stats {
        reply: oneshot::Sender<HubStats>,
    },
    Stop,
    Deliver {
        users: Vec<UserId>,
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    },
    DeliverTo {
        conn: ConnectionId,
        event: Arc<ServerEvent>,
    },
    DeliverToSpace {
        space: CallId,
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    },
    Media {
        conn: ConnectionId,
        space: Option<CallId>,
        request: MediaRequest,
        reply: oneshot::Sender<Result<(MediaSeat, MediaReply), Failure>>,
    },
    /// A guest from `home` acts in a space owned here.
    Guest {
        guest: Guest,
        home: NodeId,
        act: GuestAct,
    },
    /// Another node fanned `event` out to every device of `user`: deliver to those here.
    LocalDevices {
        user: UserId,
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    },
    /// A presence event from another node.
    RemotePresence {
        user: UserId,
        event: Arc<ServerEvent>,
    },
    Adopt {
        snapshot: Box<SpaceSnapshot>,
        previous: NodeId,
        reason: MoveReason,
        reply: oneshot::Sender<Adopted>,
    },
    Release {
        space: CallId,
    },
    Snapshot {
        space: CallId,
        reply: oneshot::Sender<Option<SpaceSnapshot>>,
    },
    Owned {
        reply: oneshot::Sender<Vec<CallId>>,
    },
    DeviceList {
        reply: oneshot::Sender<Vec<(ConnectionId, Identity)>>,
    },
    Restate,
    ForgetNode {
        node: NodeId,
    },
    /// A server API operation, and the media request to queue right after it when it succeeds.
    Admin {
        op: AdminOp,
        media: Option<AdminMedia>,
        reply: oneshot::Sender<Result<(AdminOutput, Option<MediaReply>), Failure>>,
    },
}

/// What a guest does.
enum GuestAct {
    Event {
        event: ClientEvent,
        placed: Option<CallId>,
        reply: oneshot::Sender<Result<Value, Failure>>,
    },
    Media {
        space: Option<CallId>,
        request: MediaRequest,
        reply: oneshot::Sender<Result<(MediaSeat, MediaReply), Failure>>,
    },
    /// It connected while its user is involved in calls here.
    Arrived,
}

/// A cloneable handle to the hub task.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Command>,
    next_conn: Arc<AtomicU64>,
}

/// The hub task is gone (the server is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the signaling hub has stopped")]
pub struct HubGone;

impl HubHandle {
    /// A process-unique id for a new connection.
    pub fn next_connection_id(&self) -> ConnectionId {
        ConnectionId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Registers an authenticated connection and where its events go. `elsewhere` says
    /// whether its user has devices on other nodes (always `Nowhere` on a single node).
    pub async fn connect(
        &self,
        conn: ConnectionId,
        identity: Identity,
        outbox: Outbox,
        elsewhere: Elsewhere,
    ) -> Result<(), HubGone> {
        self.send(Command::Connect {
            conn,
            identity,
            outbox,
            elsewhere,
        })
        .await
    }

    pub async fn disconnect(&self, conn: ConnectionId, elsewhere: Elsewhere) {
        let _ = self.send(Command::Disconnect { conn, elsewhere }).await;
    }

    /// Runs one client event and returns its ack payload. `placed` is the id a new call must
    /// take (chosen by the node that placed it here).
    pub async fn event(
        &self,
        conn: ConnectionId,
        event: ClientEvent,
        placed: Option<CallId>,
    ) -> Result<Value, Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Event {
            conn,
            event,
            placed,
            reply,
        })
        .await
        .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Seats `conn` as a hidden viewer of room `room` ([`Hub::view_room`]); no client event
    /// does this, only a WHEP session. Answers the room's id.
    pub async fn view(&self, conn: ConnectionId, room: String) -> Result<CallId, Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::View { conn, room, reply })
            .await
            .map_err(|_| gone())?;
        let ack = rx.await.map_err(|_| gone())??;
        match ack["roomId"].as_str() {
            Some(id) => Ok(CallId(id.to_owned())),
            None => Err(Failure::new(
                protocol::ErrorCode::Internal,
                "the hub's view ack has no roomId",
            )),
        }
    }

    /// A guest's client event, queued now (in the order the guest's node sent it); the reply
    /// resolves with the ack payload.
    pub async fn guest_event(
        &self,
        guest: Guest,
        home: NodeId,
        event: ClientEvent,
        placed: Option<CallId>,
    ) -> oneshot::Receiver<Result<Value, Failure>> {
        let (reply, rx) = oneshot::channel();
        let act = GuestAct::Event {
            event,
            placed,
            reply,
        };
        let _ = self.send(Command::Guest { guest, home, act }).await;
        rx
    }

    /// A guest's media request, queued now; see [`HubHandle::media`].
    pub async fn guest_media(
        &self,
        guest: Guest,
        home: NodeId,
        space: Option<CallId>,
        request: MediaRequest,
    ) -> oneshot::Receiver<Result<(MediaSeat, MediaReply), Failure>> {
        let (reply, rx) = oneshot::channel();
        let act = GuestAct::Media {
            space,
            request,
            reply,
        };
        let _ = self.send(Command::Guest { guest, home, act }).await;
        rx
    }

    /// A device of a user involved in calls here connected on `home`.
    pub async fn guest_arrived(&self, guest: Guest, home: NodeId) {
        let act = GuestAct::Arrived;
        let _ = self.send(Command::Guest { guest, home, act }).await;
    }

    /// Delivers what another node fanned out to every device of `user` to those here.
    pub async fn deliver_to_local_devices(
        &self,
        user: UserId,
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    ) {
        let _ = self
            .send(Command::LocalDevices {
                user,
                except,
                event,
            })
            .await;
    }

    /// A presence event from another node.
    pub async fn remote_presence(&self, user: UserId, event: Arc<ServerEvent>) {
        let _ = self.send(Command::RemotePresence { user, event }).await;
    }

    /// Takes over a space from its snapshot; see [`Hub::adopt`].
    pub async fn adopt(
        &self,
        snapshot: SpaceSnapshot,
        previous: NodeId,
        reason: MoveReason,
    ) -> Result<Adopted, HubGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Adopt {
            snapshot: Box::new(snapshot),
            previous,
            reason,
            reply,
        })
        .await?;
        rx.await.map_err(|_| HubGone)
    }

    /// Forgets a space handed over to another node; see [`Hub::release`].
    pub async fn release(&self, space: CallId) {
        let _ = self.send(Command::Release { space }).await;
    }

    /// The snapshot of a space owned here.
    pub async fn snapshot(&self, space: CallId) -> Result<Option<SpaceSnapshot>, HubGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Snapshot { space, reply }).await?;
        rx.await.map_err(|_| HubGone)
    }

    /// The spaces owned here.
    pub async fn owned(&self) -> Result<Vec<CallId>, HubGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Owned { reply }).await?;
        rx.await.map_err(|_| HubGone)
    }

    /// The devices connected here.
    pub async fn local_devices(&self) -> Result<Vec<(ConnectionId, Identity)>, HubGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::DeviceList { reply }).await?;
        rx.await.map_err(|_| HubGone)
    }

    /// Writes again everything other nodes keep about this node's spaces and users.
    pub async fn restate(&self) {
        let _ = self.send(Command::Restate).await;
    }

    /// Forgets every guest homed on a node that died.
    pub async fn forget_node(&self, node: NodeId) {
        let _ = self.send(Command::ForgetNode { node }).await;
    }

    /// The presence of `users` as `viewer` may see it (`presence.visibility`).
    pub async fn presence(
        &self,
        viewer: Identity,
        users: Vec<UserId>,
    ) -> Result<Vec<Presence>, HubGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Presence {
            viewer,
            users,
            reply,
        })
        .await?;
        rx.await.map_err(|_| HubGone)
    }

    /// [`HubHandle::presence`], saying for each user whether it was answered here or needs the
    /// cluster's shared record.
    pub async fn presence_lookup(
        &self,
        viewer: Identity,
        users: Vec<UserId>,
    ) -> Result<Vec<(Presence, Lookup)>, HubGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::PresenceLookup {
            viewer,
            users,
            reply,
        })
        .await?;
        rx.await.map_err(|_| HubGone)
    }

    /// Tells every connection the server is going away and refuses new calls.
    pub async fn shutdown(&self, reconnect_in: Duration) {
        let _ = self.send(Command::Shutdown { reconnect_in }).await;
    }

    /// Delivers `event` to every connected device of `users` but `except`.
    pub async fn deliver(
        &self,
        users: Vec<UserId>,
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    ) {
        let _ = self
            .send(Command::Deliver {
                users,
                except,
                event,
            })
            .await;
    }

    /// Delivers `event` to one connection.
    pub async fn deliver_to(&self, conn: ConnectionId, event: Arc<ServerEvent>) {
        let _ = self.send(Command::DeliverTo { conn, event }).await;
    }

    /// Delivers `event` to every connection in a media space (call or room) but `except`.
    pub async fn deliver_to_space(
        &self,
        space: CallId,
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    ) {
        let _ = self
            .send(Command::DeliverToSpace {
                space,
                except,
                event,
            })
            .await;
    }

    /// A client's media request: the hub authorizes the seat (`space`, or the connection's
    /// only media space) and the request is queued with the media server in the same step;
    /// the returned reply resolves with the media server's answer. See [`crate::media`].
    pub async fn media(
        &self,
        conn: ConnectionId,
        space: Option<CallId>,
        request: MediaRequest,
    ) -> Result<(MediaSeat, MediaReply), Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Media {
            conn,
            space,
            request,
            reply,
        })
        .await
        .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Runs a server API operation on the hub; see [`crate::hub::admin`].
    pub async fn admin(&self, op: AdminOp) -> Result<AdminOutput, Failure> {
        self.admin_with_media(op, None).await.map(|(out, _)| out)
    }

    /// Runs a server API operation and, when it succeeds, queues `media` with the media server
    /// in the same step (so it is ordered with the hub's own media commands); returns both
    /// answers. Without an SFU a track list is empty and a hold fails `invalid_state`.
    pub async fn admin_with_media(
        &self,
        op: AdminOp,
        media: Option<AdminMedia>,
    ) -> Result<(AdminOutput, Option<MediaAnswer>), Failure> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Admin { op, media, reply })
            .await
            .map_err(|_| gone())?;
        let (output, media) = rx.await.map_err(|_| gone())??;
        let answer = match media {
            Some(reply) => Some(reply.await?),
            None => None,
        };
        Ok((output, answer))
    }

    /// Resolves once the hub task has ended while handles still exist: it panicked, or it was
    /// stopped. The binary supervises it like the SFU and the TURN relay (ADR 0024).
    pub async fn ended(&self) {
        self.tx.closed().await;
    }

    /// Whether the hub task has ended.
    pub fn is_ended(&self) -> bool {
        self.tx.is_closed()
    }

    /// Ends the hub task after the commands already queued; every later command fails as
    /// `shutting_down`. A server whose hub ends while it serves treats that as a failure and
    /// drains, so this is how tests stop a hub under a running server.
    pub async fn stop(&self) {
        let _ = self.send(Command::Stop).await;
        self.tx.closed().await;
    }

    pub async fn stats(&self) -> Result<HubStats, HubGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Stats { reply }).await?;
        rx.await.map_err(|_| HubGone)
    }

    async fn send(&self, command: Command) -> Result<(), HubGone> {
        self.tx.send(command).await.map_err(|_| HubGone)
    }
}

/// Starts the hub task. The hub's media commands are passed on to `media`, its notices for
/// other nodes to `cluster`, its lifecycle events to `lifecycle` (awaited before the step's
/// server events go out). Connection ids start at `first_conn` (unique across a cluster).
pub fn spawn(
    hub: Hub,
    media: Option<Arc<dyn MediaServer>>,
    cluster: Arc<dyn Cluster>,
    lifecycle: Option<Arc<dyn LifecycleSink>>,
    first_conn: u64,
) -> HubHandle {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(task::Driver::new(hub, media, cluster, lifecycle).run(rx));
    HubHandle {
        tx,
        next_conn: Arc::new(AtomicU64::new(first_conn)),
    }
}

fn gone() -> Failure {
    Failure::new(protocol::ErrorCode::ShuttingDown, "the server is stopping")
}
