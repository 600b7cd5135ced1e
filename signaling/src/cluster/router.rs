//! The logic over the cluster seam: sends each client event to its space's owner and feeds
//! what other nodes say into the local hub (ADR 0060).
//!
//! Sessions and transports talk to the [`Router`], not to the hub: on a single node ([`Solo`])
//! every call goes straight to the local hub; in a cluster the router
//! - places new calls and rooms, and relays events for spaces owned elsewhere to their owner,
//!   awaiting the owner's reply (`cluster.request_timeout`, then `cluster_unavailable`; at
//!   once if the owner is declared dead meanwhile, so the client retries as the space moves);
//! - keeps the device directory up to date as connections come and go, and tells the owners of
//!   spaces a connection acted in when it goes;
//! - serves the inbox: requests from other nodes' guests, deliveries for local connections,
//!   presence events, adoption orders.
//!
//! What it keeps: a cache of space owners (refreshed from Redis when a cached owner is no
//! longer live), the nodes each local connection has state on (so they hear when it leaves),
//! and the requests awaiting a reply. None of it is membership: the owners' hubs hold that.
//!
//! [`Solo`]: super::Solo

use super::message::{Body, Envelope, Guest, MoveReason, Reply, Request};
use super::{Cluster, ClusterError, DeviceCount, Interest, NodeId, StateWrite, Topology};
use crate::auth::Identity;
use crate::driver::{HubGone, HubHandle};
use crate::hub::cluster::{Elsewhere, Lookup, PresenceRecord};
use crate::hub::room::room_id;
use crate::hub::snapshot::SpaceSnapshot;
use crate::media::{MediaAnswer, MediaRequest};
use crate::transport::outbox::Outbox;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use protocol::{
    CallId, ClientEvent, ConnectionId, ErrorCode, Failure, Presence, PresenceList, UserId,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most cached space owners; the cache is cleared past it (entries are cheap to look up again).
const OWNER_CACHE: usize = 100_000;

/// See the module docs.
pub struct Router {
    hub: HubHandle,
    cluster: Arc<dyn Cluster>,
    settings: RouterSettings,
    owners: Mutex<HashMap<CallId, NodeId>>,
    /// Other nodes each local connection acted on, so they hear when it leaves.
    routes: Mutex<HashMap<ConnectionId, BTreeSet<NodeId>>>,
    /// Requests awaiting a reply, with the node asked: when that node is declared gone, its
    /// requests fail at once instead of waiting out `request_timeout`.
    pending: Mutex<HashMap<u64, (NodeId, oneshot::Sender<Reply>)>>,
    next_request: AtomicU64,
    metrics: RouterMetrics,
    /// Where revocations other nodes took are applied.
    revocations: Arc<crate::revocation::Revocations>,
    /// Woken when another node changed the stored webhook endpoints.
    webhook_changes: Arc<tokio::sync::Notify>,
}

/// What the router enforces, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct RouterSettings {
    pub request_timeout: Duration,
    /// Connections one user may hold in the whole cluster.
    pub max_connections_per_user: usize,
    /// Calls one user may take part in, in the whole cluster (each owner also checks its own).
    pub max_calls_per_user: usize,
}

/// A connection the router did not let in.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal(pub Failure);

/// The cluster's metrics (no per-user or per-space labels).
#[derive(Clone)]
pub struct RouterMetrics {
    /// Messages relayed to (`out`) and from (`in`) other nodes.
    pub relayed: IntCounterVec,
    /// Round trip of a request relayed to another node.
    pub relay_seconds: Histogram,
    /// Spaces this node took over from another, by reason.
    pub moves: IntCounterVec,
    /// Spaces owned here, by kind (`call`, `room`).
    pub owned: prometheus::IntGaugeVec,
    /// Live nodes seen in the registry (this one included).
    pub nodes: IntGauge,
}

