//! What crosses nodes: the cluster seam and its two implementations.
//!
//! A node is the **edge** of the connections it accepted and the **owner** of the calls and
//! rooms placed on it (ADR 0060). Each node's hub holds its own connections and presence and
//! exactly the spaces it owns; connections elsewhere that take part in an owned space appear in
//! the owner's hub as remote connections, and the owner's deliveries to them are relayed home.
//!
//! - [`Cluster`] is the seam: ownership and placement, messages between nodes, the device
//!   directory, and state written behind for other nodes (snapshots, indexes).
//! - [`Solo`] is the single node, the embedded default: it owns everything and talks to nobody.
//! - [`RedisCluster`] is several nodes sharing one Redis (`fred`).
//! - [`Router`] is the logic over the seam, the same for both: it sends each event to its
//!   space's owner (the local hub, or a request to another node) and feeds what other nodes send
//!   into the local hub.

mod message;
mod redis;
mod router;
mod solo;

pub use message::{Body, Envelope, Guest, MoveReason, Reply, Request, WireEvent};
pub use redis::RedisCluster;
pub use router::{Refusal, Registration, Router, RouterMetrics, RouterSettings};
pub use solo::Solo;

use protocol::{CallId, ConnectionId, ErrorCode, Failure, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A node of the cluster, by its configured (or generated) name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(Arc::from(name.as_ref()))
    }

    /// A fresh name for a node configured without one: `node-` and 8 hex digits.
    pub fn generate() -> Self {
        Self::new(format!("node-{:08x}", rand::random::<u32>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether other nodes exist at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One node: every space is owned here, nothing is ever sent.
    Solo,
    /// Several nodes sharing Redis.
    Clustered,
}

/// Whether the shared state (Redis) is reachable. Liveness never depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Redis is away: spaces whose members are all on this node carry on; what must cross
    /// nodes fails with `cluster_unavailable`.
    Degraded,
}

/// A cluster operation that could not be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Redis is unreachable (or answered with an error).
    #[error("the cluster's shared state is unreachable: {0}")]
    Unavailable(String),
    /// No live node can take the space.
    #[error("no live node can take it")]
    NoNode,
    /// The other node did not answer in time.
    #[error("node {0} did not answer in time")]
    Timeout(NodeId),
    /// The other node was declared dead while the request waited for it.
    #[error("node {0} stopped answering; its calls and rooms are moving")]
    Gone(NodeId),
}

impl ClusterError {
    /// How a client sees it.
    pub fn failure(&self) -> Failure {
        Failure::new(ErrorCode::ClusterUnavailable, self.to_string())
    }
}

/// A channel a node listens to for a while.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interest {
    /// Deliveries to every device of the user: while this node holds one of them.
    Devices(UserId),
    /// The user's presence events: while this node holds a device of the user, a watcher of
    /// the user, or a space the user is in.
    Presence(UserId),
}

/// A node as the registry shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub id: NodeId,
    /// Where operators reach its HTTP listener.
    pub url: String,
    /// Participants in the spaces it owns (the placement load).
    pub participants: u32,
    /// Its process CPU use over the last heartbeat interval, in percent of one core.
    pub cpu_percent: u32,
    pub draining: bool,
    /// Unix milliseconds of its last heartbeat.
    pub heartbeat_ms: u64,
}

/// What a node reports in its heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub participants: u32,
    pub cpu_percent: u32,
}

/// State other nodes need, written behind in the order it is queued.
#[derive(Clone, Debug, PartialEq)]
pub enum StateWrite {
    /// The space's snapshot (see [`crate::hub::snapshot`]), for adoption after a failure.
    Snapshot { space: CallId, json: String },
    /// The space ended here: drop its owner record, snapshot and index entry.
    Released { space: CallId },
    /// The user is now involved in `call` (rung, joined): their devices on other nodes ring.
    UserCall {
        user: UserId,
        call: CallId,
        involved: Involvement,
    },
    /// The user's presence record (status, text) as the other nodes should start from.
    Presence { user: UserId, json: String },
    /// A token revocation (JSON of [`crate::revocation::Revocation`]), kept until
    /// `expires_at` (Unix seconds) for nodes that start later.
    Revocation { json: String, expires_at: u64 },
    /// The user took part in `call` (initiated, accepted, joined) or stopped: the calls counted
    /// against `limits.max_calls_per_user` on every node.
    Seat {
        user: UserId,
        call: CallId,
        seated: Seated,
    },
}

