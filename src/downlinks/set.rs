//! The running downlinks, by name, as the bridge's loop owns them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::DownlinkConfig;
use super::runner::{DownlinkHandle, DownlinkShared};
use crate::config::ConnectionConfig;

pub struct Downlinks {
    handles: BTreeMap<String, DownlinkHandle>,
    shared: DownlinkShared,
}

impl Downlinks {
    pub fn new(shared: DownlinkShared) -> Self {
        Downlinks {
            handles: BTreeMap::new(),
            shared,
        }
    }

    /// Starts `config`, reading from its connection among `connections`.
    pub fn start(
        &mut self,
        config: &DownlinkConfig,
        connections: &BTreeMap<String, ConnectionConfig>,
        paused: bool,
    ) -> Result<(), String> {
        let connection = connections.get(&config.connection).ok_or_else(|| {
            format!(
                "downlink \"{}\": no connection \"{}\"",
                config.name, config.connection
            )
        })?;
        let handle = DownlinkHandle::start(config, connection, &self.shared, paused)
            .map_err(|e| e.to_string())?;
        self.handles.insert(config.name.clone(), handle);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&DownlinkHandle> {
        self.handles.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &DownlinkHandle> {
        self.handles.values()
    }

    /// What downlinks started from now on share (after a reload changed it).
    pub fn set_shared(&mut self, shared: DownlinkShared) {
        self.shared = shared;
    }

    pub fn shared(&self) -> &DownlinkShared {
        &self.shared
    }

    /// Stops one downlink; true when it finished its batch within `limit`.
    pub async fn stop(&mut self, name: &str, limit: Duration) -> Option<bool> {
        let mut handle = self.handles.remove(name)?;
        Some(handle.stop(limit).await)
    }

    /// Stops every downlink at once; true when all finished within `limit`.
    pub async fn stop_all(&mut self, limit: Duration) -> bool {
        let stops = self.handles.values_mut().map(|h| h.stop(limit));
        let finished = futures::future::join_all(stops).await;
        self.handles.clear();
        finished.into_iter().all(|f| f)
    }
}
