//! The supervisor: starts each flow (a route: MQTT consumers, the pipeline and the route's sink;
//! a downlink: a Kafka or RocketMQ reader, the pipeline and an MQTT sink) and holds one handle
//! per flow, so that each can be stopped, paused, resumed or replaced alone. A flow whose task
//! ends without being asked to is reported to the caller.

use std::collections::BTreeMap;
use std::hash::RandomState;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::handle::{set, Flow, RouteHandle, RouteState};
use crate::config::{MqttConfig, RouteConfig};
use crate::connectors::mqtt::Endpoint;
use crate::connectors::mqtt::MqttSink;
use crate::connectors::mqtt::{self as source, ConsumerSpec};
use crate::connectors::{BoxError, Connection, RouteContext, Sink};
use crate::dead_letter::DeadLetter;
use crate::downlinks::DownlinkConfig;
use crate::events::RouteMetrics;
use crate::pipeline::{Context, Pause, Pipeline, RouteStats, Settings};
use crate::sources::records::{self, RecordSpec};
use crate::sources::{ConsumerStatus, ReadSpec};

/// A downlink's batches on their way at once (of different partitions), and its ack lanes.
const DOWNLINK_CONCURRENCY: usize = 4;
/// Refusals of a message by the MQTT broker (other than for rights) before it is
/// dead-lettered.
const DOWNLINK_ATTEMPTS: u32 = 5;

/// What every route uses.
pub struct Shared {
    pub endpoint: Endpoint,
    pub mqtt: MqttConfig,
    pub connections: Arc<BTreeMap<String, Connection>>,
    pub dead_letter: Arc<DeadLetter>,
    /// Cancelled to stop every route at once (each route's own signals are its children).
    pub shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("route \"{0}\": no connection \"{1}\"")]
    NoConnection(String, String),
    #[error("route \"{0}\": {1}")]
    Sink(String, #[source] BoxError),
    #[error("route \"{0}\" is running already")]
    Running(String),
}