impl RouterMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let relayed = IntCounterVec::new(
            Opts::new(
                "chorus_cluster_relayed_total",
                "Messages relayed between nodes, by direction",
            ),
            &["direction"],
        )?;
        let relay_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "chorus_cluster_relay_seconds",
                "Round trip of a client event relayed to the node owning its call or room",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let moves = IntCounterVec::new(
            Opts::new(
                "chorus_cluster_ownership_moves_total",
                "Calls and rooms this node took over from another node, by reason",
            ),
            &["reason"],
        )?;
        let owned = prometheus::IntGaugeVec::new(
            Opts::new(
                "chorus_cluster_spaces_owned",
                "Calls and rooms owned by this node, by kind",
            ),
            &["kind"],
        )?;
        let nodes = IntGauge::new(
            "chorus_cluster_nodes",
            "Live nodes in the cluster registry, this one included",
        )?;
        registry.register(Box::new(relayed.clone()))?;
        registry.register(Box::new(relay_seconds.clone()))?;
        registry.register(Box::new(moves.clone()))?;
        registry.register(Box::new(owned.clone()))?;
        registry.register(Box::new(nodes.clone()))?;
        Ok(Self {
            relayed,
            relay_seconds,
            moves,
            owned,
            nodes,
        })
    }
}

/// Where an event goes.
enum Target {
    /// This node's own state (presence, status).
    Local,
    /// A new call, to be placed.
    NewCall,
    /// A room by id: placed on its first join.
    Room { id: CallId, joining: bool },
    /// An existing call.
    Space(CallId),
}

impl Target {
    fn of(event: &ClientEvent) -> Target {
        match event {
            ClientEvent::CallInitiate(_) => Target::NewCall,
            ClientEvent::RoomJoin(r) => Target::Room {
                id: room_id(&r.room),
                joining: true,
            },
            ClientEvent::RoomLeave(r) => Target::Room {
                id: room_id(&r.room),
                joining: false,
            },
            ClientEvent::CallAccept(r)
            | ClientEvent::CallReject(r)
            | ClientEvent::CallEnd(r)
            | ClientEvent::CallJoin(r)
            | ClientEvent::CallRinging(r)
            | ClientEvent::ScreenShareStart(r)
            | ClientEvent::ScreenShareStop(r) => Target::Space(r.call_id.clone()),
            ClientEvent::Offer(s) | ClientEvent::Answer(s) | ClientEvent::IceCandidate(s) => {
                Target::Space(s.call_id.clone())
            }
            ClientEvent::MediaToggle(m) => Target::Space(m.call_id.clone()),
            ClientEvent::TrackSubscribe(t) | ClientEvent::TrackUnsubscribe(t) => match &t.call_id {
                Some(id) => Target::Space(id.clone()),
                None => Target::Local,
            },
            ClientEvent::MediaBandwidth(b) => match &b.call_id {
                Some(id) => Target::Space(id.clone()),
                None => Target::Local,
            },
            ClientEvent::TrackSettings(t) => match &t.call_id {
                Some(id) => Target::Space(id.clone()),
                None => Target::Local,
            },
            ClientEvent::StatusUpdate(_)
            | ClientEvent::ActivityPing
            | ClientEvent::PresenceSubscribe(_)
            | ClientEvent::PresenceUnsubscribe(_) => Target::Local,
        }
    }
}

impl Router {
    pub fn new(
        hub: HubHandle,
        cluster: Arc<dyn Cluster>,
        settings: RouterSettings,
        metrics: RouterMetrics,
        revocations: Arc<crate::revocation::Revocations>,
    ) -> Arc<Self> {
        Arc::new(Self {
            revocations,
            webhook_changes: Arc::new(tokio::sync::Notify::new()),
            hub,
            cluster,
            settings,
            owners: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            metrics,
        })
    }

    pub fn cluster(&self) -> &Arc<dyn Cluster> {
        &self.cluster
    }

    fn solo(&self) -> bool {
        self.cluster.topology() == Topology::Solo
    }

    fn node(&self) -> &NodeId {
        self.cluster.node()
    }

    // ---- connections -------------------------------------------------------------------

    /// [`Router::connect`], returning a guard that unregisters the connection if its transport
    /// never gets going (the upgrade fails, the socket goes before its first handler runs).
    /// Transports register before they tell the client it is connected, so a connected client
    /// is reachable at once, from every node.
    pub async fn register(
        self: &Arc<Self>,
        conn: ConnectionId,
        identity: &Identity,
        outbox: Outbox,
    ) -> Result<Registration, Refusal> {
        self.connect(conn, identity, outbox).await?;
        Ok(Registration {
            router: self.clone(),
            conn,
            user: identity.user_id.clone(),
            live: true,
        })
    }

