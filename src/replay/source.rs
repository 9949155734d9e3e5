//! The letters of one route as a source of its pipeline: handed over in their order, each
//! with its order key, and recorded as replayed once the pipeline acked it done (delivered,
//! filtered or dead-lettered again). The source ends when every letter was handed over and
//! acked: the pipeline then closes.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::letters::{Letter, Record};
use crate::flow::{Acker, ConsumerStatus, Delivery};
use crate::pipeline::{Engine, Source, SourceContext};

pub struct LetterSource {
    letters: Vec<Letter>,
    record: Arc<Record>,
    route: Arc<str>,
    lanes: usize,
    ordered: bool,
}

impl LetterSource {
    pub fn new(letters: Vec<Letter>, record: Arc<Record>, context: &SourceContext) -> Self {
        LetterSource {
            letters,
            record,
            route: context.route.clone(),
            lanes: context.concurrency.max(1),
            ordered: context.ordered,
        }
    }
}

/// A letter's id, recorded when it is done.
pub struct Token(String);

pub struct LetterAcker {
    record: Arc<Record>,
    route: Arc<str>,
}

#[async_trait]
impl Acker for LetterAcker {
    type Token = Token;

    async fn ack(&self, released: Vec<(Token, bool)>) {
        let done = released
            .iter()
            .filter(|(_, done)| *done)
            .map(|(t, _)| t.0.as_str());
        if let Err(e) = self.record.add(done) {
            // The letters went through; a second replay would send them again.
            tracing::error!(route = &*self.route, error = %e, "recording replayed letters failed");
        }
    }

    async fn close(&self) {}
}

impl Source for LetterSource {
    fn lanes(&self) -> usize {
        self.lanes
    }

    fn consumers(&self) -> Vec<Arc<ConsumerStatus>> {
        Vec::new()
    }

    fn run(self: Box<Self>, engine: Engine) -> BoxFuture<'static, ()> {
        let (tx, intake) = crate::flow::intake();
        let ackers = (0..self.lanes)
            .map(|_| LetterAcker {
                record: self.record.clone(),
                route: self.route.clone(),
            })
            .collect();
        let lanes = self.lanes as u64;
        for (n, letter) in self.letters.into_iter().enumerate() {
            let key = match self.ordered {
                true => letter.message.order_key(),
                false => n as u64,
            };
            let _ = tx.send(Box::new(Delivery {
                lane: (key % lanes) as usize,
                key,
                msg: letter.message,
                token: Token(letter.id),
            }));
        }
        // Closed: the pipeline ends once it delivered and acked everything handed over.
        drop(tx);
        let pipeline = engine.pipeline(intake, ackers);
        async move { pipeline.run().await }.boxed()
    }
}
