//! The hub task itself: it applies commands to the [`Hub`] and drains everything the hub
//! produced before taking the next one.
//!
//! Draining first hands the step's lifecycle events to the lifecycle sink and waits until it
//! has stored them (ADR 0073), then answers the step's client events, sends server events to
//! local outboxes (rendered once per event), relays events for guests to their home node, hands
//! media commands to the media server and cluster notices to the cluster, all in hub order.

use super::{Command, GuestAct};
use crate::cluster::{Body, Cluster, NodeId, Topology, WireEvent};
use crate::hub::Hub;
use crate::hub::cluster::{ClusterNotice, Elsewhere};
use crate::lifecycle::LifecycleSink;
use crate::media::MediaServer;
use crate::transport::outbox::{Frame, Outbox};
use protocol::{ConnectionId, Failure, ServerEvent};
use serde_json::Value;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Presence events remembered per connection to drop the second copy of one that reached it
/// along two paths (as a watcher here, and as a guest in a space owned elsewhere).
const RECENT_PRESENCE: usize = 16;

/// The hub's owner; see the module docs.
pub(super) struct Driver {
    hub: Hub,
    media: Option<Arc<dyn MediaServer>>,
    cluster: Arc<dyn Cluster>,
    outboxes: HashMap<ConnectionId, Outbox>,
    /// Guests' home nodes, where their deliveries go.
    guests: HashMap<ConnectionId, NodeId>,
    /// Hashes of the last presence frames delivered to each local connection (clustered only).
    recent_presence: HashMap<ConnectionId, VecDeque<u64>>,
    /// Where lifecycle events go before anyone hears of the step that made them.
    lifecycle: Option<Arc<dyn LifecycleSink>>,
    /// Acks of the step's client events, sent once its lifecycle events are stored.
    acks: Vec<(Ack, Result<Value, Failure>)>,
}

type Ack = oneshot::Sender<Result<Value, Failure>>;