    /// Registers a new local connection: in a cluster, in the device directory (refused past
    /// the user's cluster-wide cap), listening for the user's devices channel before the hub
    /// knows it, with the user's presence from elsewhere; devices of calls ringing the user on
    /// other nodes ring too.
    pub async fn connect(
        &self,
        conn: ConnectionId,
        identity: &Identity,
        outbox: Outbox,
    ) -> Result<(), Refusal> {
        let user = &identity.user_id;
        let elsewhere = match self.cluster.device_up(user, conn).await {
            Ok(DeviceCount(n)) if n > self.settings.max_connections_per_user => {
                let _ = self.cluster.device_down(user, conn).await;
                return Err(Refusal(Failure::new(
                    ErrorCode::TooManyConnections,
                    format!(
                        "this user holds {} connections already (limit {})",
                        n - 1,
                        self.settings.max_connections_per_user
                    ),
                )));
            }
            // A single node's hub knows the user's other devices itself.
            _ if self.solo() => Elsewhere::Nowhere,
            Ok(DeviceCount(n)) if n > 1 => Elsewhere::Online(self.presence_record(user).await),
            Ok(_) => Elsewhere::Nowhere,
            // Redis is away: this node's view is all there is.
            Err(_) => Elsewhere::Nowhere,
        };
        if let Err(e) = self.cluster.listened(Interest::Devices(user.clone())).await {
            tracing::warn!(%user, error = %e, "cannot listen for the user's devices; cross-node deliveries to this device will be missed until Redis returns");
        }
        if self
            .hub
            .connect(conn, identity.clone(), outbox, elsewhere)
            .await
            .is_err()
        {
            let _ = self.cluster.device_down(user, conn).await;
            return Err(Refusal(gone()));
        }
        self.ring_elsewhere(conn, identity).await;
        Ok(())
    }

    /// Forgets a local connection; the owners of spaces it acted in hear it left.
    pub async fn disconnect(&self, conn: ConnectionId, user: &UserId) {
        if self.solo() {
            let _ = self.cluster.device_down(user, conn).await;
            self.hub.disconnect(conn, Elsewhere::Nowhere).await;
            return;
        }
        let elsewhere = match self.cluster.device_down(user, conn).await {
            Ok(DeviceCount(n)) if n > 0 => Elsewhere::Online(None),
            _ => Elsewhere::Nowhere,
        };
        self.hub.disconnect(conn, elsewhere).await;
        let nodes = lock(&self.routes).remove(&conn).unwrap_or_default();
        for node in nodes {
            self.cluster.send(&node, Body::DeviceLeft { conn });
        }
    }

    /// Calls ringing `identity`'s user that are owned elsewhere ring this new device too.
    async fn ring_elsewhere(&self, conn: ConnectionId, identity: &Identity) {
        let Ok(calls) = self.cluster.user_calls(&identity.user_id).await else {
            return;
        };
        for call in calls {
            let Ok(Some(owner)) = self.owner(&call).await else {
                continue;
            };
            if &owner == self.node() {
                continue; // the local hub rang it when it connected
            }
            self.route(conn, &owner);
            let guest = Guest::new(conn, identity);
            self.cluster.send(
                &owner,
                Body::Request {
                    id: 0,
                    request: Request::DeviceArrived { guest },
                },
            );
        }
    }

    // ---- events ------------------------------------------------------------------------

