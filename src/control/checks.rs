//! The connection checks while running: each connection's `health_check` every
//! `check_interval`, feeding `mqbridge_connection_healthy`, the log (when a verdict changes)
//! and `/readyz`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connectors::Connection;
use crate::events;

/// The connections of the running configuration (replaced on reload).
pub type Connections = Arc<BTreeMap<String, Connection>>;

/// The last verdict per connection: what the check said, or why it failed.
#[derive(Default)]
pub struct Checks {
    results: Mutex<BTreeMap<String, Result<String, String>>>,
}

impl Checks {
    pub fn results(&self) -> BTreeMap<String, Result<String, String>> {
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Checks every connection now and then every `interval`, until `stop`.
pub fn spawn(
    mut connections: watch::Receiver<Connections>,
    interval: Duration,
    stop: CancellationToken,
) -> Arc<Checks> {
    let checks = Arc::new(Checks::default());
    let out = checks.clone();
    tokio::spawn(async move {
        loop {
            let current = connections.borrow_and_update().clone();
            let mut results = BTreeMap::new();
            for (name, c) in current.iter() {
                let limit = interval.min(Duration::from_secs(10));
                let verdict = match tokio::time::timeout(limit, c.health_check()).await {
                    Ok(Ok(detail)) => Ok(detail),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {limit:?}")),
                };
                let before = out.results().get(name).map(Result::is_ok);
                if before != Some(verdict.is_ok()) {
                    match &verdict {
                        Ok(detail) => events::ConnectionHealthy {
                            connection: name,
                            detail,
                        }
                        .emit(),
                        Err(error) => events::ConnectionUnhealthy {
                            connection: name,
                            error,
                        }
                        .emit(),
                    }
                }
                results.insert(name.clone(), verdict);
            }
            *out.results.lock().unwrap_or_else(|p| p.into_inner()) = results;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                // A reload: check the new connections at once.
                changed = connections.changed() => if changed.is_err() { return },
            }
        }
    });
    checks
}
