//! Several nodes sharing one Redis (`fred`); see ADR 0060 for the design.
//!
//! Keys and channels, all under `cluster.key_prefix` (`P`):
//!
//! | key or channel | what |
//! |---|---|
//! | `P:nodes` (hash) | node id → its heartbeat ([`NodeInfo`] JSON) |
//! | `P:owner:{space}` | the node owning a call or room |
//! | `P:node-spaces:{node}` (set) | the spaces a node owns, for adoption after it dies |
//! | `P:space:{space}` | the owner's latest snapshot of the space (1 day TTL, refreshed) |
//! | `P:devices:{user}` (set) | `node/conn` of each of the user's devices |
//! | `P:node-devices:{node}` (set) | `user` and `conn` of each device on a node |
//! | `P:user-calls:{user}` (set) | the calls a user is involved in |
//! | `P:user-seats:{user}` (set) | the calls a user takes part in (their call quota) |
//! | `P:presence:{user}` | the user's presence record (1 day TTL) |
//! | `P:adopt:{node}` | who adopts a dead node's spaces (a 30 s lock) |
//! | `P:rate:{bucket}` | a cluster-wide token bucket (chat's per-user send rate) |
//! | channel `P:node:{node}` | messages for one node |
//! | channel `P:user:{user}` | deliveries to every device of a user |
//! | channel `P:presence:{user}` | a user's presence events |
//! | channel `P:all` | messages for every node |
//!
//! Lifecycle: [`RedisCluster::connect`] connects two clients (commands and publishing; pub/sub
//! subscriptions), subscribes to this node's channels, writes the first heartbeat and starts
//! the background tasks: the publisher (messages in queue order, pipelined), the subscription
//! manager (listen/unlisten in queue order), the state writer, and the registry watch
//! (heartbeats, health, dead nodes, Redis coming back). They run until the process ends.
//!
//! Redis being away never blocks a caller for long: commands fail after one second, queued
//! messages and writes are dropped with a counted error, and the node reports
//! [`Health::Degraded`]. fred reconnects every 500 ms; once a heartbeat goes through again the
//! node subscribes to its channels again and waits for it, and only then writes back what it
//! holds ([`Body::Resync`] to its own router). A subscriber that lost its connection and got it
//! back on its own, between two looks, makes the node catch up the same way (ADR 0092).
//!
//! Order between the two connections: the publisher sends a ring (`send_to_devices`) only after
//! the state writes queued before it are done, so the call index entry recording the call is
//! in Redis before any node can hear the ring (ADR 0091).

use super::message::{Body, Envelope, MoveReason};
use super::{
    Cluster, ClusterError, DeviceCount, Health, Interest, Load, NodeId, NodeInfo, StateWrite,
    Topology,
};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use prometheus::{IntCounter, IntGauge, Registry};
use protocol::{CallId, ConnectionId, PresenceStatus, ServerEvent, UserId, UserOffline};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// How long a command may wait on Redis before it fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect attempts every this many milliseconds, forever.
const RECONNECT_DELAY_MS: u32 = 500;
/// Snapshots, presence records and call indexes outlive a forgotten write by this much.
const STATE_TTL_SECS: i64 = 24 * 3600;
/// How long a node holds the right to adopt a dead node's spaces.
const ADOPT_LOCK_MS: i64 = 30_000;
/// How often the registry is read (dead nodes, health).
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// See the module docs.
pub struct RedisCluster {
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    subscriptions: mpsc::UnboundedSender<Subscription>,
    writes: mpsc::UnboundedSender<(WriteSeq, StateWrite)>,
    /// The number of the last write queued (writes are numbered from 1). Held while the write
    /// is sent, so the queue holds writes in the order of their numbers.
    writes_queued: Mutex<WriteSeq>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Envelope>>>,
}

/// A state write's place in the write queue; 0 is before any write.
type WriteSeq = u64;

/// What the tasks share.
struct Shared {
    node: NodeId,
    url: String,
    keys: Keys,
    client: Client,
    heartbeat: Duration,
    node_timeout: Duration,
    /// `cluster.local_preference`: see [`Shared::placement`].
    local_preference: u64,
    /// Live nodes as of the last registry read.
    nodes: RwLock<Vec<NodeInfo>>,
    load: Mutex<Load>,
    draining: AtomicBool,
    healthy: AtomicBool,
    /// Checked with each heartbeat: the node counts as back only once deliveries reach it again.
    subscriber: SubscriberClient,
    /// Relayed messages out (see where it is built); checked with the subscriber.
    publisher: Client,
    /// Envelopes for this node's router: from the subscriber, and local signals.
    inbox: mpsc::UnboundedSender<Envelope>,
    /// The last state write done (applied or failed), for publishes that must follow writes.
    writes_done: tokio::sync::watch::Sender<WriteSeq>,
    metrics: RedisMetrics,
}

#[derive(Clone)]
struct RedisMetrics {
    errors: IntCounter,
    reconnects: IntCounter,
    up: IntGauge,
}

