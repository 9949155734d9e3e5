//! What a flow runs, built for the supervisor: its parts (delivery context, pause, counts,
//! stop signals) and its source with the pipeline it feeds: a route's MQTT consumers, or a
//! Kafka or RocketMQ group member (a route's `source`, a downlink).

use std::collections::BTreeMap;
use std::hash::RandomState;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handle::Flow;
use crate::config::{MqttConfig, RouteConfig};
use crate::connectors::mqtt::{self as source, ConsumerSpec, Endpoint};
use crate::connectors::Connection;
use crate::dead_letter::DeadLetter;
use crate::events::RouteMetrics;
use crate::flow::ConsumerStatus;
use crate::flow::Sink;
use crate::flow::{Pause, RouteStats};
use crate::pipeline::{Context, Pipeline, Settings};
use crate::sources::records::{self, RecordSpec};
use crate::sources::ReadSpec;

/// What every flow uses.
pub struct Shared {
    pub endpoint: Endpoint,
    pub mqtt: MqttConfig,
    pub connections: Arc<BTreeMap<String, Connection>>,
    pub dead_letter: Arc<DeadLetter>,
    /// Cancelled to stop every route at once (each route's own signals are its children).
    pub shutdown: CancellationToken,
}

/// A flow's run-time parts, before its source starts.
pub(super) struct Parts {
    pub(super) ctx: Arc<Context>,
    pub(super) pause: Arc<Pause>,
    pub(super) stats: Arc<RouteStats>,
    pub(super) shutdown: CancellationToken,
    pub(super) hard_stop: CancellationToken,
}

impl Parts {
    /// What every flow's run needs: its stop signals, pause, counts and delivery context
    /// with its rules; why not, when its rules no longer compile (a schema file gone).
    pub(super) fn new(
        shared: &Shared,
        flow: &Flow,
        sink: Arc<dyn Sink>,
        max_attempts: u32,
        skip_marked: Option<Arc<str>>,
        paused: bool,
    ) -> Result<Parts, String> {
        let rules = flow.rules().compile().map_err(|problems| {
            let text = problems.iter().map(|(key, e)| format!("{key}: {e}"));
            text.collect::<Vec<_>>().join("; ")
        })?;
        let shutdown = shared.shutdown.child_token();
        let hard_stop = CancellationToken::new();
        let stats = Arc::new(RouteStats::default());
        let pause = Arc::new(Pause::new(paused));
        let lanes = match flow {
            Flow::Route(r) if r.source.is_none() => r.consumers as usize,
            Flow::Route(r) => r.concurrency,
            Flow::Downlink(d) => d.concurrency,
        };
        let ctx = Arc::new(Context {
            route: flow.name().into(),
            metrics: RouteMetrics::new(flow.name(), lanes),
            max_attempts,
            sink,
            dead_letter: shared.dead_letter.clone(),
            skip_marked,
            rules: rules.map(Arc::new),
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
        Ok(Parts {
            ctx,
            pause,
            stats,
            shutdown,
            hard_stop,
        })
    }
}

/// A flow that reads `spec` from `connection` (Kafka, RocketMQ): its reader's status and
/// its work (the reader and the pipeline), which ends once the reader left its group.
pub(super) fn records(
    shared: &Shared,
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
        max_bytes: shared.mqtt.max_inflight_bytes as usize,
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

/// The route's consumers and its pipeline; ends once the pipeline has closed every lane
/// and the consumers have disconnected.
pub(super) fn mqtt(
    shared: &Shared,
    route: &RouteConfig,
    settings: Settings,
    parts: &Parts,
    consumers: &[Arc<ConsumerStatus>],
) -> BoxFuture<'static, ()> {
    let qos = match route.qos {
        0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    };
    let mqtt = &shared.mqtt;
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
        let (acker, poll) = source::start(&shared.endpoint, spec, tx.clone());
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
