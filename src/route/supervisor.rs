//! The supervisor: starts each flow (a route: MQTT consumers, the pipeline and the route's sink;
//! a downlink: a Kafka or RocketMQ reader, the pipeline and an MQTT sink) and holds one handle
//! per flow, so that each can be stopped, paused, resumed or replaced alone. A flow whose task
//! ends without being asked to is reported to the caller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;
use tracing::warn;

use super::handle::{set, Flow, RouteHandle, RouteState};
pub use super::run::Shared;
use super::run::{self, Parts};
use crate::config::RouteConfig;
use crate::connectors::mqtt::MqttSink;
use crate::connectors::{Connection, RouteContext};
use crate::dead_letter::DeadLetter;
use crate::downlinks::DownlinkConfig;
use crate::flow::ConsumerStatus;
use crate::flow::{BoxError, Sink};
use crate::pipeline::Settings;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("route \"{0}\": no connection \"{1}\"")]
    NoConnection(String, String),
    #[error("route \"{0}\": {1}")]
    Sink(String, #[source] BoxError),
    #[error("route \"{0}\" is running already")]
    Running(String),
    #[error("route \"{0}\": {1}")]
    Rules(String, String),
}

/// How a route task ended: its name, its start's number and the outcome.
type Ended = (String, u64, Result<(), String>);

pub struct Supervisor {
    shared: Shared,
    routes: BTreeMap<String, RouteHandle>,
    /// Numbers each start, so that the end of an earlier run of a route is not taken for the
    /// end of the current one.
    starts: u64,
    ended_tx: mpsc::UnboundedSender<Ended>,
    ended_rx: mpsc::UnboundedReceiver<Ended>,
}