    /// Runs one client event where its space lives and returns the ack payload.
    pub async fn event(
        &self,
        conn: ConnectionId,
        identity: &Identity,
        event: ClientEvent,
    ) -> Result<Value, Failure> {
        if self.solo() {
            return self.hub.event(conn, event, None).await;
        }
        let subscribe = match &event {
            ClientEvent::PresenceSubscribe(u) => Some(u.user_ids.clone()),
            _ => None,
        };
        match &event {
            ClientEvent::CallInitiate(_) => self.check_call_quota(&identity.user_id, None).await?,
            ClientEvent::CallAccept(r) | ClientEvent::CallJoin(r) => {
                self.check_call_quota(&identity.user_id, Some(&r.call_id))
                    .await?;
            }
            _ => {}
        }
        let (owner, placed) = match Target::of(&event) {
            Target::Local => (self.node().clone(), None),
            Target::NewCall => {
                let id = CallId(crate::hub::new_call_id());
                let owner = self.cluster.place(&id).await.map_err(|e| e.failure())?;
                self.remember(&id, &owner);
                (owner, Some(id))
            }
            Target::Room { id, joining } => {
                let owner = if joining {
                    self.cluster.place(&id).await.map_err(|e| e.failure())?
                } else {
                    match self.owner(&id).await.map_err(|e| e.failure())? {
                        Some(owner) => owner,
                        None => self.node().clone(),
                    }
                };
                self.remember(&id, &owner);
                (owner, None)
            }
            Target::Space(id) => match self.owner(&id).await.map_err(|e| e.failure())? {
                Some(owner) => (owner, None),
                // Unknown anywhere: the local hub gives the usual answer.
                None => (self.node().clone(), None),
            },
        };
        let ack = if &owner == self.node() {
            self.hub.event(conn, event, placed).await?
        } else {
            let request = Request::event(Guest::new(conn, identity), &event, placed);
            match self.request(&owner, conn, request).await? {
                Reply::Ack { result } => result?,
                _ => return Err(unexpected()),
            }
        };
        match subscribe {
            // Presence of users connected elsewhere comes from the shared records.
            Some(users) => {
                let presences = self.presence(identity, users).await.map_err(|_| gone())?;
                Ok(serde_json::to_value(PresenceList { presences }).unwrap_or_default())
            }
            None => Ok(ack),
        }
    }

    /// Seats local connection `conn` as a hidden viewer of room `name` (a WHEP session; see
    /// [`crate::hub::room`]'s "Viewers"), placing the room as a join would. The viewer's media
    /// goes through the room owner's SFU and its seat is never relayed as a guest, so the room
    /// must be owned here: the WHEP route sent the POST to the owner, and another owner now
    /// means the room moved meanwhile (refused; the client POSTs again and is redirected).
    pub async fn view(&self, conn: ConnectionId, name: &str) -> Result<CallId, Failure> {
        if !self.solo() {
            let id = room_id(name);
            let owner = self.cluster.place(&id).await.map_err(|e| e.failure())?;
            self.remember(&id, &owner);
            if &owner != self.node() {
                return Err(Failure::new(
                    ErrorCode::ClusterUnavailable,
                    format!("room `{name}` moved to node {owner}; POST again"),
                ));
            }
        }
        self.hub.view(conn, name.to_owned()).await
    }

