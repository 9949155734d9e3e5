//! A broker as a route's source: `consumers` clients in the route's shared-subscription group
//! (`consumer`), each an acknowledgement lane of the route's pipeline, acknowledging each message
//! once the pipeline settled it (`acker`). Messages that carry the connection's origin marker were
//! published by the bridge itself: the pipeline acknowledges them without delivering them.
//!
//! The clients are those of the route's pool (`pool`: shared with the other routes on this
//! broker that deliver to the same connection, plus a lane for the pool's parking connection),
//! or, with `shared_connections = false` or on a broker without subscription identifiers,
//! connections of the route's own.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use rumqttc::v5::mqttbytes::QoS;
use tokio_util::sync::CancellationToken;

use super::acker::{AckToken, Acker};
use super::config::MqttSourceConfig;
use super::consumer::{Connection, ConnectionSpec, Deliveries, OWN};
use super::options::Endpoint;
use super::pool::{self, Member, Pool};
use super::retire::Retire;
use crate::events;
use crate::flow::{self, Budget, ConsumerStatus, Pause};
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
    /// The pool's name (the destination connection), when the route shares connections.
    pool: Option<Arc<str>>,
    /// Its subscription identifier there.
    id: u32,
    /// Cancelled when the whole bridge stops.
    bridge: CancellationToken,
    /// Cancelled when the route stops for good.
    gone: CancellationToken,
    budget: Arc<Budget>,
    data_dir: std::path::PathBuf,
}

impl MqttSource {
    pub fn new(endpoint: &Endpoint, context: &SourceContext, c: &MqttSourceConfig) -> Self {
        let identifiers = endpoint.pools().identifiers_known();
        let pool = (c.shared_connections && identifiers != Some(false))
            .then(|| context.destination.clone());
        let source = MqttSource {
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
            consumers: Vec::new(),
            id: match &pool {
                Some(_) => endpoint.pools().claim(&context.route, c.share_group()),
                None => OWN,
            },
            pool,
            bridge: context.bridge.clone(),
            gone: context.gone.clone(),
            budget: context.budget.clone(),
            data_dir: context.data_dir.clone(),
        };
        let ids = match &source.pool {
            Some(name) => (1..=c.consumers as usize)
                .map(|n| pool::client_id(endpoint, name, n))
                .collect(),
            None => source.own_ids(c.consumers as usize),
        };
        MqttSource {
            consumers: ids
                .into_iter()
                .map(|id| Arc::new(ConsumerStatus::new(id)))
                .collect(),
            ..source
        }
    }

    /// The client ids of connections of the route's own: `{prefix}-{route}-{n}`.
    fn own_ids(&self, consumers: usize) -> Vec<String> {
        let prefix = &self.endpoint.config().client_id_prefix;
        (1..=consumers)
            .map(|n| format!("{prefix}-{}-{n}", self.route))
            .collect()
    }

    /// The route on its pool's connections: lanes one per consumer, then parking's. Ends once
    /// the pipeline has closed every lane; the route's subscriptions stay for its next run (a
    /// reload), and the pool disconnects when the bridge stops and no route is left on it.
    async fn run_shared(self: Box<Self>, pool: Arc<Pool>, engine: Engine) {
        let (tx, intake) = flow::intake();
        let member = self.member(tx.clone());
        let mut paused = self.pause.watch();
        let (run, subscribed) = pool.attach(member, *paused.borrow_and_update());
        // The sessions of the route's own consumers, from before it shared connections, leave
        // the share group, with what they queued read into the route, once the pool's
        // subscription is granted.
        let consumers = self.consumers.len();
        let own = Arc::new(ConsumerStatus::new(format!("{}-retiring", self.route)));
        let retire = Retire {
            endpoint: self.endpoint.clone(),
            budget: self.budget.clone(),
            data_dir: self.data_dir.clone(),
            sub: self.member(tx.clone()).subscription(own),
            lane: consumers,
            tx,
            consumers,
            subscribed,
            stop: engine.ctx.shutdown.clone(),
        };
        tokio::spawn(retire.run());
        let ackers = (0..=self.consumers.len()).map(|_| Acker {
            route: self.route.clone(),
            own: None,
        });
        let pipeline = engine.pipeline(intake, ackers.collect());
        let mut work = std::pin::pin!(pipeline.run());
        loop {
            tokio::select! {
                _ = &mut work => break,
                Ok(()) = paused.changed() => {
                    pool.pause(&self.route, *paused.borrow_and_update());
                }
            }
        }
        let gone = self.gone.is_cancelled();
        if pool.detach(&self.route, run, &self.bridge, gone) && self.bridge.is_cancelled() {
            pool.close().await;
        }
    }

