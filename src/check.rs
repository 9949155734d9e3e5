//! `mqbridge check`: the connection check of the managed services, run from the command line
//! (or as a deployment's smoke test). It builds and checks every connection (for an MQTT broker:
//! it connects with a probe client of its own and a clean session), then asks each enabled
//! route's source and sink what their kinds can check without side effects: an MQTT source
//! whether the broker grants each filter, a Kafka or RocketMQ source or sink its topic's
//! partitions or queues.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Config, DEFAULT_BROKER};
use crate::flow::BoxError;

/// One line of the verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub ok: bool,
    /// What was checked: `mqtt`, `connection "name" (kafka)`, `route "name" filter "a/#"`,
    /// `route "name"` (its sink), `downlink "name" source`.
    pub item: String,
    pub detail: String,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark}  {}: {}", self.item, self.detail)
    }
}

const LIMIT: Duration = Duration::from_secs(10);

/// Checks every connection, and every enabled route's source and sink.
pub async fn check(config: &Config) -> Vec<Verdict> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut verdicts = Vec::new();
    let mut live = BTreeMap::new();
    for (name, c) in &config.connections {
        let item = match name == DEFAULT_BROKER {
            true => "mqtt".to_owned(),
            false => format!("connection \"{name}\" ({})", c.kind()),
        };
        let outcome = tokio::time::timeout(LIMIT, async {
            let connection = c.connect(name).await?;
            let detail = connection.health_check().await;
            live.insert(name.clone(), connection);
            detail
        })
        .await;
        verdicts.push(verdict(item, outcome));
    }
    for route in config.routes.iter().filter(|r| r.enabled) {
        let label = format!("{} \"{}\"", route.spelling.what(), route.name);
        if let Some(source) = live.get(route.source.connection()) {
            let probes = source.probe_source(&route.source);
            match tokio::time::timeout(LIMIT + Duration::from_secs(5), probes).await {
                Ok(probes) => {
                    for (what, result) in probes {
                        verdicts.push(verdict(format!("{label} {what}"), Ok(result)));
                    }
                }
                Err(e) => verdicts.push(verdict(format!("{label} source"), Err(e))),
            }
        }
        let Some(sink) = live.get(&route.connection) else {
            continue;
        };
        let outcome = match tokio::time::timeout(LIMIT, sink.probe_sink(&route.sink)).await {
            Ok(None) => continue,
            Ok(Some(result)) => Ok(result),
            Err(e) => Err(e),
        };
        verdicts.push(verdict(label, outcome));
    }
    verdicts
}

fn verdict(
    item: String,
    outcome: Result<Result<String, BoxError>, tokio::time::error::Elapsed>,
) -> Verdict {
    let (ok, detail) = match outcome {
        Ok(Ok(detail)) => (true, detail),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (false, format!("no answer within {LIMIT:?}")),
    };
    Verdict { ok, item, detail }
}
