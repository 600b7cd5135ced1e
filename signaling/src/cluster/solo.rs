//! The single node: the embedded default, and the product on one machine.
//!
//! It owns every space, has nobody to send to and no shared state to write: the answers are
//! the ones a cluster of one would give, without Redis.

use super::{
    Body, Cluster, ClusterError, DeviceCount, Envelope, Health, Interest, Load, NodeId, NodeInfo,
    StateWrite, Topology,
};
use protocol::{CallId, ConnectionId, UserId};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// See the module docs.
pub struct Solo {
    node: NodeId,
    /// Connections per user, for the per-user cap: the directory of a cluster of one. Touched
    /// once per connect and disconnect, never on the media path.
    devices: Mutex<HashMap<UserId, usize>>,
}

impl Solo {
    pub fn new() -> Self {
        Self {
            node: NodeId::new("local"),
            devices: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for Solo {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Cluster for Solo {
    fn node(&self) -> &NodeId {
        &self.node
    }

    fn topology(&self) -> Topology {
        Topology::Solo
    }

    fn health(&self) -> Health {
        Health::Healthy
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        Vec::new()
    }

    fn report_load(&self, _load: Load) {}

    async fn drain(&self) {}

    async fn owner(&self, _space: &CallId) -> Result<Option<NodeId>, ClusterError> {
        Ok(Some(self.node.clone()))
    }

    async fn place(&self, _space: &CallId) -> Result<NodeId, ClusterError> {
        Ok(self.node.clone())
    }

    async fn hand_over(&self, _space: &CallId) -> Result<NodeId, ClusterError> {
        Err(ClusterError::NoNode)
    }

    async fn claim(&self, _space: &CallId) -> Result<(), ClusterError> {
        Ok(())
    }

    async fn snapshot(&self, _space: &CallId) -> Result<Option<String>, ClusterError> {
        Ok(None)
    }

    fn send(&self, _to: &NodeId, _body: Body) {}

    fn send_to_devices(&self, _user: &UserId, _body: Body) {}

    fn send_presence(&self, _user: &UserId, _body: Body) {}

    fn broadcast(&self, _body: Body) {}

    fn listen(&self, _interest: Interest) {}

    fn unlisten(&self, _interest: Interest) {}

    async fn listened(&self, _interest: Interest) -> Result<(), ClusterError> {
        Ok(())
    }

    async fn device_up(
        &self,
        user: &UserId,
        _conn: ConnectionId,
    ) -> Result<DeviceCount, ClusterError> {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let n = devices.entry(user.clone()).or_default();
        *n += 1;
        Ok(DeviceCount(*n))
    }

    async fn device_down(
        &self,
        user: &UserId,
        _conn: ConnectionId,
    ) -> Result<DeviceCount, ClusterError> {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let left = match devices.get_mut(user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                *n
            }
            _ => {
                devices.remove(user);
                0
            }
        };
        Ok(DeviceCount(left))
    }

    async fn user_calls(&self, _user: &UserId) -> Result<Vec<CallId>, ClusterError> {
        Ok(Vec::new())
    }

    async fn seated_calls(&self, _user: &UserId) -> Result<Vec<CallId>, ClusterError> {
        Ok(Vec::new())
    }

    async fn revocations(&self) -> Result<Vec<String>, ClusterError> {
        Ok(Vec::new())
    }

    async fn presence(
        &self,
        _user: &UserId,
    ) -> Result<(Option<String>, DeviceCount), ClusterError> {
        Ok((None, DeviceCount(0)))
    }

    async fn take_token(
        &self,
        _bucket: &str,
        _per_second: u32,
        _burst: u32,
    ) -> Result<Option<std::time::Duration>, ClusterError> {
        // One node counts its own rates in process; nothing shared to count here.
        Ok(None)
    }

    fn write(&self, _write: StateWrite) {}

    fn inbox(&self) -> Option<mpsc::UnboundedReceiver<Envelope>> {
        None
    }
}