impl Supervisor {
    pub fn new(shared: Shared) -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Supervisor {
            shared,
            routes: BTreeMap::new(),
            starts: 0,
            ended_tx,
            ended_rx,
        }
    }

    /// The running routes and downlinks.
    pub fn flows(&self) -> impl Iterator<Item = &RouteHandle> {
        self.routes.values()
    }

    pub fn flow(&self, name: &str) -> Option<&RouteHandle> {
        self.routes.get(name)
    }

    /// Changes what routes started from now on share (a reload); the running ones keep
    /// what they started with.
    pub fn update_shared<T>(&mut self, f: impl FnOnce(&mut Shared) -> T) -> T {
        f(&mut self.shared)
    }

    pub fn dead_letter(&self) -> Arc<DeadLetter> {
        self.shared.dead_letter.clone()
    }

    /// Starts `route`: its consumers (MQTT, or the reader of its `source`) connect in the
    /// background; `paused`, they read nothing until it is resumed.
    pub fn start(&mut self, route: &RouteConfig, paused: bool) -> Result<(), StartError> {
        if self.routes.contains_key(&route.name) {
            return Err(StartError::Running(route.name.clone()));
        }
        let connection = self
            .shared
            .connections
            .get(&route.connection)
            .ok_or_else(|| {
                StartError::NoConnection(route.name.clone(), route.connection.clone())
            })?;
        let sink = connection
            .route_sink(
                &RouteContext {
                    name: &route.name,
                    ordered: route.is_ordered(),
                },
                &route.sink,
            )
            .map_err(|e| StartError::Sink(route.name.clone(), e))?;
        let flow = Flow::Route(route.clone());
        let settings = Settings {
            batch_size: route.batch_size,
            max_wait: route.max_wait,
            ordered: route.is_ordered(),
            concurrency: route.concurrency,
            // Sinks do not promise that a batch sent after another lands after it.
            window: 1,
        };
        if let (Some(source), Some(spec)) = (&route.source, route.read_spec()) {
            let connection = self.source_connection(&route.name, &source.connection)?;
            flow_started(&route.name, &connection, route.sink.kind());
            let parts = Parts::new(&self.shared, &flow, sink, route.max_attempts, None, paused)
                .map_err(|e| StartError::Rules(flow.name().into(), e))?;
            let (status, work) = run::records(&self.shared, connection, spec, settings, &parts);
            self.launch(flow, parts, vec![status], work);
            return Ok(());
        }
        self.start_mqtt(route, flow, sink, settings, paused)
    }

    /// A route reading the MQTT broker: its consumers, sharing the route's group.
    fn start_mqtt(
        &mut self,
        route: &RouteConfig,
        flow: Flow,
        sink: Arc<dyn Sink>,
        settings: Settings,
        paused: bool,
    ) -> Result<(), StartError> {
        crate::events::FlowStarted {
            route: &route.name,
            source: "mqtt",
            sink: route.sink.kind(),
        }
        .emit();
        let consumers: Vec<Arc<ConsumerStatus>> = (1..=route.consumers)
            .map(|n| {
                let id = format!("{}-{}-{n}", self.shared.mqtt.client_id_prefix, route.name);
                Arc::new(ConsumerStatus::new(id))
            })
            .collect();
        let mqtt = &self.shared.mqtt;
        let skip_marked = mqtt.origin_marker().map(|(name, _)| name.into());
        let attempts = route.max_attempts;
        let parts = Parts::new(&self.shared, &flow, sink, attempts, skip_marked, paused)
            .map_err(|e| StartError::Rules(flow.name().into(), e))?;
        let work = run::mqtt(&self.shared, route, settings, &parts, &consumers);
        self.launch(flow, parts, consumers, work);
        Ok(())
    }

    pub fn start_downlink(&mut self, d: &DownlinkConfig, paused: bool) -> Result<(), StartError> {
        if self.routes.contains_key(&d.name) {
            return Err(StartError::Running(d.name.clone()));
        }
        let connection = self.source_connection(&d.name, &d.connection)?;
        flow_started(&d.name, &connection, "mqtt");
        let mqtt = &self.shared.mqtt;
        let client_id = format!("{}-downlink-{}", mqtt.client_id_prefix, d.name);
        let sink = Arc::new(MqttSink::start(
            &self.shared.endpoint,
            &client_id,
            d.mqtt_connections,
            d.concurrency * d.batch_size + 64,
            mqtt.origin_marker(),
            d.publish_settings(),
        ));
        let flow = Flow::Downlink(d.clone());
        let parts = Parts::new(&self.shared, &flow, sink, d.max_attempts, None, paused)
            .map_err(|e| StartError::Rules(flow.name().into(), e))?;
        let settings = Settings {
            batch_size: d.batch_size,
            max_wait: Duration::ZERO,
            ordered: true,
            concurrency: d.concurrency,
            // A connection publishes in order: the next batch of a partition goes out while
            // the broker acknowledges the last of the one before.
            window: 2,
        };
        let (status, work) =
            run::records(&self.shared, connection, d.read_spec(), settings, &parts);
        self.launch(flow, parts, vec![status], work);
        Ok(())
    }

    /// The connection named `name` when it can be read from.
    fn source_connection(&self, flow: &str, name: &str) -> Result<Connection, StartError> {
        let connection = self.shared.connections.get(name);
        let connection =
            connection.ok_or_else(|| StartError::NoConnection(flow.into(), name.into()))?;
        match connection.config().is_some_and(|c| c.readable()) {
            true => Ok(connection.clone()),
            false => {
                let e = format!("connection \"{name}\" cannot be read from");
                Err(StartError::Sink(flow.into(), e.into()))
            }
        }
    }

    /// Runs `work` as the flow's task and keeps its handle.
    fn launch(
        &mut self,
        flow: Flow,
        parts: Parts,
        consumers: Vec<Arc<ConsumerStatus>>,
        work: BoxFuture<'static, ()>,
    ) {
        let state = Arc::new(Mutex::new(RouteState::Running));
        self.starts += 1;
        let name = flow.name().to_owned();
        let (ended, done) = (self.ended_tx.clone(), state.clone());
        let start = self.starts;
        let task = tokio::spawn({
            let name = name.clone();
            async move {
                let result = std::panic::AssertUnwindSafe(work).catch_unwind().await;
                set(&done, RouteState::Stopped);
                let result = result.map_err(|panic| panic_text(&*panic));
                let _ = ended.send((name, start, result));
            }
        });
        let handle = RouteHandle {
            name: name.clone(),
            flow,
            pause: parts.pause,
            consumers,
            start,
            state,
            stats: parts.stats,
            shutdown: parts.shutdown,
            hard_stop: parts.hard_stop,
            task: Some(task),
        };
        self.routes.insert(name, handle);
    }

    /// Stops every route: each finishes and acknowledges what it holds, for at most `limit`;
    /// past it, pending deliveries are abandoned (left for the broker to redeliver) and the
    /// routes get a short grace to acknowledge what finished and disconnect. Returns false when
    /// deliveries had to be abandoned.
    pub async fn stop_all(&mut self, limit: Duration) -> bool {
        self.shared.shutdown.cancel();
        self.routes.values().for_each(RouteHandle::begin_stop);
        if self.wait_all(limit).await {
            return true;
        }
        warn!(
            ?limit,
            "shutdown timeout: unfinished deliveries are left for the broker to redeliver"
        );
        self.routes.values().for_each(RouteHandle::abandon);
        if !self.wait_all(Duration::from_secs(3)).await {
            self.routes.values_mut().for_each(RouteHandle::abort);
        }
        false
    }

    /// Stops one route the same way; true when it finished within `limit`.
    pub async fn stop(&mut self, name: &str, limit: Duration) -> Option<bool> {
        let mut handle = self.routes.remove(name)?;
        handle.begin_stop();
        if handle.wait(limit).await {
            return Some(true);
        }
        handle.abandon();
        if !handle.wait(Duration::from_secs(3)).await {
            handle.abort();
        }
        Some(false)
    }

    async fn wait_all(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        for handle in self.routes.values_mut() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !handle.wait(left).await {
                return false;
            }
        }
        true
    }

    /// Waits until a route ends without being asked to stop, and says which and why.
    pub async fn unexpected_end(&mut self) -> String {
        loop {
            let Some((name, start, result)) = self.ended_rx.recv().await else {
                return std::future::pending().await;
            };
            let asked = self
                .routes
                .get(&name)
                .is_none_or(|h| h.start != start || h.shutdown.is_cancelled());
            if !asked {
                return match result {
                    Ok(()) => format!("route \"{name}\" ended on its own"),
                    Err(panic) => format!("route \"{name}\" failed: {panic}"),
                };
            }
        }
    }
}

/// Reports a flow that reads `connection` into `sink`.
fn flow_started(route: &str, connection: &Connection, sink: &'static str) {
    let source = connection.config().map_or("unknown", |c| c.kind());
    crate::events::FlowStarted {
        route,
        source,
        sink,
    }
    .emit();
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}