    /// Refuses when `user` takes part in `max_calls_per_user` calls across the cluster and would
    /// take part in one more (`joining`, or a new call). The owner of each call checks only the
    /// calls it owns; this sees those owned anywhere. While Redis is away only the owners' checks
    /// apply.
    async fn check_call_quota(
        &self,
        user: &UserId,
        joining: Option<&CallId>,
    ) -> Result<(), Failure> {
        let limit = self.settings.max_calls_per_user;
        let Ok(seated) = self.cluster.seated_calls(user).await else {
            return Ok(());
        };
        let others: Vec<CallId> = seated.into_iter().filter(|c| Some(c) != joining).collect();
        if others.len() < limit {
            return Ok(());
        }
        // An entry whose call has no owner left is a write lost with its node: it does not count.
        let mut live = 0;
        for call in &others {
            if !matches!(self.cluster.owner(call).await, Ok(None)) {
                live += 1;
            }
        }
        if live >= limit {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!("you are in {live} calls already (limit {limit})"),
            ));
        }
        Ok(())
    }

    /// A media request for the seat in `space` (or the connection's only media space), served
    /// by the node that owns the space and its SFU.
    pub async fn media(
        &self,
        conn: ConnectionId,
        identity: &Identity,
        space: Option<CallId>,
        request: MediaRequest,
    ) -> Result<(CallId, MediaAnswer), Failure> {
        let owner = match &space {
            Some(id) if !self.solo() => self
                .owner(id)
                .await
                .map_err(|e| e.failure())?
                .unwrap_or_else(|| self.node().clone()),
            _ => self.node().clone(),
        };
        if &owner == self.node() {
            let local = self.hub.media(conn, space.clone(), request.clone()).await;
            match local {
                Ok((seat, reply)) => return Ok((seat.space, reply.await?)),
                // No seat here; with no space named, the connection may sit on another node.
                Err(e) if space.is_none() && !self.solo() => {
                    let others: Vec<NodeId> = lock(&self.routes)
                        .get(&conn)
                        .map(|n| n.iter().cloned().collect())
                        .unwrap_or_default();
                    for node in others {
                        let req = Request::Media {
                            guest: Guest::new(conn, identity),
                            space: None,
                            request: request.clone(),
                        };
                        if let Ok(Reply::Media { result: Ok(found) }) =
                            self.request(&node, conn, req).await
                        {
                            return Ok(found);
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        let req = Request::Media {
            guest: Guest::new(conn, identity),
            space,
            request,
        };
        match self.request(&owner, conn, req).await? {
            Reply::Media { result } => result,
            _ => Err(unexpected()),
        }
    }

    /// The presence of `users` as `viewer` may see it, across the cluster.
    pub async fn presence(
        &self,
        viewer: &Identity,
        users: Vec<UserId>,
    ) -> Result<Vec<Presence>, HubGone> {
        if self.solo() {
            return self.hub.presence(viewer.clone(), users).await;
        }
        let local = self.hub.presence_lookup(viewer.clone(), users).await?;
        let mut out = Vec::with_capacity(local.len());
        for (p, lookup) in local {
            // Visible but not connected here: maybe online on another node.
            if lookup == Lookup::Elsewhere
                && let Ok((record, DeviceCount(n))) = self.cluster.presence(&p.user_id).await
            {
                out.push(merge(p, record.as_deref(), n));
                continue;
            }
            out.push(p);
        }
        Ok(out)
    }

    async fn presence_record(&self, user: &UserId) -> Option<PresenceRecord> {
        let (record, _) = self.cluster.presence(user).await.ok()?;
        serde_json::from_str(&record?).ok()
    }

    // ---- owners and requests -----------------------------------------------------------

    /// The owner of `space`: cached while it is live, else asked of Redis.
    async fn owner(&self, space: &CallId) -> Result<Option<NodeId>, ClusterError> {
        let cached = lock(&self.owners).get(space).cloned();
        if let Some(owner) = cached {
            if &owner == self.node() || self.is_live(&owner) {
                return Ok(Some(owner));
            }
            lock(&self.owners).remove(space);
        }
        let owner = self.cluster.owner(space).await?;
        if let Some(owner) = &owner {
            self.remember(space, owner);
        }
        Ok(owner)
    }

    fn is_live(&self, node: &NodeId) -> bool {
        self.cluster.nodes().iter().any(|n| &n.id == node)
    }

    fn remember(&self, space: &CallId, owner: &NodeId) {
        let mut owners = lock(&self.owners);
        if owners.len() >= OWNER_CACHE {
            owners.clear();
        }
        owners.insert(space.clone(), owner.clone());
    }

    fn route(&self, conn: ConnectionId, node: &NodeId) {
        lock(&self.routes)
            .entry(conn)
            .or_default()
            .insert(node.clone());
    }

    /// Sends `request` to `to` for local connection `conn` and awaits the reply.
    async fn request(
        &self,
        to: &NodeId,
        conn: ConnectionId,
        request: Request,
    ) -> Result<Reply, Failure> {
        self.route(conn, to);
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, (to.clone(), tx));
        let started = Instant::now();
        self.metrics.relayed.with_label_values(&["out"]).inc();
        self.cluster.send(to, Body::Request { id, request });
        match tokio::time::timeout(self.settings.request_timeout, rx).await {
            Ok(Ok(reply)) => {
                self.metrics
                    .relay_seconds
                    .observe(started.elapsed().as_secs_f64());
                Ok(reply)
            }
            Ok(Err(_)) => Err(ClusterError::Gone(to.clone()).failure()),
            Err(_) => {
                lock(&self.pending).remove(&id);
                // The owner may be gone: look it up again next time.
                lock(&self.owners).retain(|_, owner| owner != to);
                Err(ClusterError::Timeout(to.clone()).failure())
            }
        }
    }

    // ---- the inbox ---------------------------------------------------------------------

    /// Serves what other nodes send until the cluster's inbox closes.
    pub fn spawn_inbox(self: &Arc<Self>) {
        let Some(mut inbox) = self.cluster.inbox() else {
            return;
        };
        let router = self.clone();
        tokio::spawn(async move {
            while let Some(envelope) = inbox.recv().await {
                router.on_message(envelope).await;
            }
        });
    }

    /// Handles one message. Hub commands are queued here, in arrival order; only the waits for
    /// their answers run on their own tasks.
    async fn on_message(self: &Arc<Self>, envelope: Envelope) {
        let Envelope { from, body } = envelope;
        let mine = &from == self.node();
        if !matches!(body, Body::Resync | Body::NodeGone { .. }) {
            self.metrics.relayed.with_label_values(&["in"]).inc();
        }
        match body {
            Body::Request { id, request } => self.on_request(from, id, request).await,
            Body::Reply { id, reply } => {
                if let Some((_, tx)) = lock(&self.pending).remove(&id) {
                    let _ = tx.send(reply);
                }
            }
            Body::Deliver { conn, event } => {
                if let Some(event) = event.event() {
                    self.hub.deliver_to(conn, event).await;
                }
            }
            // What this node fanned out itself it delivered already.
            Body::ToDevices { .. } | Body::Presence { .. } if mine => {}
            Body::ToDevices {
                user,
                except,
                event,
            } => {
                if let Some(event) = event.event() {
                    self.hub.deliver_to_local_devices(user, except, event).await;
                }
            }
            Body::Presence { user, event } => {
                if let Some(event) = event.event() {
                    self.hub.remote_presence(user, event).await;
                }
            }
            Body::DeviceLeft { conn } => self.hub.disconnect(conn, Elsewhere::Nowhere).await,
            Body::OwnerChanged {
                space,
                owner,
                conns,
            } => {
                self.remember(&space, &owner);
                for conn in conns {
                    self.route(conn, &owner);
                }
            }
            Body::Adopt {
                space,
                previous,
                reason,
                snapshot,
            } => self.adopt(space, previous, reason, snapshot).await,
            Body::NodeGone { node } => {
                // Whoever waits on the dead node hears so now (dropping the sender fails the
                // wait), and can retry while its space moves, rather than after the timeout.
                lock(&self.pending).retain(|_, (to, _)| *to != node);
                self.hub.forget_node(node.clone()).await;
                lock(&self.owners).retain(|_, owner| *owner != node);
                for nodes in lock(&self.routes).values_mut() {
                    nodes.remove(&node);
                }
            }
            Body::Resync => self.resync().await,
            Body::Revoked { .. } if mine => {}
            Body::Revoked { revocation } => self.revocations.adopt(&revocation).await,
            Body::WebhooksChanged if mine => {}
            Body::WebhooksChanged => self.webhook_changes.notify_one(),
        }
    }

    /// Tells every other node that this one changed the stored webhook endpoints, so they
    /// read them at once (see [`Router::webhook_changes`]).
    pub fn announce_webhook_change(&self) {
        if !self.solo() {
            self.cluster.broadcast(Body::WebhooksChanged);
        }
    }

    /// Signalled when another node announces a change of the stored webhook endpoints; the
    /// binary's endpoint sync waits on it beside its timer.
    pub fn webhook_changes(&self) -> Arc<tokio::sync::Notify> {
        self.webhook_changes.clone()
    }

    /// Tells every other node about a revocation taken here, and keeps it in the shared state
    /// for nodes that start later.
    pub fn announce_revocation(&self, revocation: &crate::revocation::Revocation) {
        if self.solo() {
            return;
        }
        self.cluster.broadcast(Body::Revoked {
            revocation: revocation.clone(),
        });
        self.keep_revocation(revocation);
    }

    fn keep_revocation(&self, revocation: &crate::revocation::Revocation) {
        if let Ok(json) = serde_json::to_string(revocation) {
            self.cluster.write(StateWrite::Revocation {
                json,
                expires_at: revocation.expires_at,
            });
        }
    }

    /// Applies the revocations the shared state holds (taken on other nodes, maybe while this
    /// one was down), and writes back this node's own (Redis may have lost them).
    pub async fn sync_revocations(&self) {
        if self.solo() {
            return;
        }
        match self.cluster.revocations().await {
            Ok(shared) => {
                for json in shared {
                    if let Ok(r) = serde_json::from_str(&json) {
                        self.revocations.adopt(&r).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the cluster's revocations"),
        }
        for r in self.revocations.list() {
            self.keep_revocation(&r);
        }
    }

    async fn on_request(&self, from: NodeId, id: u64, request: Request) {
        match request {
            Request::Event {
                guest,
                name,
                data,
                placed,
            } => {
                let event = match ClientEvent::parse(&name, data) {
                    Ok(event) => event,
                    Err(failure) => {
                        self.reply(
                            &from,
                            id,
                            Reply::Ack {
                                result: Err(failure),
                            },
                        );
                        return;
                    }
                };
                let rx = self
                    .hub
                    .guest_event(guest, from.clone(), event, placed)
                    .await;
                let cluster = self.cluster.clone();
                tokio::spawn(async move {
                    let result = rx.await.unwrap_or_else(|_| Err(gone()));
                    send_reply(&*cluster, &from, id, Reply::Ack { result });
                });
            }
            Request::Media {
                guest,
                space,
                request,
            } => {
                let rx = self
                    .hub
                    .guest_media(guest, from.clone(), space, request)
                    .await;
                let cluster = self.cluster.clone();
                tokio::spawn(async move {
                    let result = match rx.await.unwrap_or_else(|_| Err(gone())) {
                        Ok((seat, answer)) => answer.await.map(|a| (seat.space, a)),
                        Err(e) => Err(e),
                    };
                    send_reply(&*cluster, &from, id, Reply::Media { result });
                });
            }
            Request::DeviceArrived { guest } => self.hub.guest_arrived(guest, from).await,
        }
    }

    fn reply(&self, to: &NodeId, id: u64, reply: Reply) {
        send_reply(&*self.cluster, to, id, reply);
    }

    /// Takes over `space`: from the snapshot sent along (drain) or the one in Redis (crash).
    async fn adopt(
        &self,
        space: CallId,
        previous: NodeId,
        reason: MoveReason,
        snapshot: Option<String>,
    ) {
        let json = match snapshot {
            Some(json) => Some(json),
            None => self.cluster.snapshot(&space).await.ok().flatten(),
        };
        let Some(snapshot) = json.and_then(|j| serde_json::from_str::<SpaceSnapshot>(&j).ok())
        else {
            tracing::warn!(%space, "no snapshot to adopt the space from; its participants must rejoin");
            return;
        };
        // The guests' nodes learn the new owner before the hub tells the guests `media:moved`
        // (both travel this node's one ordered publish queue): the fresh offer a client sends
        // on `media:moved` must not go to the old owner, which may still be draining.
        self.remember(&space, self.node());
        let mut guests: BTreeMap<NodeId, Vec<ConnectionId>> = BTreeMap::new();
        for seat in snapshot.seats() {
            if seat.home != previous && &seat.home != self.node() {
                guests.entry(seat.home.clone()).or_default().push(seat.conn);
            }
        }
        for (home, conns) in guests {
            self.cluster.send(
                &home,
                Body::OwnerChanged {
                    space: space.clone(),
                    owner: self.node().clone(),
                    conns,
                },
            );
        }
        if self
            .hub
            .adopt(snapshot, previous.clone(), reason)
            .await
            .is_err()
        {
            return;
        }
        if let Err(e) = self.cluster.claim(&space).await {
            tracing::warn!(%space, error = %e, "adopted a space whose ownership could not be recorded");
        }
        self.metrics
            .moves
            .with_label_values(&[reason.as_str()])
            .inc();
        tracing::info!(%space, from = %previous, reason = reason.as_str(), "adopted");
    }

    /// Redis came back (maybe empty): write again what this node holds.
    async fn resync(&self) {
        let devices = self.hub.local_devices().await.unwrap_or_default();
        for (conn, identity) in &devices {
            // Listening is in place before the device shows again: a node that sees the
            // device and rings its channel from then on reaches it. A ring published before,
            // while the device was not shown, is found below in the call index.
            let _ = self
                .cluster
                .listened(Interest::Devices(identity.user_id.clone()))
                .await;
            let _ = self.cluster.device_up(&identity.user_id, *conn).await;
        }
        if let Ok(owned) = self.hub.owned().await {
            for space in owned {
                let _ = self.cluster.claim(&space).await;
            }
        }
        self.hub.restate().await;
        self.sync_revocations().await;
        // A call placed on another node while this one was away from Redis rang its users'
        // channels before this node listened again: ring these devices from the call index.
        for (conn, identity) in &devices {
            self.ring_elsewhere(*conn, identity).await;
        }
    }

    /// Hands every space owned here to live nodes (drain): each new owner adopts it from the
    /// snapshot sent along, and this node forgets it without ending it.
    pub async fn hand_over_all(&self) {
        if self.solo() {
            return;
        }
        let Ok(owned) = self.hub.owned().await else {
            return;
        };
        for space in owned {
            let target = match self.cluster.hand_over(&space).await {
                Ok(target) => target,
                Err(e) => {
                    tracing::warn!(%space, error = %e, "could not hand the space over; it ends with this node");
                    continue;
                }
            };
            let snapshot = match self.hub.snapshot(space.clone()).await {
                Ok(Some(s)) => serde_json::to_string(&s).ok(),
                _ => None,
            };
            self.cluster.send(
                &target,
                Body::Adopt {
                    space: space.clone(),
                    previous: self.node().clone(),
                    reason: MoveReason::NodeDrained,
                    snapshot,
                },
            );
            self.hub.release(space.clone()).await;
            tracing::info!(%space, to = %target, "handed over");
        }
    }

    /// Reports the load to the registry and updates the gauges.
    pub async fn observe(&self) {
        self.metrics.nodes.set(self.cluster.nodes().len() as i64);
        if let Ok(stats) = self.hub.stats().await {
            // Every connection in the hub takes part in something here: local devices and
            // guests in spaces this node owns.
            self.cluster.report_load(super::Load {
                participants: stats.connections as u32,
                cpu_percent: 0,
            });
            self.metrics
                .owned
                .with_label_values(&["call"])
                .set(stats.calls as i64);
            self.metrics
                .owned
                .with_label_values(&["room"])
                .set(stats.rooms as i64);
        }
    }
}

/// A registered connection; see [`Router::register`].
pub struct Registration {
    router: Arc<Router>,
    conn: ConnectionId,
    user: UserId,
    live: bool,
}

impl Registration {
    pub fn conn(&self) -> ConnectionId {
        self.conn
    }

    /// The connection ended: forget it.
    pub async fn disconnect(mut self) {
        self.live = false;
        self.router.disconnect(self.conn, &self.user).await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.live
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (router, conn, user) = (self.router.clone(), self.conn, self.user.clone());
            runtime.spawn(async move { router.disconnect(conn, &user).await });
        }
    }
}

fn send_reply(cluster: &dyn Cluster, to: &NodeId, id: u64, reply: Reply) {
    // Id 0 marks a request that wants no reply.
    if id != 0 {
        cluster.send(to, Body::Reply { id, reply });
    }
}

/// A presence known only as "offline" here, completed from the shared record.
fn merge(p: Presence, record: Option<&str>, devices: usize) -> Presence {
    let record: Option<PresenceRecord> = record.and_then(|r| serde_json::from_str(r).ok());
    match record {
        Some(r) if devices > 0 => Presence {
            status: r.status,
            text: r.text,
            last_seen_at: None,
            ..p
        },
        _ => p,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn gone() -> Failure {
    Failure::new(ErrorCode::ShuttingDown, "the server is stopping")
}

fn unexpected() -> Failure {
    Failure::new(
        ErrorCode::Internal,
        "another node answered with something unexpected",
    )
}
