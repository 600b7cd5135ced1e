//! The hub task itself: it applies commands to the [`Hub`] and drains everything the hub
//! produced before taking the next one.
//!
//! Draining hands media commands to the media server at once, and the step's lifecycle events
//! to the lifecycle sink (ADR 0073). The rest of the step's output — acks of its client events,
//! server events for local outboxes (rendered once per event) and for guests' home nodes, and
//! cluster notices — is *released* once those lifecycle events are stored, in step order.
//! Until then it is held, and the driver goes on with the next commands: storing is a disk
//! commit (milliseconds), and the hub serves every user, so it must not wait for one. A step
//! with nothing to store is released at once unless an earlier step is still held, since
//! output never overtakes an earlier step's. Commands that hand state to the cluster or to the
//! server API (see `waits_for_held`) first wait until nothing is held, so what they see and do
//! follows everything already told.

use super::{Command, GuestAct};
use crate::cluster::{Body, Cluster, NodeId, Topology, WireEvent};
use crate::hub::Delivery;
use crate::hub::Hub;
use crate::hub::cluster::{ClusterNotice, Elsewhere};
use crate::lifecycle::{LifecycleSink, Stored};
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
    /// Steps' output waiting for their lifecycle events to be stored, oldest first.
    held: VecDeque<Held>,
}

type Ack = oneshot::Sender<Result<Value, Failure>>;

/// Steps held at most: past this the driver waits for the oldest before taking a command, so a
/// stalled sink slows the hub down instead of growing memory.
const MAX_HELD: usize = 1024;

/// What one step produced for connections and the cluster.
#[derive(Default)]
struct Output {
    acks: Vec<(Ack, Result<Value, Failure>)>,
    deliveries: Vec<Delivery>,
    notices: Vec<ClusterNotice>,
}

/// A step's output and the storing of its lifecycle events, which must finish first.
struct Held {
    stored: Stored,
    output: Output,
}

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
            held: VecDeque::new(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            let deadline = self.hub.poll_timeout().map(Instant::from_std);
            let room = self.held.len() < MAX_HELD;
            let command = tokio::select! {
                biased;
                () = oldest_stored(&mut self.held) => {
                    if let Some(held) = self.held.pop_front() {
                        self.release(held.output);
                    }
                    continue;
                }
                c = rx.recv(), if room => c,
                _ = sleep_until(deadline) => {
                    self.hub.handle_timeout(Instant::now().into_std());
                    self.drain();
                    continue;
                }
            };
            let Some(command) = command else { break };
            if waits_for_held(&command) {
                self.release_all_held().await;
            }
            if let Command::Stop = command {
                break;
            }
            self.apply(command);
            self.drain();
        }
        self.release_all_held().await;
    }

    /// Waits for every held step in order, releasing each.
    async fn release_all_held(&mut self) {
        while let Some(held) = self.held.pop_front() {
            held.stored.await;
            self.release(held.output);
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
            Command::View { conn, room, reply } => {
                // Acked like an event, once the step's lifecycle events are stored.
                let result = hub
                    .view_room(now, conn, &room)
                    .map(|id| serde_json::json!({ "roomId": id }));
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

    /// Takes everything the hub produced: media commands go out now, the rest is released now
    /// or held behind the storing of lifecycle events (see the module docs).
    fn drain(&mut self) {
        let stored = self.record_lifecycle();
        let mut output = Output {
            acks: std::mem::take(&mut self.acks),
            ..Output::default()
        };
        while let Some(delivery) = self.hub.poll_output() {
            output.deliveries.push(delivery);
        }
        // Now, before the next command: the media server sees seats end in the order the hub
        // ended them, after any request the hub authorized before.
        while let Some(command) = self.hub.poll_media() {
            if let Some(media) = &self.media {
                media.apply(command);
            }
        }
        while let Some(notice) = self.hub.poll_cluster() {
            output.notices.push(notice);
        }
        self.hub.record_sizes();
        match stored {
            None if self.held.is_empty() => self.release(output),
            stored => self.held.push_back(Held {
                stored: stored.unwrap_or_else(|| Box::pin(std::future::ready(()))),
                output,
            }),
        }
    }

    /// Tells connections and the cluster what a step produced. A connection that cannot take
    /// more is dropped, and what that produces is drained in turn.
    fn release(&mut self, output: Output) {
        let clustered = self.cluster.topology() == Topology::Clustered;
        for (ack, result) in output.acks {
            let _ = ack.send(result);
        }
        // An event fanned out to many connections is rendered once. Keyed by the event's
        // address, which stays unique while the map holds the event.
        let mut rendered: HashMap<usize, (Arc<ServerEvent>, Frame)> = HashMap::new();
        let mut slow = Vec::new();
        for delivery in output.deliveries {
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
        for notice in output.notices {
            self.notify(notice);
        }
        if slow.is_empty() {
            return;
        }
        for conn in slow {
            // Removing the outbox closes the channel, which ends the connection's task.
            if self.outboxes.remove(&conn).is_some() {
                tracing::warn!(%conn, "dropping a connection that does not keep up with its events");
                // In a cluster the connection's own task reports it gone once its writer ends,
                // after asking the device directory whether the user is elsewhere.
                if !clustered {
                    self.hub
                        .disconnect_with(Instant::now().into_std(), conn, Elsewhere::Nowhere);
                }
            }
        }
        // Dropping a slow connection produces events of its own (presence, calls).
        self.drain();
    }

    /// Hands the lifecycle events the hub queued to the sink, which starts storing them; `None`
    /// when there is nothing to wait for.
    fn record_lifecycle(&mut self) -> Option<Stored> {
        let mut events = Vec::new();
        while let Some(event) = self.hub.poll_lifecycle() {
            events.push(event);
        }
        if events.is_empty() {
            return None;
        }
        let sink = self.lifecycle.as_ref().filter(|s| s.wants())?;
        Some(sink.record(events))
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

/// Resolves once the oldest held step's lifecycle events are stored; never while none is held.
async fn oldest_stored(held: &mut VecDeque<Held>) {
    match held.front_mut() {
        Some(oldest) => (&mut oldest.stored).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether `command` must wait until no step is held: it hands hub state to the cluster (a
/// snapshot, a release, an adoption, a restatement), answers the server API, or ends the hub,
/// so it must follow everything the hub already decided being told.
fn waits_for_held(command: &Command) -> bool {
    matches!(
        command,
        Command::Shutdown { .. }
            | Command::Stop
            | Command::Adopt { .. }
            | Command::Release { .. }
            | Command::Snapshot { .. }
            | Command::Owned { .. }
            | Command::DeviceList { .. }
            | Command::Restate
            | Command::Admin { .. }
            | Command::ForgetNode { .. }
    )
}

fn is_presence(event: &ServerEvent) -> bool {
    matches!(
        event,
        ServerEvent::UserOnline(_) | ServerEvent::UserOffline(_) | ServerEvent::PresenceChanged(_)
    )
}