/// A message to publish.
struct Outgoing {
    channel: String,
    payload: String,
    /// Not published before the state writes queued up to this one are done (0: no wait).
    after_write: WriteSeq,
}

enum Subscription {
    Listen(String, Option<oneshot::Sender<Result<(), ClusterError>>>),
    Unlisten(String),
}

/// Key and channel names.
#[derive(Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }
    fn owner(&self, space: &CallId) -> String {
        format!("{}owner:{space}", self.prefix)
    }
    fn node_spaces(&self, node: &NodeId) -> String {
        format!("{}node-spaces:{node}", self.prefix)
    }
    fn space(&self, space: &CallId) -> String {
        format!("{}space:{space}", self.prefix)
    }
    fn devices(&self, user: &UserId) -> String {
        format!("{}devices:{user}", self.prefix)
    }
    fn node_devices(&self, node: &NodeId) -> String {
        format!("{}node-devices:{node}", self.prefix)
    }
    fn user_calls(&self, user: &UserId) -> String {
        format!("{}user-calls:{user}", self.prefix)
    }
    fn user_seats(&self, user: &UserId) -> String {
        format!("{}user-seats:{user}", self.prefix)
    }
    fn presence_record(&self, user: &UserId) -> String {
        format!("{}presence:{user}", self.prefix)
    }
    fn adopt(&self, node: &NodeId) -> String {
        format!("{}adopt:{node}", self.prefix)
    }
    fn node_channel(&self, node: &NodeId) -> String {
        format!("{}node:{node}", self.prefix)
    }
    fn all_channel(&self) -> String {
        format!("{}all", self.prefix)
    }
    fn revocations(&self) -> String {
        format!("{}revocations", self.prefix)
    }
    fn interest(&self, interest: &Interest) -> String {
        match interest {
            Interest::Devices(u) => format!("{}user:{u}", self.prefix),
            Interest::Presence(u) => format!("{}presence:{u}", self.prefix),
        }
    }
}

/// `SET owner new` only if it is `old` now; 1 when it moved.
const MOVE_OWNER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SREM', KEYS[2], ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[3])
  return 1
end
return 0";

/// Drops a space's records if this node still owns it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
return 1";

/// A token bucket as GCRA on Redis's clock: the bucket's key holds when it is full again
/// (milliseconds). Returns -1 when a token was taken, else the wait in milliseconds.
const TAKE_TOKEN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local full = tonumber(redis.call('GET', KEYS[1]) or now)
if full < now then full = now end
if full - now > tolerance then return full - now - tolerance end
full = full + interval
redis.call('SET', KEYS[1], full, 'PX', math.ceil(full - now) + 1000)
return -1";

/// Adds a device and counts the user's devices.
const DEVICE_UP: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return redis.call('SCARD', KEYS[1])";

/// Removes a device and counts the user's devices left.
const DEVICE_DOWN: &str = r"
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
return redis.call('SCARD', KEYS[1])";