impl Driver {
    pub fn new(
        hub: Hub,
        media: Option<Arc<dyn MediaServer>>,
        cluster: Arc<dyn Cluster>,
        lifecycle: Option<Arc<dyn LifecycleSink>>,
    ) -> Self {
        Self {
            hub,
            media,
            cluster,
            outboxes: HashMap::new(),
            guests: HashMap::new(),
            recent_presence: HashMap::new(),
            lifecycle,
            acks: Vec::new(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            let deadline = self.hub.poll_timeout().map(Instant::from_std);
            let command = match deadline {
                Some(at) => tokio::select! {
                    c = rx.recv() => c,
                    _ = tokio::time::sleep_until(at) => {
                        self.hub.handle_timeout(Instant::now().into_std());
                        self.drain().await;
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(command) = command else { break };
            if let Command::Stop = command {
                break;
            }
            self.apply(command);
            self.drain().await;
        }
    }

    fn apply(&mut self, command: Command) {
        let now = Instant::now().into_std();
        let hub = &mut self.hub;
        match command {
            Command::Connect {
                conn,
                identity,
                outbox,
                elsewhere,
            } => {
                self.outboxes.insert(conn, outbox);
                hub.connect_with(now, conn, &identity, elsewhere);
            }
            Command::Disconnect { conn, elsewhere } => {
                self.outboxes.remove(&conn);
                self.guests.remove(&conn);
                self.recent_presence.remove(&conn);
                hub.disconnect_with(now, conn, elsewhere);
            }
            Command::Event {
                conn,
                event,
                placed,
                reply,
            } => {
                let result = hub.handle_placed(now, conn, event, placed);
                self.acks.push((reply, result));
            }
            Command::Presence {
                viewer,
                users,
                reply,
            } => {
                let _ = reply.send(hub.presence_of(now, &viewer, &users));
            }
            Command::PresenceLookup {
                viewer,
                users,
                reply,
            } => {
                let _ = reply.send(hub.presence_lookup(now, &viewer, &users));
            }
            Command::Shutdown { reconnect_in } => hub.shutdown(reconnect_in),
            Command::Stats { reply } => {
                let _ = reply.send(hub.stats());
            }
            Command::Stop => {}
            Command::Deliver {
                users,
                except,
                event,
            } => hub.deliver_to_users(&users, except, event),
            Command::DeliverTo { conn, event } => hub.deliver_to_connection(conn, event),
            Command::DeliverToSpace {
                space,
                except,
                event,
            } => hub.deliver_to_space(&space, except, event),
            Command::Media {
                conn,
                space,
                request,
                reply,
            } => {
                let _ = reply.send(self.media_request(conn, space, request));
            }
            Command::Guest { guest, home, act } => {
                let identity = guest.identity();
                self.guests.insert(guest.conn, home.clone());
                match act {
                    GuestAct::Event {
                        event,
                        placed,
                        reply,
                    } => {
                        hub.attach_guest(now, guest.conn, &identity, home);
                        let result = hub.handle_placed(now, guest.conn, event, placed);
                        self.acks.push((reply, result));
                    }
                    GuestAct::Media {
                        space,
                        request,
                        reply,
                    } => {
                        hub.attach_guest(now, guest.conn, &identity, home);
                        let _ = reply.send(self.media_request(guest.conn, space, request));
                    }
                    GuestAct::Arrived => hub.guest_arrived(now, guest.conn, &identity, home),
                }
            }
            Command::LocalDevices {
                user,
                except,
                event,
            } => hub.deliver_to_local_devices(&user, except, event),
            Command::RemotePresence { user, event } => hub.apply_remote_presence(&user, event),
            Command::Adopt {
                snapshot,
                previous,
                reason,
                reply,
            } => {
                let adopted = hub.adopt(now, &snapshot, &previous, reason);
                for (home, conns) in &adopted.guests {
                    for conn in conns {
                        self.guests.insert(*conn, home.clone());
                    }
                }
                let _ = reply.send(adopted);
            }
            Command::Release { space } => hub.release(&space),
            Command::Snapshot { space, reply } => {
                let _ = reply.send(hub.snapshot(&space));
            }
            Command::Owned { reply } => {
                let _ = reply.send(hub.owned());
            }
            Command::DeviceList { reply } => {
                let _ = reply.send(hub.local_devices());
            }
            Command::Restate => hub.restate(),
            Command::Admin { op, media, reply } => {
                let result = hub.admin(now, op).map(|output| {
                    let answer = media.map(|request| match (&self.media, request) {
                        (Some(server), request) => server.admin(request),
                        (None, crate::media::AdminMedia::Tracks { .. }) => {
                            Box::pin(async { Ok(crate::media::MediaAnswer::Tracks(Vec::new())) })
                                as crate::media::MediaReply
                        }
                        (None, crate::media::AdminMedia::Hold { .. }) => Box::pin(async {
                            Err(Failure::new(
                                protocol::ErrorCode::InvalidState,
                                "this server forwards no media (no SFU configured)",
                            ))
                        }),
                    });
                    (output, answer)
                });
                let _ = reply.send(result);
            }
            Command::ForgetNode { node } => {
                self.guests.retain(|_, home| *home != node);
                hub.forget_node(now, &node);
            }
        }
    }

    fn media_request(
        &mut self,
        conn: ConnectionId,
        space: Option<protocol::CallId>,
        request: crate::media::MediaRequest,
    ) -> Result<(crate::media::MediaSeat, crate::media::MediaReply), Failure> {
        match (self.hub.authorize_media(conn, space.as_ref()), &self.media) {
            (Ok(seat), Some(media)) => {
                let answer = media.submit(&seat, request);
                Ok((seat, answer))
            }
            (Ok(_), None) => Err(Failure::new(
                protocol::ErrorCode::InvalidState,
                "this server forwards no media (no SFU configured)",
            )),
            (Err(e), _) => Err(e),
        }
    }

    async fn drain(&mut self) {
        let clustered = self.cluster.topology() == Topology::Clustered;
        // An event fanned out to many connections is rendered once. Keyed by the event's
        // address, which stays unique while the map holds the event.
        let mut rendered: HashMap<usize, (Arc<ServerEvent>, Frame)> = HashMap::new();
        // Dropping a slow connection produces events of its own (presence, calls), hence the loop.
        loop {
            // Stored before anyone hears of the step: acks and server events wait for it.
            self.record_lifecycle().await;
            for (ack, result) in self.acks.drain(..) {
                let _ = ack.send(result);
            }
            let mut slow = Vec::new();
            while let Some(delivery) = self.hub.poll_output() {
                if !self.outboxes.contains_key(&delivery.to) {
                    if let Some(home) = self.guests.get(&delivery.to) {
                        self.cluster.send(
                            home,
                            Body::Deliver {
                                conn: delivery.to,
                                event: WireEvent::of(&delivery.event),
                            },
                        );
                    }
                    continue;
                }
                let (_, frame) = rendered
                    .entry(Arc::as_ptr(&delivery.event) as usize)
                    .or_insert_with(|| {
                        let frame = Frame::render(&delivery.event);
                        (delivery.event.clone(), frame)
                    });
                if clustered
                    && is_presence(&delivery.event)
                    && !first_time(&mut self.recent_presence, delivery.to, frame)
                {
                    continue;
                }
                let Some(outbox) = self.outboxes.get(&delivery.to) else {
                    continue;
                };
                if outbox.push(frame).is_err() {
                    // Full or closed: either way this connection cannot take more.
                    slow.push(delivery.to);
                }
            }
            if slow.is_empty() {
                break;
            }
            for conn in slow {
                // Removing the outbox closes the channel, which ends the connection's task.
                if self.outboxes.remove(&conn).is_some() {
                    tracing::warn!(%conn, "dropping a connection that does not keep up with its events");
                    // In a cluster the connection's own task reports it gone once its writer
                    // ends, after asking the device directory whether the user is elsewhere.
                    if !clustered {
                        self.hub.disconnect_with(
                            Instant::now().into_std(),
                            conn,
                            Elsewhere::Nowhere,
                        );
                    }
                }
            }
        }
        // Queued now, before the next command: the media server sees seats end in the order the
        // hub ended them, after any request the hub authorized before.
        while let Some(command) = self.hub.poll_media() {
            if let Some(media) = &self.media {
                media.apply(command);
            }
        }
        while let Some(notice) = self.hub.poll_cluster() {
            self.notify(notice);
        }
        self.hub.record_sizes();
    }

    /// Hands the lifecycle events the hub queued to the sink and waits until it stored them.
    async fn record_lifecycle(&mut self) {
        let mut events = Vec::new();
        while let Some(event) = self.hub.poll_lifecycle() {
            events.push(event);
        }
        if events.is_empty() {
            return;
        }
        if let Some(sink) = self.lifecycle.as_ref().filter(|s| s.wants()) {
            sink.record(events).await;
        }
    }

    fn notify(&self, notice: ClusterNotice) {
        match notice {
            ClusterNotice::ToDevices {
                user,
                except,
                event,
            } => {
                let event = WireEvent::of(&event);
                self.cluster.send_to_devices(
                    &user,
                    Body::ToDevices {
                        user: user.clone(),
                        except,
                        event,
                    },
                );
            }
            ClusterNotice::Presence { user, event } => {
                let event = WireEvent::of(&event);
                self.cluster.send_presence(
                    &user,
                    Body::Presence {
                        user: user.clone(),
                        event,
                    },
                );
            }
            ClusterNotice::Listen(interest) => self.cluster.listen(interest),
            ClusterNotice::Unlisten(interest) => self.cluster.unlisten(interest),
            ClusterNotice::Write(write) => self.cluster.write(write),
        }
    }
}

/// Whether `frame` is new to `conn` among its recent presence events; remembers it.
fn first_time(
    recent: &mut HashMap<ConnectionId, VecDeque<u64>>,
    conn: ConnectionId,
    frame: &Frame,
) -> bool {
    let mut hasher = DefaultHasher::new();
    frame.text().as_str().hash(&mut hasher);
    let hash = hasher.finish();
    let recent = recent.entry(conn).or_default();
    if recent.contains(&hash) {
        return false;
    }
    if recent.len() == RECENT_PRESENCE {
        recent.pop_front();
    }
    recent.push_back(hash);
    true
}

fn is_presence(event: &ServerEvent) -> bool {
    matches!(
        event,
        ServerEvent::UserOnline(_) | ServerEvent::UserOffline(_) | ServerEvent::PresenceChanged(_)
    )
}