/// Whether a user takes part in a call (counts toward their call quota).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seated {
    In,
    Out,
}

/// Whether a user is involved in a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Involvement {
    Involved,
    NotInvolved,
}

/// Where a user's devices are, across the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCount(pub usize);

/// The cluster seam; see the module docs.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// This node.
    fn node(&self) -> &NodeId;

    fn topology(&self) -> Topology;

    fn health(&self) -> Health;

    /// The live nodes, as of the last heartbeat round.
    fn nodes(&self) -> Vec<NodeInfo>;

    /// What this node reports in its heartbeats from now on.
    fn report_load(&self, load: Load);

    /// Marks this node draining: it is placed on no more.
    async fn drain(&self);

    /// The node owning `space`, if any.
    async fn owner(&self, space: &CallId) -> Result<Option<NodeId>, ClusterError>;

    /// The owner of `space`: the existing one, or a live node chosen now and claimed.
    async fn place(&self, space: &CallId) -> Result<NodeId, ClusterError>;

    /// Moves `space` from this node to a live node other than this one (drain); returns it.
    async fn hand_over(&self, space: &CallId) -> Result<NodeId, ClusterError>;

    /// Records that this node owns `space` (after adopting it).
    async fn claim(&self, space: &CallId) -> Result<(), ClusterError>;

    /// The snapshot of `space` its owner last wrote.
    async fn snapshot(&self, space: &CallId) -> Result<Option<String>, ClusterError>;

    /// Queues a message for another node; messages to one node arrive in queue order.
    fn send(&self, to: &NodeId, body: Body);

    /// Queues a message for every node holding a device of `user` (this one too: receivers
    /// skip what they sent themselves).
    fn send_to_devices(&self, user: &UserId, body: Body);

    /// Queues a presence message for every node interested in `user`.
    fn send_presence(&self, user: &UserId, body: Body);

    /// Queues a message for every node.
    fn broadcast(&self, body: Body);

    /// Queues listening to a channel (in order with `unlisten`).
    fn listen(&self, interest: Interest);

    /// Queues no longer listening.
    fn unlisten(&self, interest: Interest);

    /// Listens to a channel and returns once messages on it will arrive.
    async fn listened(&self, interest: Interest) -> Result<(), ClusterError>;

    /// A device of `user` connected here; returns how many the user has in the cluster now.
    async fn device_up(
        &self,
        user: &UserId,
        conn: ConnectionId,
    ) -> Result<DeviceCount, ClusterError>;

    /// A device of `user` here went away; returns how many the user has left in the cluster.
    async fn device_down(
        &self,
        user: &UserId,
        conn: ConnectionId,
    ) -> Result<DeviceCount, ClusterError>;

    /// The calls `user` is involved in, anywhere.
    async fn user_calls(&self, user: &UserId) -> Result<Vec<CallId>, ClusterError>;

    /// The calls `user` takes part in on other nodes too (see [`StateWrite::Seat`]); a single
    /// node answers none, as its hub counts them itself.
    async fn seated_calls(&self, user: &UserId) -> Result<Vec<CallId>, ClusterError>;

    /// The presence record last written for `user`, and their device count.
    async fn presence(&self, user: &UserId) -> Result<(Option<String>, DeviceCount), ClusterError>;

    /// Takes a token from the cluster-wide bucket `bucket` (`per_second` sustained, `burst` at
    /// once): `None` when one was taken, else how long until one is available.
    async fn take_token(
        &self,
        bucket: &str,
        per_second: u32,
        burst: u32,
    ) -> Result<Option<std::time::Duration>, ClusterError>;

    /// Queues a write of shared state, in order.
    fn write(&self, write: StateWrite);

    /// The revocations written with [`StateWrite::Revocation`] that have not lapsed (JSON); a
    /// single node has none.
    async fn revocations(&self) -> Result<Vec<String>, ClusterError>;

    /// The messages for this node. Can be taken once.
    fn inbox(&self) -> Option<mpsc::UnboundedReceiver<Envelope>>;
}
