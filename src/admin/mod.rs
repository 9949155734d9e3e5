//! The operator's HTTP listener (`api`): metrics, health and readiness, the routes' states,
//! pause, resume and reload, and the status page; and the CLI's client for it (`client`).
//! Kept off the data path: it reads the metrics recorder and sends commands to the bridge's
//! loop (`control`).

mod api;
pub mod client;
mod guard;
mod history;

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::control::ControlHandle;

pub use guard::{Access, SharedAccess};

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0,
];

/// The process-wide metrics recorder, installed on first use. Where another recorder is
/// installed already (an embedding program's), the bridge's metrics go to that one and
/// `/metrics` shows none.
pub fn metrics() -> &'static PrometheusHandle {
    RECORDER.get_or_init(|| {
        // Fails only for an empty bucket list.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        handle
    })
}

/// How often the metrics are kept up.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Every five seconds until `stop`: sets the memory budget's gauges, and puts what the
/// histograms recorded into their buckets. The recorder keeps each sample until then or until
/// a scrape, so a bridge that nobody scrapes would otherwise grow by every batch it delivers.
pub async fn upkeep(budget: std::sync::Arc<crate::flow::Budget>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                budget.show();
                metrics().run_upkeep();
            }
        }
    }
}

/// Binds `listen` and serves the API (`api.rs`) until `shutdown` fires.
pub async fn serve(
    listen: SocketAddr,
    shutdown: CancellationToken,
    control: ControlHandle,
    access: SharedAccess,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let history = std::sync::Arc::new(history::History::default());
    let app = api::router(metrics(), control.clone(), access, history.clone());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "admin listener up: / (status page), /routes, /metrics, /healthz, /readyz");
    tokio::spawn(history::sample(history, control, shutdown.clone()));
    Ok(tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }))
}