    /// What the route reads, and where it goes.
    fn member(&self, tx: Deliveries) -> Member {
        Member {
            route: self.route.clone(),
            id: self.id,
            filters: self.filters.clone(),
            share_group: self.share_group.clone(),
            qos: self.qos,
            order: self.order,
            statuses: self.consumers.clone(),
            tx,
        }
    }

    /// The route on connections of its own, which stop reading while it is paused.
    async fn run_own(self: Box<Self>, engine: Engine) {
        let config = self.endpoint.config();
        let (tx, intake) = flow::intake::<AckToken>();
        let ids = self.own_ids(self.consumers.len());
        let member = self.member(tx.clone());
        let (mut ackers, mut connections) = (Vec::new(), Vec::new());
        for (lane, (status, id)) in self.consumers.iter().zip(ids).enumerate() {
            status.set_client_id(id.clone());
            let connection = Connection::start(
                &self.endpoint,
                ConnectionSpec {
                    client_id: id,
                    label: self.route.clone(),
                    number: lane,
                    receive_maximum: config.receive_maximum as usize,
                    max_inflight_bytes: config.max_inflight_bytes as usize,
                    publisher: config.publisher.clone(),
                    pause: Some(self.pause.clone()),
                    shared: false,
                    identifiers: None,
                    expected: None,
                    budget: self.budget.clone(),
                    counted: true,
                    stray: None,
                },
            );
            connection.set(OWN, member.subscription(status.clone()), lane, tx.clone());
            ackers.push(Acker {
                route: self.route.clone(),
                own: Some(connection.shared()),
            });
            connections.push(connection);
        }
        // What the route's subscriptions on a pool still hold or receive (a reload turned
        // `shared_connections` off) comes on a lane of its own, and the pool withdraws them.
        let grants: Vec<_> = connections.iter().map(|c| c.granted(OWN)).collect();
        let subscribed: pool::Ready = Arc::new(move || grants.iter().all(|granted| granted()));
        for pool in self.endpoint.pools().live() {
            pool.hand_over(&self.route, &tx, self.consumers.len(), subscribed.clone());
        }
        ackers.push(Acker {
            route: self.route.clone(),
            own: None,
        });
        drop((tx, member));
        engine.pipeline(intake, ackers).run().await;
        // The pipeline asked each connection to DISCONNECT after its last ack; each poll task
        // ends once that is sent. (If this future is dropped first, the tasks are stopped.)
        for connection in connections {
            connection.close().await;
        }
    }
}

impl Source for MqttSource {
    fn lanes(&self) -> usize {
        // The consumers' lanes, then parking's (a shared route) or the lane of what a pool
        // hands over (a route of its own).
        self.consumers.len() + 1
    }

    fn consumers(&self) -> Vec<Arc<ConsumerStatus>> {
        self.consumers.clone()
    }

    fn skip_marked(&self) -> Option<Arc<str>> {
        let marker = self.endpoint.config().origin_marker();
        marker.map(|(name, _)| name.into())
    }

    /// The consumers and the pipeline; ends once the pipeline has closed every lane and the
    /// consumers have let go (disconnected, or left to the pool).
    fn run(self: Box<Self>, engine: Engine) -> BoxFuture<'static, ()> {
        async move {
            let Some(name) = self.pool.clone() else {
                return self.run_own(engine).await;
            };
            let pool = Pool::get(&self.endpoint, &name, &self.budget).await;
            let stop = engine.ctx.shutdown.clone();
            match self.endpoint.pools().identifiers(&stop).await {
                Some(true) => self.run_shared(pool, engine).await,
                Some(false) => {
                    drop(pool);
                    events::NoSubscriptionIdentifiers {
                        route: &self.route,
                        broker: &self.endpoint.address(),
                    }
                    .emit();
                    self.run_own(engine).await
                }
                // Stopped before the broker answered: nothing was read.
                None => {}
            }
        }
        .boxed()
    }
}
