//! A consumer's worker: gathers what the consumer received into batches (up to `batch_size`,
//! waiting at most `max_wait`), keeps up to four batches in delivery at once, and acknowledges
//! them in the order they were received. While four are out, what arrives gathers into the
//! next batch, so batches grow with the load instead of their number: each batch in delivery
//! costs a task of about 1.4 KiB, which per message would be most of the bridge's memory when
//! many routes each receive a message at a time. `FuturesOrdered` yields finished batches in
//! the order they started, which is what keeps PUBACKs in PUBLISH order [MQTT-4.6.0-2].

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::deliver::{deliver, Done};
use super::start::RouteContext;
use crate::events;
use crate::mqtt::{Acker, Delivery};

/// Batches of one worker in delivery at once.
const MAX_BATCHES_IN_DELIVERY: usize = 4;

pub struct Worker {
    pub ctx: Arc<RouteContext>,
    pub rx: mpsc::UnboundedReceiver<Delivery>,
    pub acker: Acker,
    /// The consumer's number within the route, for metrics.
    pub consumer: u32,
    pub batch_size: usize,
    pub max_wait: Duration,
}

impl Worker {
    pub async fn run(mut self) {
        let mut in_flight = FuturesOrdered::new();
        let mut batch: Vec<Delivery> = Vec::new();
        let mut deadline: Option<Instant> = None;
        let mut open = true;
        loop {
            let due = deadline.is_some_and(|d| Instant::now() >= d);
            let room = in_flight.len() < MAX_BATCHES_IN_DELIVERY;
            if room && !batch.is_empty() && (batch.len() >= self.batch_size || due || !open) {
                let full = std::mem::take(&mut batch);
                let bytes = full.iter().map(|d| d.msg.size()).sum();
                events::BatchReceived {
                    route: &self.ctx.name,
                    consumer: self.consumer,
                    count: full.len(),
                    bytes,
                }
                .emit();
                in_flight.push_back(deliver(self.ctx.clone(), full));
                deadline = None;
                continue;
            }
            if !open && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => self.ack(done).await,
                _ = self.ctx.shutdown.cancelled(), if open => {
                    // Stop intake; what is still queued stays unacknowledged and is redelivered.
                    open = false;
                    self.rx.close();
                }
                next = self.rx.recv(), if open && batch.len() < self.batch_size => match next {
                    Some(d) => {
                        deadline.get_or_insert_with(|| Instant::now() + self.max_wait);
                        batch.push(d);
                        while batch.len() < self.batch_size {
                            match self.rx.try_recv() {
                                Ok(d) => batch.push(d),
                                Err(_) => break,
                            }
                        }
                    }
                    None => open = false,
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if room && deadline.is_some() => {}
            }
        }
        self.acker.disconnect().await;
    }

    async fn ack(&self, (batch, done): Done) {
        let mut stale = 0;
        for (delivery, ok) in batch.into_iter().zip(done) {
            if ok && !self.acker.ack(delivery.ack).await {
                stale += 1;
            }
        }
        if stale > 0 {
            events::StaleAcks {
                route: &self.ctx.name,
                count: stale,
            }
            .emit();
        }
    }
}
