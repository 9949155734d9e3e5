//! How far a group member is behind its partitions (or queues): each partition's end, asked of
//! the source now and then (`Reader::ends`), less the offset the member has committed there,
//! as the gauge `mqbridge_source_lag_messages{route,topic,partition}`. Before the first commit
//! of a run, the member's place is the first offset it read (everything before it was
//! committed already); a partition it has read nothing from shows no lag, and one a rebalance
//! took away keeps its last value (the gauge is not removed).

use std::collections::BTreeMap;
use std::time::Duration;

use metrics::{gauge, Gauge};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::message::Partition;

/// How often the partitions' ends are asked for.
pub const ASK_EVERY: Duration = Duration::from_secs(5);

pub struct Lag {
    route: String,
    /// Per partition: the offset after the last message committed, and its gauge.
    partitions: BTreeMap<Partition, (i64, Gauge)>,
    asked: Option<Instant>,
}

impl Lag {
    pub fn new(route: &str) -> Self {
        Lag {
            route: route.to_owned(),
            partitions: BTreeMap::new(),
            asked: None,
        }
    }

    /// A message read at `offset`: the partition's place, until a commit gives one.
    pub fn read(&mut self, partition: &Partition, offset: i64) {
        if !self.partitions.contains_key(partition) {
            let labels = [
                ("route", self.route.clone()),
                ("topic", partition.topic.clone()),
                ("partition", label(partition)),
            ];
            let gauge = gauge!("mqbridge_source_lag_messages", &labels);
            self.partitions.insert(partition.clone(), (offset, gauge));
        }
    }

    /// Offsets committed: the next offset per partition.
    pub fn committed(&mut self, next: &BTreeMap<Partition, i64>) {
        for (partition, offset) in next {
            if let Some((at, _)) = self.partitions.get_mut(partition) {
                *at = (*at).max(*offset);
            }
        }
    }

    /// The partitions whose ends are due to be asked for, every `ASK_EVERY`.
    pub fn due(&mut self) -> Option<Vec<Partition>> {
        if self.partitions.is_empty() || self.asked.is_some_and(|at| at.elapsed() < ASK_EVERY) {
            return None;
        }
        self.asked = Some(Instant::now());
        Some(self.partitions.keys().cloned().collect())
    }

    /// The partitions' ends, as the source gave them.
    pub fn ends(&self, ends: &[(Partition, i64)]) {
        for (partition, end) in ends {
            if let Some((at, gauge)) = self.partitions.get(partition) {
                gauge.set((end - at).max(0) as f64);
            }
        }
    }
}

/// The partitions' ends asked for in the background, so that a source out of reach holds up
/// a task of its own, not the reader: each ask takes the answer to the last one, if it came,
/// and sends the next once it did.
#[derive(Default)]
pub struct Asking(Option<JoinHandle<Vec<(Partition, i64)>>>);

impl Asking {
    pub async fn next(
        &mut self,
        ask: impl FnOnce() -> JoinHandle<Vec<(Partition, i64)>>,
    ) -> Vec<(Partition, i64)> {
        let last = match self.0.take() {
            Some(asking) if asking.is_finished() => asking.await.unwrap_or_default(),
            Some(asking) => {
                self.0 = Some(asking);
                return Vec::new();
            }
            None => Vec::new(),
        };
        self.0 = Some(ask());
        last
    }
}

/// A Kafka partition's number, or a RocketMQ queue's broker and number (`broker-a:3`).
fn label(p: &Partition) -> String {
    match p.broker.is_empty() {
        true => p.id.to_string(),
        false => format!("{}:{}", p.broker, p.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(id: i32) -> Partition {
        Partition {
            topic: "t".into(),
            broker: String::new(),
            id,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lag_counts_from_the_first_read_then_from_each_commit() {
        let mut lag = Lag::new("r");
        assert!(lag.due().is_none(), "nothing read: nothing to ask");
        lag.read(&partition(0), 40);
        lag.read(&partition(0), 41);
        assert_eq!(lag.due(), Some(vec![partition(0)]));
        assert!(lag.due().is_none(), "asked again only after ASK_EVERY");
        assert_eq!(lag.partitions[&partition(0)].0, 40);
        lag.committed(&BTreeMap::from([(partition(0), 45), (partition(1), 9)]));
        assert_eq!(lag.partitions[&partition(0)].0, 45);
        assert!(
            !lag.partitions.contains_key(&partition(1)),
            "never read here"
        );
        tokio::time::advance(ASK_EVERY).await;
        assert_eq!(lag.due(), Some(vec![partition(0)]));
    }
}