impl RedisCluster {
    /// Connects to `config.redis_url` and starts the node; see the module docs. `url` is where
    /// operators reach this node's HTTP listener, shown in the registry.
    pub async fn connect(
        config: &config::ClusterConfig,
        url: String,
        registry: &Registry,
    ) -> Result<Arc<Self>, String> {
        let node = if config.node_id.is_empty() {
            NodeId::generate()
        } else {
            NodeId::new(&config.node_id)
        };
        let redis = Config::from_url(&config.redis_url)
            .map_err(|e| format!("invalid `cluster.redis_url`: {e}"))?;
        let builder = || {
            let mut b = Builder::from_config(redis.clone());
            b.with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
                // Subscribers read fast; a burst must not overflow fred's broadcast channel.
                p.broadcast_channel_capacity = 1 << 16;
            })
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 1;
            })
            .set_policy(ReconnectPolicy::new_constant(0, RECONNECT_DELAY_MS));
            b
        };
        let client = builder()
            .build()
            .map_err(|e| format!("cannot build the Redis client: {e}"))?;
        // Relayed messages get a connection of their own: at a high relay rate they would queue
        // ahead of the heartbeat and registry reads, whose timeouts then mark Redis unreachable.
        let publisher = builder()
            .build()
            .map_err(|e| format!("cannot build the Redis publisher: {e}"))?;
        let subscriber = builder()
            .build_subscriber_client()
            .map_err(|e| format!("cannot build the Redis subscriber: {e}"))?;
        client
            .init()
            .await
            .map_err(|e| format!("cannot reach Redis at `cluster.redis_url`: {e}"))?;
        publisher
            .init()
            .await
            .map_err(|e| format!("cannot reach Redis at `cluster.redis_url`: {e}"))?;
        subscriber
            .init()
            .await
            .map_err(|e| format!("cannot reach Redis at `cluster.redis_url`: {e}"))?;
        let _resubscribe = subscriber.manage_subscriptions();

        let metrics = RedisMetrics::register(registry).map_err(|e| e.to_string())?;
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            node: node.clone(),
            url,
            keys: Keys {
                prefix: config.key_prefix.clone(),
            },
            client,
            heartbeat: config.heartbeat_interval.get(),
            node_timeout: config.node_timeout.get(),
            local_preference: u64::from(config.local_preference),
            nodes: RwLock::new(Vec::new()),
            load: Mutex::new(Load::default()),
            draining: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            subscriber: subscriber.clone(),
            publisher,
            inbox: inbox_tx,
            writes_done: tokio::sync::watch::Sender::new(0),
            metrics,
        });
        shared.metrics.up.set(1);

        spawn_receiver(shared.clone(), subscriber.clone());
        for channel in [shared.keys.node_channel(&node), shared.keys.all_channel()] {
            subscriber
                .subscribe(channel)
                .await
                .map_err(|e| format!("cannot subscribe to this node's channels: {e}"))?;
        }
        shared
            .heartbeat()
            .await
            .map_err(|e| format!("cannot register this node: {e}"))?;
        shared.read_registry().await;

        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        tokio::spawn(publish(shared.clone(), outgoing_rx));
        let (subscriptions, subscriptions_rx) = mpsc::unbounded_channel();
        tokio::spawn(manage(shared.clone(), subscriber, subscriptions_rx));
        let (writes, writes_rx) = mpsc::unbounded_channel();
        tokio::spawn(write(shared.clone(), writes_rx));
        tokio::spawn(watch(shared.clone()));
        tracing::info!(%node, prefix = %config.key_prefix, "joined the cluster");
        Ok(Arc::new(Self {
            shared,
            outgoing,
            subscriptions,
            writes,
            writes_queued: Mutex::new(0),
            inbox: Mutex::new(Some(inbox_rx)),
        }))
    }

    fn publish(&self, channel: String, body: Body) {
        self.publish_after(channel, body, 0);
    }

    /// [`RedisCluster::publish`], but not before the state writes queued so far are done.
    fn publish_after(&self, channel: String, body: Body, after_write: WriteSeq) {
        let envelope = Envelope {
            from: self.shared.node.clone(),
            body,
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            return;
        };
        let _ = self.outgoing.send(Outgoing {
            channel,
            payload,
            after_write,
        });
    }

    fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    fn client(&self) -> &Client {
        &self.shared.client
    }

    fn failed(&self, e: fred::error::Error) -> ClusterError {
        self.shared.metrics.errors.inc();
        ClusterError::Unavailable(e.to_string())
    }
}

#[async_trait::async_trait]
impl Cluster for RedisCluster {
    fn node(&self) -> &NodeId {
        &self.shared.node
    }

    fn topology(&self) -> Topology {
        Topology::Clustered
    }

    fn health(&self) -> Health {
        if self.shared.healthy.load(Ordering::Relaxed) {
            Health::Healthy
        } else {
            Health::Degraded
        }
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        read(&self.shared.nodes).clone()
    }

    fn report_load(&self, load: Load) {
        // CPU is measured here, at each heartbeat; the caller knows the participants.
        lock(&self.shared.load).participants = load.participants;
    }

    async fn drain(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        // At once, not at the next beat: nobody may place a call here from now on.
        if let Err(e) = self.shared.heartbeat().await {
            tracing::warn!(error = %e, "could not announce the drain; other nodes see it at the next heartbeat or when this node stops");
        }
    }

    async fn owner(&self, space: &CallId) -> Result<Option<NodeId>, ClusterError> {
        let owner: Option<String> = self
            .client()
            .get(self.keys().owner(space))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(owner.map(NodeId::new))
    }

    async fn place(&self, space: &CallId) -> Result<NodeId, ClusterError> {
        if let Some(owner) = self.owner(space).await? {
            return Ok(owner);
        }
        let target = self.shared.placement().ok_or(ClusterError::NoNode)?;
        let claimed: Option<String> = self
            .client()
            .set(
                self.keys().owner(space),
                target.as_str(),
                None,
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| self.failed(e))?;
        if claimed.is_none() {
            // Someone placed it first: theirs wins.
            return self.owner(space).await?.ok_or(ClusterError::NoNode);
        }
        let _: i64 = self
            .client()
            .sadd(self.keys().node_spaces(&target), space.as_str())
            .await
            .map_err(|e| self.failed(e))?;
        Ok(target)
    }

    async fn hand_over(&self, space: &CallId) -> Result<NodeId, ClusterError> {
        let me = self.shared.node.clone();
        let target = self
            .shared
            .least_loaded(Some(&me))
            .ok_or(ClusterError::NoNode)?;
        let moved = self.shared.move_owner(space, &me, &target).await?;
        if !moved {
            return Err(ClusterError::Unavailable(
                "the space is no longer owned here".into(),
            ));
        }
        Ok(target)
    }

