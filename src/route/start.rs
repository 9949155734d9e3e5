//! Starting a route: `consumers` MQTT clients in the route's shared-subscription group, each
//! with its own worker, all delivering through the route's sink.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::worker::Worker;
use crate::config::{MqttConfig, RouteConfig};
use crate::dead_letter::DeadLetter;
use crate::mqtt::{self, ConsumerSpec, Endpoint};
use crate::sinks::RouteSink;

/// What a route's workers share.
pub struct RouteContext {
    pub name: Arc<str>,
    pub sink: RouteSink,
    pub dead_letter: Arc<DeadLetter>,
    /// Graceful shutdown: stop intake, finish what is in flight.
    pub shutdown: CancellationToken,
    /// `shutdown_timeout` passed: give up on deliveries still pending (they stay unacknowledged).
    pub hard_stop: CancellationToken,
}

impl RouteContext {
    /// Waits `d`; false when shutdown began instead.
    pub async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }
}

/// Spawns the route's consumers and workers into `tasks`.
pub fn start(
    route: &RouteConfig,
    mqtt: &MqttConfig,
    endpoint: &Endpoint,
    ctx: Arc<RouteContext>,
    tasks: &mut JoinSet<()>,
) {
    let qos = match route.qos {
        0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    };
    for n in 1..=route.consumers {
        let spec = ConsumerSpec {
            route: ctx.name.clone(),
            client_id: format!("{}-{}-{n}", mqtt.client_id_prefix, route.name),
            filters: route.filters.clone(),
            share_group: route.share_group().to_owned(),
            qos,
            receive_maximum: mqtt.receive_maximum as usize,
            publisher: mqtt.publisher.clone(),
        };
        let (rx, acker, poll_task) = mqtt::start_consumer(endpoint, spec);
        let worker = Worker {
            ctx: ctx.clone(),
            rx,
            acker,
            consumer: n,
            batch_size: route.batch_size,
            max_wait: route.max_wait,
        };
        tasks.spawn(async move {
            worker.run().await;
            // The worker asked for DISCONNECT after its last ack; the poll task ends once sent.
            let _ = poll_task.await;
        });
    }
}