/// A flow's run-time parts, before its source starts.
struct Parts {
    ctx: Arc<Context>,
    pause: Arc<Pause>,
    stats: Arc<RouteStats>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
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
        };
        if let (Some(source), Some(spec)) = (&route.source, route.read_spec()) {
            let connection = self.source_connection(&route.name, &source.connection)?;
            let parts = self.parts(&flow, sink, route.max_attempts, None, paused);
            let (status, work) = self.reading(connection, spec, settings, &parts);
            self.launch(flow, parts, vec![status], work);
            return Ok(());
        }
        let consumers: Vec<Arc<ConsumerStatus>> = (1..=route.consumers)
            .map(|n| {
                let id = format!("{}-{}-{n}", self.shared.mqtt.client_id_prefix, route.name);
                Arc::new(ConsumerStatus::new(id))
            })
            .collect();
        let skip_marked = self
            .shared
            .mqtt
            .origin_marker()
            .map(|(name, _)| name.into());
        let parts = self.parts(&flow, sink, route.max_attempts, skip_marked, paused);
        let work = self.route_task(route, settings, &parts, &consumers);
        self.launch(flow, parts, consumers, work);
        Ok(())
    }

    /// Starts downlink `d`: it reads its connection (Kafka or RocketMQ) and publishes to the
    /// broker through MQTT connections of its own.
    pub fn start_downlink(&mut self, d: &DownlinkConfig, paused: bool) -> Result<(), StartError> {
        if self.routes.contains_key(&d.name) {
            return Err(StartError::Running(d.name.clone()));
        }
        let connection = self.source_connection(&d.name, &d.connection)?;
        let mqtt = &self.shared.mqtt;
        let client_id = format!("{}-downlink-{}", mqtt.client_id_prefix, d.name);
        let sink = Arc::new(MqttSink::start(
            &self.shared.endpoint,
            &client_id,
            d.mqtt_connections,
            DOWNLINK_CONCURRENCY * d.batch_size + 64,
            mqtt.origin_marker(),
            d.publish_settings(),
        ));
        let flow = Flow::Downlink(d.clone());
        let parts = self.parts(&flow, sink, DOWNLINK_ATTEMPTS, None, paused);
        let settings = Settings {
            batch_size: d.batch_size,
            max_wait: Duration::ZERO,
            ordered: true,
            concurrency: DOWNLINK_CONCURRENCY,
        };
        let (status, work) = self.reading(connection, d.read_spec(), settings, &parts);
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

    /// A flow that reads `spec` from `connection` (Kafka, RocketMQ): its reader's status and
    /// its work (the reader and the pipeline), which ends once the reader left its group.
    fn reading(
        &self,
        connection: Connection,
        spec: ReadSpec,
        settings: Settings,
        parts: &Parts,
    ) -> (Arc<ConsumerStatus>, BoxFuture<'static, ()>) {
        let status = Arc::new(ConsumerStatus::new(spec.group.clone()));
        let (tx, intake) = mpsc::unbounded_channel();
        let source = RecordSpec {
            route: parts.ctx.route.clone(),
            lanes: settings.concurrency,
            pause: parts.pause.clone(),
            status: status.clone(),
            max_messages: (settings.concurrency + 1) * settings.batch_size,
            max_bytes: self.shared.mqtt.max_inflight_bytes as usize,
            shutdown: parts.shutdown.clone(),
        };
        let open: records::Open = Box::new(move || match connection.open_reader(spec.clone()) {
            Some(open) => open,
            None => Box::pin(async { Err("not a source".into()) }),
        });
        let (ackers, reader) = records::start(open, source, tx);
        let pipeline = Pipeline {
            ctx: parts.ctx.clone(),
            settings,
            intake,
            ackers,
        };
        let work = async move {
            pipeline.run().await;
            let _ = reader.await;
        };
        (status, work.boxed())
    }

    /// What every flow's run needs: its stop signals, pause, counts and delivery context.
    fn parts(
        &self,
        flow: &Flow,
        sink: Arc<dyn Sink>,
        max_attempts: u32,
        skip_marked: Option<Arc<str>>,
        paused: bool,
    ) -> Parts {
        let shutdown = self.shared.shutdown.child_token();
        let hard_stop = CancellationToken::new();
        let stats = Arc::new(RouteStats::default());
        let pause = Arc::new(Pause::new(paused));
        let lanes = match flow {
            Flow::Route(r) if r.source.is_none() => r.consumers as usize,
            Flow::Route(r) => r.concurrency,
            Flow::Downlink(_) => DOWNLINK_CONCURRENCY,
        };
        let ctx = Arc::new(Context {
            route: flow.name().into(),
            metrics: RouteMetrics::new(flow.name(), lanes),
            max_attempts,
            sink,
            dead_letter: self.shared.dead_letter.clone(),
            skip_marked,
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
            pause: pause.clone(),
            stats: stats.clone(),
        });
        if paused {
            crate::events::RoutePaused {
                route: flow.name(),
                paused,
            }
            .emit();
        }
        Parts {
            ctx,
            pause,
            stats,
            shutdown,
            hard_stop,
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

    /// The route's consumers and its pipeline; ends once the pipeline has closed every lane
    /// and the consumers have disconnected.
    fn route_task(
        &self,
        route: &RouteConfig,
        settings: Settings,
        parts: &Parts,
        consumers: &[Arc<ConsumerStatus>],
    ) -> BoxFuture<'static, ()> {
        let qos = match route.qos {
            0 => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        let mqtt = &self.shared.mqtt;
        let (tx, intake) = mpsc::unbounded_channel();
        let (mut ackers, mut polls) = (Vec::new(), Vec::new());
        let order = route.is_ordered().then(|| Arc::new(RandomState::new()));
        for (lane, status) in consumers.iter().enumerate() {
            let spec = ConsumerSpec {
                route: parts.ctx.route.clone(),
                lane,
                client_id: status.client_id.clone(),
                pause: parts.pause.clone(),
                status: status.clone(),
                filters: route.filters.clone(),
                share_group: route.share_group().to_owned(),
                qos,
                receive_maximum: mqtt.receive_maximum as usize,
                max_inflight_bytes: mqtt.max_inflight_bytes as usize,
                publisher: mqtt.publisher.clone(),
                order: order.clone(),
            };
            let (acker, poll) = source::start(&self.shared.endpoint, spec, tx.clone());
            ackers.push(acker);
            polls.push(poll);
        }
        let pipeline = Pipeline {
            ctx: parts.ctx.clone(),
            settings,
            intake,
            ackers,
        };
        async move {
            pipeline.run().await;
            // The pipeline asked each consumer to DISCONNECT after its last ack; each poll task
            // ends once that is sent. (If this future is dropped first, the tasks are stopped.)
            for poll in polls {
                poll.join().await;
            }
        }
        .boxed()
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

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}
