//! A broker as a route's source: `consumers` clients in the route's shared-subscription group
//! (`consumer`), each an acknowledgement lane of the route's pipeline, acknowledging each message
//! once the pipeline settled it (`acker`). Messages that carry the connection's origin marker were
//! published by the bridge itself: the pipeline acknowledges them without delivering them.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc;

use super::config::MqttSourceConfig;
use super::consumer::{self, ConsumerSpec};
use super::options::Endpoint;
use crate::flow::{ConsumerStatus, Pause};
use crate::pipeline::{Engine, Source, SourceContext};

pub struct MqttSource {
    endpoint: Endpoint,
    route: Arc<str>,
    filters: Vec<String>,
    share_group: String,
    qos: QoS,
    pause: Arc<Pause>,
    /// An ordered route: each message gets its topic's order key.
    order: bool,
    consumers: Vec<Arc<ConsumerStatus>>,
}

impl MqttSource {
    pub fn new(endpoint: &Endpoint, context: &SourceContext, c: &MqttSourceConfig) -> Self {
        let prefix = &endpoint.config().client_id_prefix;
        let consumers = (1..=c.consumers)
            .map(|n| {
                let id = format!("{prefix}-{}-{n}", context.route);
                Arc::new(ConsumerStatus::new(id))
            })
            .collect();
        MqttSource {
            endpoint: endpoint.clone(),
            route: context.route.clone(),
            filters: c.filters.clone(),
            share_group: c.share_group().to_owned(),
            qos: match c.qos {
                0 => QoS::AtMostOnce,
                _ => QoS::AtLeastOnce,
            },
            pause: context.pause.clone(),
            order: context.ordered,
            consumers,
        }
    }
}

impl Source for MqttSource {
    fn lanes(&self) -> usize {
        self.consumers.len()
    }

    fn consumers(&self) -> Vec<Arc<ConsumerStatus>> {
        self.consumers.clone()
    }

    fn skip_marked(&self) -> Option<Arc<str>> {
        let marker = self.endpoint.config().origin_marker();
        marker.map(|(name, _)| name.into())
    }

    /// The consumers and the pipeline; ends once the pipeline has closed every lane and the
    /// consumers have disconnected.
    fn run(self: Box<Self>, engine: Engine) -> BoxFuture<'static, ()> {
        let config = self.endpoint.config();
        let (tx, intake) = mpsc::unbounded_channel();
        let (mut ackers, mut polls) = (Vec::new(), Vec::new());
        for (lane, status) in self.consumers.iter().enumerate() {
            let spec = ConsumerSpec {
                route: self.route.clone(),
                lane,
                client_id: status.client_id.clone(),
                pause: self.pause.clone(),
                status: status.clone(),
                filters: self.filters.clone(),
                share_group: self.share_group.clone(),
                qos: self.qos,
                receive_maximum: config.receive_maximum as usize,
                max_inflight_bytes: config.max_inflight_bytes as usize,
                publisher: config.publisher.clone(),
                order: self.order,
            };
            let (acker, poll) = consumer::start(&self.endpoint, spec, tx.clone());
            ackers.push(acker);
            polls.push(poll);
        }
        let pipeline = engine.pipeline(intake, ackers);
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
}
