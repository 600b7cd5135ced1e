//! The tokio task that owns the [`Hub`].
//!
//! Connections talk to it through a [`HubHandle`] (a bounded command channel); it answers acks
//! on oneshot channels and pushes server events into each connection's [`Outbox`], bounded in
//! bytes and events. Each event is rendered once into a [`Frame`] that all its recipients share.
//! A connection whose outbox is full is too slow to keep up: it is dropped rather than allowed to
//! hold the hub back or grow memory without bound.
//!
//! Lifecycle: [`spawn`] starts the task; it runs until every [`HubHandle`] is dropped.

use crate::auth::Identity;
use crate::hub::{Hub, HubStats};
use crate::media::{MediaReply, MediaRequest, MediaSeat, MediaServer};
use crate::transport::outbox::{Frame, Outbox};
use protocol::{CallId, ClientEvent, ConnectionId, Failure, Presence, ServerEvent, UserId};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Commands the driver understands.
enum Command {
    Connect {
        conn: ConnectionId,
        identity: Identity,
        outbox: Outbox,
    },
    Disconnect {
        conn: ConnectionId,
    },
    Event {
        conn: ConnectionId,
        event: ClientEvent,
        reply: oneshot::Sender<Result<Value, Failure>>,
    },
    Presence {
        viewer: Identity,
        users: Vec<UserId>,
        reply: oneshot::Sender<Vec<Presence>>,
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

    /// Registers an authenticated connection and where its events go.
    pub async fn connect(
        &self,
        conn: ConnectionId,
        identity: Identity,
        outbox: Outbox,
    ) -> Result<(), HubGone> {
        self.send(Command::Connect {
            conn,
            identity,
            outbox,
        })
        .await
    }

    pub async fn disconnect(&self, conn: ConnectionId) {
        let _ = self.send(Command::Disconnect { conn }).await;
    }

    /// Runs one client event and returns its ack payload.
    pub async fn event(&self, conn: ConnectionId, event: ClientEvent) -> Result<Value, Failure> {
        let (reply, rx) = oneshot::channel();
        let gone = || Failure::new(protocol::ErrorCode::ShuttingDown, "the server is stopping");
        self.send(Command::Event { conn, event, reply })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
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
        let gone = || Failure::new(protocol::ErrorCode::ShuttingDown, "the server is stopping");
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

/// Starts the hub task. The hub's media commands are passed on to `media`.
pub fn spawn(hub: Hub, media: Option<Arc<dyn MediaServer>>) -> HubHandle {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(hub, rx, media));
    HubHandle {
        tx,
        next_conn: Arc::new(AtomicU64::new(1)),
    }
}

async fn run(mut hub: Hub, mut rx: mpsc::Receiver<Command>, media: Option<Arc<dyn MediaServer>>) {
    let mut outboxes: HashMap<ConnectionId, Outbox> = HashMap::new();
    loop {
        let deadline = hub.poll_timeout().map(Instant::from_std);
        let command = match deadline {
            Some(at) => tokio::select! {
                c = rx.recv() => c,
                _ = tokio::time::sleep_until(at) => {
                    hub.handle_timeout(Instant::now().into_std());
                    drain(&mut hub, &mut outboxes, media.as_ref());
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(command) = command else { break };
        let now = Instant::now().into_std();
        match command {
            Command::Connect {
                conn,
                identity,
                outbox,
            } => {
                outboxes.insert(conn, outbox);
                hub.connect(now, conn, &identity);
            }
            Command::Disconnect { conn } => {
                outboxes.remove(&conn);
                hub.disconnect(now, conn);
            }
            Command::Event { conn, event, reply } => {
                let _ = reply.send(hub.handle(now, conn, event));
            }
            Command::Presence {
                viewer,
                users,
                reply,
            } => {
                let _ = reply.send(hub.presence_of(now, &viewer, &users));
            }
            Command::Shutdown { reconnect_in } => hub.shutdown(reconnect_in),
            Command::Stats { reply } => {
                let _ = reply.send(hub.stats());
            }
            Command::Stop => break,
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
                let submitted = match (hub.authorize_media(conn, space.as_ref()), media.as_ref()) {
                    (Ok(seat), Some(media)) => {
                        let answer = media.submit(&seat, request);
                        Ok((seat, answer))
                    }
                    (Ok(_), None) => Err(Failure::new(
                        protocol::ErrorCode::InvalidState,
                        "this server forwards no media (no SFU configured)",
                    )),
                    (Err(e), _) => Err(e),
                };
                let _ = reply.send(submitted);
            }
        }
        drain(&mut hub, &mut outboxes, media.as_ref());
    }
}

fn drain(
    hub: &mut Hub,
    outboxes: &mut HashMap<ConnectionId, Outbox>,
    media: Option<&Arc<dyn MediaServer>>,
) {
    // An event fanned out to many connections is rendered once. Keyed by the event's address,
    // which stays unique while the map holds the event.
    let mut rendered: HashMap<*const ServerEvent, (Arc<ServerEvent>, Frame)> = HashMap::new();
    // Dropping a slow connection produces events of its own (presence, calls), hence the loop.
    loop {
        let mut slow = Vec::new();
        while let Some(delivery) = hub.poll_output() {
            let Some(outbox) = outboxes.get(&delivery.to) else {
                continue;
            };
            let (_, frame) = rendered
                .entry(Arc::as_ptr(&delivery.event))
                .or_insert_with(|| {
                    let frame = Frame::render(&delivery.event);
                    (delivery.event, frame)
                });
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
            if outboxes.remove(&conn).is_some() {
                tracing::warn!(%conn, "dropping a connection that does not keep up with its events");
                hub.disconnect(Instant::now().into_std(), conn);
            }
        }
    }
    // Queued now, before the next command: the media server sees seats end in the order the
    // hub ended them, after any request the hub authorized before.
    while let Some(command) = hub.poll_media() {
        if let Some(media) = media {
            media.apply(command);
        }
    }
}