    async fn claim(&self, space: &CallId) -> Result<(), ClusterError> {
        let me = self.shared.node.as_str();
        let pipeline = self.client().pipeline();
        let _: () = pipeline
            .set(self.keys().owner(space), me, None, None, false)
            .await
            .map_err(|e| self.failed(e))?;
        let _: () = pipeline
            .sadd(self.keys().node_spaces(&self.shared.node), space.as_str())
            .await
            .map_err(|e| self.failed(e))?;
        let _: Vec<Value> = pipeline.all().await.map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn snapshot(&self, space: &CallId) -> Result<Option<String>, ClusterError> {
        self.client()
            .get(self.keys().space(space))
            .await
            .map_err(|e| self.failed(e))
    }

    fn send(&self, to: &NodeId, body: Body) {
        if to == &self.shared.node {
            // To itself: straight into its own inbox, in order with nothing else.
            let _ = self.shared.inbox.send(Envelope {
                from: self.shared.node.clone(),
                body,
            });
            return;
        }
        self.publish(self.keys().node_channel(to), body);
    }

    fn send_to_devices(&self, user: &UserId, body: Body) {
        // A ring goes out after the call index that records it (queued just before), so a
        // node that did not hear the ring (it was subscribing again after losing Redis) finds
        // the call in the index when it looks right after subscribing.
        let after = *lock(&self.writes_queued);
        self.publish_after(
            self.keys().interest(&Interest::Devices(user.clone())),
            body,
            after,
        );
    }

    fn send_presence(&self, user: &UserId, body: Body) {
        self.publish(
            self.keys().interest(&Interest::Presence(user.clone())),
            body,
        );
    }

    fn broadcast(&self, body: Body) {
        self.publish(self.keys().all_channel(), body);
    }

    fn listen(&self, interest: Interest) {
        let _ = self
            .subscriptions
            .send(Subscription::Listen(self.keys().interest(&interest), None));
    }

    fn unlisten(&self, interest: Interest) {
        let _ = self
            .subscriptions
            .send(Subscription::Unlisten(self.keys().interest(&interest)));
    }

    async fn listened(&self, interest: Interest) -> Result<(), ClusterError> {
        let (tx, rx) = oneshot::channel();
        let channel = self.keys().interest(&interest);
        let _ = self
            .subscriptions
            .send(Subscription::Listen(channel, Some(tx)));
        rx.await
            .unwrap_or_else(|_| Err(ClusterError::Unavailable("stopped".into())))
    }

    async fn device_up(
        &self,
        user: &UserId,
        conn: ConnectionId,
    ) -> Result<DeviceCount, ClusterError> {
        let count: i64 = self
            .client()
            .eval(
                DEVICE_UP,
                vec![
                    self.keys().devices(user),
                    self.keys().node_devices(&self.shared.node),
                ],
                vec![device(&self.shared.node, conn), node_device(user, conn)],
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok(DeviceCount(count.max(0) as usize))
    }

    async fn device_down(
        &self,
        user: &UserId,
        conn: ConnectionId,
    ) -> Result<DeviceCount, ClusterError> {
        let count: i64 = self
            .client()
            .eval(
                DEVICE_DOWN,
                vec![
                    self.keys().devices(user),
                    self.keys().node_devices(&self.shared.node),
                ],
                vec![device(&self.shared.node, conn), node_device(user, conn)],
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok(DeviceCount(count.max(0) as usize))
    }

    async fn user_calls(&self, user: &UserId) -> Result<Vec<CallId>, ClusterError> {
        let calls: Vec<String> = self
            .client()
            .smembers(self.keys().user_calls(user))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(calls.into_iter().map(CallId).collect())
    }

    async fn seated_calls(&self, user: &UserId) -> Result<Vec<CallId>, ClusterError> {
        let calls: Vec<String> = self
            .client()
            .smembers(self.keys().user_seats(user))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(calls.into_iter().map(CallId).collect())
    }

    async fn presence(&self, user: &UserId) -> Result<(Option<String>, DeviceCount), ClusterError> {
        let pipeline = self.client().pipeline();
        let _: () = pipeline
            .get(self.keys().presence_record(user))
            .await
            .map_err(|e| self.failed(e))?;
        let _: () = pipeline
            .scard(self.keys().devices(user))
            .await
            .map_err(|e| self.failed(e))?;
        let (record, count): (Option<String>, i64) =
            pipeline.all().await.map_err(|e| self.failed(e))?;
        Ok((record, DeviceCount(count.max(0) as usize)))
    }

    async fn take_token(
        &self,
        bucket: &str,
        per_second: u32,
        burst: u32,
    ) -> Result<Option<Duration>, ClusterError> {
        let interval = 1000 / i64::from(per_second.max(1));
        let tolerance = interval * i64::from(burst.saturating_sub(1));
        let key = format!("{}rate:{bucket}", self.keys().prefix);
        let wait: i64 = self
            .client()
            .eval(TAKE_TOKEN, vec![key], vec![interval, tolerance])
            .await
            .map_err(|e| self.failed(e))?;
        Ok((wait >= 0).then(|| Duration::from_millis(wait as u64)))
    }

    fn write(&self, write: StateWrite) {
        let mut queued = lock(&self.writes_queued);
        *queued += 1;
        let _ = self.writes.send((*queued, write));
    }

    async fn revocations(&self) -> Result<Vec<String>, ClusterError> {
        let now = (now_ms() / 1000) as f64;
        self.client()
            .zrangebyscore(self.keys().revocations(), now, "+inf", false, None)
            .await
            .map_err(|e| self.failed(e))
    }

    fn inbox(&self) -> Option<mpsc::UnboundedReceiver<Envelope>> {
        lock(&self.inbox).take()
    }
}

impl Shared {
    /// Writes this node's heartbeat.
    async fn heartbeat(&self) -> Result<(), fred::error::Error> {
        let load = *lock(&self.load);
        let info = NodeInfo {
            id: self.node.clone(),
            url: self.url.clone(),
            participants: load.participants,
            cpu_percent: load.cpu_percent,
            draining: self.draining.load(Ordering::Relaxed),
            heartbeat_ms: now_ms(),
        };
        let json = serde_json::to_string(&info).unwrap_or_default();
        let _: i64 = self
            .client
            .hset(self.keys.nodes(), (self.node.as_str(), json))
            .await?;
        Ok(())
    }

    /// Reads the registry: the live nodes, and those whose heartbeat is too old.
    async fn read_registry(&self) -> Vec<NodeInfo> {
        let all: std::collections::HashMap<String, String> =
            match self.client.hgetall(self.keys.nodes()).await {
                Ok(all) => all,
                Err(_) => return Vec::new(),
            };
        let now = now_ms();
        let timeout = self.node_timeout.as_millis() as u64;
        let (live, dead): (Vec<NodeInfo>, Vec<NodeInfo>) = all
            .values()
            .filter_map(|json| serde_json::from_str::<NodeInfo>(json).ok())
            .partition(|n| now.saturating_sub(n.heartbeat_ms) <= timeout || n.id == self.node);
        *write_lock(&self.nodes) = live;
        dead
    }

    /// Where a new space goes: this node when its load is within `cluster.local_preference` of the
    /// least loaded live node, else the least loaded one. The space's first members are usually
    /// connected here, and a space owned where its members are needs no relay and keeps working
    /// while Redis is away.
    fn placement(&self) -> Option<NodeId> {
        let least = self.least_loaded(None)?;
        let score = |n: &NodeInfo| u64::from(n.participants) + u64::from(n.cpu_percent);
        let nodes = read(&self.nodes);
        let least_score = nodes.iter().find(|n| n.id == least).map(score)?;
        let local = nodes
            .iter()
            .find(|n| n.id == self.node && !n.draining && !self.draining.load(Ordering::Relaxed));
        Some(match local {
            Some(me) if score(me) <= least_score.saturating_add(self.local_preference) => {
                me.id.clone()
            }
            _ => least,
        })
    }

    /// The live, non-draining node with the least load, other than `except`.
    fn least_loaded(&self, except: Option<&NodeId>) -> Option<NodeId> {
        read(&self.nodes)
            .iter()
            .filter(|n| !n.draining && Some(&n.id) != except)
            .filter(|n| n.id != self.node || !self.draining.load(Ordering::Relaxed))
            .min_by_key(|n| {
                (
                    u64::from(n.participants) + u64::from(n.cpu_percent),
                    n.id.clone(),
                )
            })
            .map(|n| n.id.clone())
    }

    async fn move_owner(
        &self,
        space: &CallId,
        from: &NodeId,
        to: &NodeId,
    ) -> Result<bool, ClusterError> {
        let moved: i64 = self
            .client
            .eval(
                MOVE_OWNER,
                vec![
                    self.keys.owner(space),
                    self.keys.node_spaces(from),
                    self.keys.node_spaces(to),
                ],
                vec![from.as_str(), to.as_str(), space.as_str()],
            )
            .await
            .map_err(|e| {
                self.metrics.errors.inc();
                ClusterError::Unavailable(e.to_string())
            })?;
        Ok(moved == 1)
    }

    /// A dead node's spaces go to live nodes, its devices leave the directory (users with no
    /// device left go offline), and its registry entry goes. Only the node holding the adopt
    /// lock does this; every node forgets the dead node's guests.
    async fn bury(&self, dead: &NodeInfo) {
        let won: Option<String> = self
            .client
            .set(
                self.keys.adopt(&dead.id),
                self.node.as_str(),
                Some(Expiration::PX(ADOPT_LOCK_MS)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .unwrap_or(None);
        if won.is_none() {
            return;
        }
        tracing::warn!(node = %dead.id, "node stopped answering; moving its calls and rooms");
        let spaces: Vec<String> = self
            .client
            .smembers(self.keys.node_spaces(&dead.id))
            .await
            .unwrap_or_default();
        for space in spaces.into_iter().map(CallId) {
            let Some(target) = self.least_loaded(Some(&dead.id)) else {
                tracing::warn!(%space, "no live node to adopt it");
                continue;
            };
            match self.move_owner(&space, &dead.id, &target).await {
                Ok(true) => {
                    let adopt = Body::Adopt {
                        space,
                        previous: dead.id.clone(),
                        reason: MoveReason::NodeFailed,
                        snapshot: None,
                    };
                    self.send_envelope(&target, self.node.clone(), adopt).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(%space, error = %e, "could not move the space"),
            }
        }
        let devices: Vec<String> = self
            .client
            .smembers(self.keys.node_devices(&dead.id))
            .await
            .unwrap_or_default();
        for entry in devices {
            let Some((user, conn)) = entry.split_once('\t') else {
                continue;
            };
            let user = UserId::from(user);
            let Ok(conn) = conn.parse::<u64>() else {
                continue;
            };
            let left: i64 = self
                .client
                .eval(
                    DEVICE_DOWN,
                    vec![self.keys.devices(&user), self.keys.node_devices(&dead.id)],
                    vec![device(&dead.id, ConnectionId(conn)), entry.clone()],
                )
                .await
                .unwrap_or(1);
            if left == 0 {
                // The user's last device was on the dead node: tell whoever watches them, as
                // the dead node would have (so this node's own watchers hear it too).
                let event = ServerEvent::UserOffline(UserOffline {
                    user_id: user.clone(),
                    last_seen_at: crate::hub::rfc3339(SystemTime::now()),
                });
                let body = Body::Presence {
                    user: user.clone(),
                    event: super::WireEvent::of(&event),
                };
                self.publish_as(
                    &dead.id,
                    self.keys.interest(&Interest::Presence(user.clone())),
                    body,
                )
                .await;
                let record = crate::hub::cluster::PresenceRecord {
                    status: PresenceStatus::Offline,
                    text: None,
                    manual: false,
                };
                let _: Result<(), _> = self
                    .client
                    .set(
                        self.keys.presence_record(&user),
                        serde_json::to_string(&record).unwrap_or_default(),
                        Some(Expiration::EX(STATE_TTL_SECS)),
                        None,
                        false,
                    )
                    .await;
            }
        }
        let _: Result<i64, _> = self
            .client
            .del(vec![
                self.keys.node_devices(&dead.id),
                self.keys.node_spaces(&dead.id),
            ])
            .await;
        let _: Result<i64, _> = self.client.hdel(self.keys.nodes(), dead.id.as_str()).await;
        // Every node forgets the dead node's guests (this one through its own inbox, as the
        // broadcast skips nothing but is only heard while subscribed).
        let gone = Body::NodeGone {
            node: dead.id.clone(),
        };
        self.publish_as(&self.node, self.keys.all_channel(), gone)
            .await;
    }

    async fn send_envelope(&self, to: &NodeId, from: NodeId, body: Body) {
        if to == &self.node {
            let _ = self.inbox.send(Envelope { from, body });
        } else {
            self.publish_as(&from, self.keys.node_channel(to), body)
                .await;
        }
    }

    async fn publish_as(&self, from: &NodeId, channel: String, body: Body) {
        let envelope = Envelope {
            from: from.clone(),
            body,
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            return;
        };
        if let Err(e) = self.client.publish::<i64, _, _>(channel, payload).await {
            self.metrics.errors.inc();
            tracing::debug!(error = %e, "publish failed");
        }
    }
}

impl RedisMetrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let errors = IntCounter::new(
            "chorus_cluster_redis_errors_total",
            "Redis commands and publishes that failed",
        )?;
        let reconnects = IntCounter::new(
            "chorus_cluster_redis_reconnects_total",
            "Times Redis came back after being unreachable",
        )?;
        let up = IntGauge::new(
            "chorus_cluster_redis_up",
            "1 while Redis answers this node, 0 while it does not",
        )?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(reconnects.clone()))?;
        registry.register(Box::new(up.clone()))?;
        Ok(Self {
            errors,
            reconnects,
            up,
        })
    }
}

/// Messages from the subscriber into the inbox.
fn spawn_receiver(shared: Arc<Shared>, subscriber: SubscriberClient) {
    let mut messages = subscriber.message_rx();
    tokio::spawn(async move {
        loop {
            match messages.recv().await {
                Ok(message) => {
                    let Some(text) = message.value.as_str() else {
                        continue;
                    };
                    match serde_json::from_str::<Envelope>(&text) {
                        Ok(envelope) => {
                            let _ = shared.inbox.send(envelope);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, channel = %message.channel, "unreadable cluster message");
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    shared.metrics.errors.inc();
                    tracing::warn!(
                        missed,
                        "cluster messages were missed: the receiver fell behind"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Publishes messages in queue order, a pipeline per batch.
async fn publish(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut batch = Vec::with_capacity(256);
    let mut writes_done = shared.writes_done.subscribe();
    while rx.recv_many(&mut batch, 256).await > 0 {
        // Queue order holds, so a message that waits for writes holds back those after it.
        // Each write ends within COMMAND_TIMEOUT, applied or failed, so the wait is bounded.
        let after_write = batch.iter().map(|m| m.after_write).max().unwrap_or(0);
        let _ = writes_done.wait_for(|done| *done >= after_write).await;
        let pipeline = shared.publisher.pipeline();
        for m in batch.drain(..) {
            let _: Result<(), _> = pipeline.publish(m.channel, m.payload).await;
        }
        if let Err(e) = pipeline.all::<Vec<Value>>().await {
            shared.metrics.errors.inc();
            tracing::debug!(error = %e, "cluster messages lost: Redis is unreachable");
        }
    }
}

/// Subscribes and unsubscribes in queue order.
async fn manage(
    shared: Arc<Shared>,
    subscriber: SubscriberClient,
    mut rx: mpsc::UnboundedReceiver<Subscription>,
) {
    let mut listening: HashSet<String> = HashSet::new();
    while let Some(sub) = rx.recv().await {
        match sub {
            Subscription::Listen(channel, ack) => {
                let result = if listening.contains(&channel) {
                    Ok(())
                } else {
                    match subscriber.subscribe(channel.clone()).await {
                        Ok(()) => {
                            listening.insert(channel);
                            Ok(())
                        }
                        Err(e) => {
                            shared.metrics.errors.inc();
                            Err(ClusterError::Unavailable(e.to_string()))
                        }
                    }
                };
                if let Some(ack) = ack {
                    let _ = ack.send(result);
                }
            }
            Subscription::Unlisten(channel) => {
                if listening.remove(&channel)
                    && let Err(e) = subscriber.unsubscribe(channel).await
                {
                    shared.metrics.errors.inc();
                    tracing::debug!(error = %e, "unsubscribe failed");
                }
            }
        }
    }
}

/// Writes shared state in queue order.
async fn write(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<(WriteSeq, StateWrite)>) {
    let keys = shared.keys.clone();
    let me = shared.node.clone();
    while let Some((seq, write)) = rx.recv().await {
        let result: Result<(), fred::error::Error> = async {
            match write {
                StateWrite::Snapshot { space, json } => {
                    shared
                        .client
                        .set::<(), _, _>(
                            keys.space(&space),
                            json,
                            Some(Expiration::EX(STATE_TTL_SECS)),
                            None,
                            false,
                        )
                        .await
                }
                StateWrite::Released { space } => shared
                    .client
                    .eval::<i64, _, _, _>(
                        RELEASE,
                        vec![
                            keys.owner(&space),
                            keys.space(&space),
                            keys.node_spaces(&me),
                        ],
                        vec![me.as_str(), space.as_str()],
                    )
                    .await
                    .map(|_| ()),
                StateWrite::UserCall {
                    user,
                    call,
                    involved,
                } => {
                    let member = involved == super::Involvement::Involved;
                    set_member(&shared, &keys.user_calls(&user), &call, member).await
                }
                StateWrite::Seat { user, call, seated } => {
                    let member = seated == super::Seated::In;
                    set_member(&shared, &keys.user_seats(&user), &call, member).await
                }
                StateWrite::Revocation { json, expires_at } => {
                    let key = keys.revocations();
                    let now = (now_ms() / 1000) as f64;
                    let _: i64 = shared
                        .client
                        .zadd(&key, None, None, false, false, (expires_at as f64, json))
                        .await?;
                    // Lapsed ones go as new ones come.
                    shared
                        .client
                        .zremrangebyscore::<i64, _, _, _>(&key, "-inf", now)
                        .await
                        .map(|_| ())
                }
                StateWrite::Presence { user, json } => {
                    shared
                        .client
                        .set::<(), _, _>(
                            keys.presence_record(&user),
                            json,
                            Some(Expiration::EX(STATE_TTL_SECS)),
                            None,
                            false,
                        )
                        .await
                }
            }
        }
        .await;
        if let Err(e) = result {
            shared.metrics.errors.inc();
            tracing::debug!(error = %e, "cluster state write lost: Redis is unreachable");
        }
        shared.writes_done.send_replace(seq);
    }
}

/// Adds `call` to the set `key` (which then lives [`STATE_TTL_SECS`] longer), or removes it.
async fn set_member(
    shared: &Shared,
    key: &str,
    call: &CallId,
    member: bool,
) -> Result<(), fred::error::Error> {
    if member {
        let pipeline = shared.client.pipeline();
        let _: () = pipeline.sadd(key, call.as_str()).await?;
        let _: () = pipeline.expire(key, STATE_TTL_SECS, None).await?;
        pipeline.all::<Vec<Value>>().await.map(|_| ())
    } else {
        shared
            .client
            .srem::<i64, _, _>(key, call.as_str())
            .await
            .map(|_| ())
    }
}

/// Heartbeats, the registry, health, dead nodes, and Redis coming back.
async fn watch(shared: Arc<Shared>) {
    let mut buried: HashSet<NodeId> = HashSet::new();
    let mut last_beat = std::time::Instant::now();
    let mut cpu = CpuMeter::new();
    // A heartbeat interval under a second (tests use 500 ms) must be kept too: other nodes
    // judge this one by `node_timeout`, a few intervals.
    let mut ticks = tokio::time::interval(WATCH_EVERY.min(shared.heartbeat));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The subscriber can lose its connection and get it back between two ticks while the
    // command connection never failed: the node stayed healthy, yet what was published to it
    // in that gap is gone. Each such reconnection counts as coming back (see below).
    let mut subscriber_reconnects = shared.subscriber.reconnect_rx();
    loop {
        ticks.tick().await;
        if last_beat.elapsed() + WATCH_EVERY / 2 >= shared.heartbeat {
            lock(&shared.load).cpu_percent = cpu.percent();
            last_beat = std::time::Instant::now();
        }
        // Only this task changes it.
        let was_healthy = shared.healthy.load(Ordering::Relaxed);
        let resubscribed = reconnected(&mut subscriber_reconnects);
        let beat = match shared.heartbeat().await {
            // The subscriber and the publisher reconnect on their own schedule: until both are
            // back, events from or for this node would be lost, so the node is not back yet.
            Ok(()) if !shared.subscriber.is_connected() || !shared.publisher.is_connected() => {
                Err("the subscriber or the publisher is reconnecting".to_owned())
            }
            // fred subscribes again as it reconnects, but in a task of its own that says
            // nothing when it is done; the state written back below tells other nodes to send
            // here, so the subscriptions must be in place first.
            Ok(()) if !was_healthy => shared
                .subscriber
                .resubscribe_all()
                .await
                .map_err(|e| format!("subscribing again: {e}")),
            beat => beat.map_err(|e| e.to_string()),
        };
        shared.healthy.store(beat.is_ok(), Ordering::Relaxed);
        match (&beat, was_healthy) {
            (Err(e), true) => {
                shared.metrics.up.set(0);
                shared.metrics.errors.inc();
                tracing::warn!(error = %e, "Redis is unreachable: local calls and rooms carry on; what crosses nodes fails until it is back");
                continue;
            }
            (Err(_), false) => continue,
            (Ok(()), false) => {
                shared.metrics.up.set(1);
                shared.metrics.reconnects.inc();
                tracing::info!("Redis is back: writing this node's state again");
                let _ = shared.inbox.send(Envelope {
                    from: shared.node.clone(),
                    body: Body::Resync,
                });
            }
            (Ok(()), true) if resubscribed => {
                // Only the subscriber was away, between two ticks: fred subscribed again, and
                // once that is sure the node catches up as after an outage (rings it missed
                // are found in the call index), without counting Redis as lost.
                if let Err(e) = shared.subscriber.resubscribe_all().await {
                    shared.metrics.errors.inc();
                    tracing::warn!(error = %e, "subscribing again after the subscriber reconnected");
                }
                tracing::warn!(
                    "the Redis subscriber reconnected: what was published to this node meanwhile is lost; catching up from the shared state"
                );
                let _ = shared.inbox.send(Envelope {
                    from: shared.node.clone(),
                    body: Body::Resync,
                });
            }
            (Ok(()), true) => {}
        }
        for dead in shared.read_registry().await {
            if dead.id == shared.node || !buried.insert(dead.id.clone()) {
                continue;
            }
            let _ = shared.inbox.send(Envelope {
                from: shared.node.clone(),
                body: Body::NodeGone {
                    node: dead.id.clone(),
                },
            });
            shared.bury(&dead).await;
        }
        // A node id that is live again (a restarted node keeping its name) may die again later.
        let live: HashSet<NodeId> = read(&shared.nodes).iter().map(|n| n.id.clone()).collect();
        buried.retain(|n| !live.contains(n));
    }
}

/// Whether the client reconnected since the last call (a lagging receiver missed some
/// reconnections, so it did too).
fn reconnected(rx: &mut tokio::sync::broadcast::Receiver<fred::types::config::Server>) -> bool {
    let mut any = false;
    loop {
        match rx.try_recv() {
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => any = true,
            Err(_) => return any,
        }
    }
}

/// This process's CPU use between two readings, in percent of one core.
struct CpuMeter {
    last: Option<(std::time::Instant, u64)>,
}

impl CpuMeter {
    fn new() -> Self {
        Self { last: None }
    }

    fn percent(&mut self) -> u32 {
        let Some(ticks) = process_ticks() else {
            return 0;
        };
        let now = std::time::Instant::now();
        let percent = match self.last {
            Some((at, before)) => {
                let secs = now.duration_since(at).as_secs_f64();
                let used = ticks.saturating_sub(before) as f64 / 100.0;
                if secs > 0.0 {
                    (used / secs * 100.0).round() as u32
                } else {
                    0
                }
            }
            None => 0,
        };
        self.last = Some((now, ticks));
        percent
    }
}

/// utime + stime of this process, in clock ticks (100 per second on Linux).
fn process_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn device(node: &NodeId, conn: ConnectionId) -> String {
    format!("{node}/{}", conn.0)
}

fn node_device(user: &UserId, conn: ConnectionId) -> String {
    format!("{user}\t{}", conn.0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}
