//! How far a group member is behind its partitions (or queues): each partition's end, asked of
//! the source now and then (`Reader::ask_ends`), less the offset the member has committed
//! there, as the gauge `mqbridge_source_lag_messages{route,topic,partition}`. The ends are
//! asked in a task of the source's own, so that a source out of reach never holds up the
//! reader; an answer counts from the turn it comes, and every commit counts against the last
//! end known. Before the first commit of a run, the member's place is the first offset it read
//! (everything before it was committed already); a partition it has read nothing from shows no
//! lag, and one a rebalance took away keeps its last value (the gauge is not removed).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::events::SourceLag;
use crate::message::Partition;

/// How often the partitions' ends are asked for.
const ASK_EVERY: Duration = Duration::from_secs(5);

/// The source's answer to an ask: the end of each partition it could tell.
pub type Ends = JoinHandle<Vec<(Partition, i64)>>;

pub struct Lag {
    route: String,
    partitions: BTreeMap<Partition, Place>,
    /// The ask not answered yet.
    asking: Option<Ends>,
    asked: Option<Instant>,
}

/// Where the member stands in a partition.
struct Place {
    /// The offset after the last message committed.
    at: i64,
    /// The partition's end, as last told.
    end: Option<i64>,
    gauge: SourceLag,
}

impl Place {
    fn show(&self) {
        if let Some(end) = self.end {
            self.gauge.show(end - self.at);
        }
    }
}

impl Lag {
    pub fn new(route: &str) -> Self {
        Lag {
            route: route.to_owned(),
            partitions: BTreeMap::new(),
            asking: None,
            asked: None,
        }
    }

    /// A message read at `offset`: the partition's place, until a commit gives one. Returns
    /// the partition's label (`3`, `broker-a:3`) when it is the first read from it.
    pub fn read(&mut self, partition: &Partition, offset: i64) -> Option<String> {
        if self.partitions.contains_key(partition) {
            return None;
        }
        let label = label(partition);
        let place = Place {
            at: offset,
            end: None,
            gauge: SourceLag::new(&self.route, &partition.topic, &label),
        };
        self.partitions.insert(partition.clone(), place);
        Some(label)
    }

    /// Offsets committed: the next offset per partition.
    pub fn committed(&mut self, next: &BTreeMap<Partition, i64>) {
        for (partition, offset) in next {
            if let Some(place) = self.partitions.get_mut(partition) {
                place.at = place.at.max(*offset);
                place.show();
            }
        }
    }

    /// Takes the answer to the last ask if it came, and asks `ask` again once `ASK_EVERY` has
    /// passed since.
    pub fn turn(&mut self, ask: impl FnOnce(&[Partition]) -> Option<Ends>) {
        if let Some(asking) = self.asking.take_if(|a| a.is_finished()) {
            let ends = asking
                .now_or_never()
                .and_then(Result::ok)
                .unwrap_or_default();
            for (partition, end) in ends {
                if let Some(place) = self.partitions.get_mut(&partition) {
                    place.end = Some(end);
                    place.show();
                }
            }
        }
        let due = self.asked.is_none_or(|at| at.elapsed() >= ASK_EVERY);
        if self.asking.is_none() && due && !self.partitions.is_empty() {
            self.asked = Some(Instant::now());
            let partitions: Vec<Partition> = self.partitions.keys().cloned().collect();
            self.asking = ask(&partitions);
        }
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

    /// Asks that record what they were asked and answer `end` for each partition.
    fn answering(
        end: i64,
        asked: &mut Vec<Vec<Partition>>,
    ) -> impl FnOnce(&[Partition]) -> Option<Ends> + '_ {
        move |partitions| {
            asked.push(partitions.to_vec());
            let ends = partitions.iter().map(|p| (p.clone(), end)).collect();
            Some(tokio::spawn(async move { ends }))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lag_counts_from_the_first_read_then_from_each_commit() {
        let mut lag = Lag::new("r");
        let mut asked = Vec::new();
        lag.turn(answering(50, &mut asked));
        assert!(asked.is_empty(), "nothing read: nothing to ask");
        lag.read(&partition(0), 40);
        lag.read(&partition(0), 41);
        lag.turn(answering(50, &mut asked));
        assert_eq!(asked, [vec![partition(0)]]);
        assert_eq!(lag.partitions[&partition(0)].at, 40);
        tokio::task::yield_now().await;
        lag.turn(answering(60, &mut asked));
        assert_eq!(asked.len(), 1, "asked again only after ASK_EVERY");
        assert_eq!(
            lag.partitions[&partition(0)].end,
            Some(50),
            "the answer counts at once"
        );
        lag.committed(&BTreeMap::from([(partition(0), 45), (partition(1), 9)]));
        assert_eq!(lag.partitions[&partition(0)].at, 45);
        assert!(
            !lag.partitions.contains_key(&partition(1)),
            "never read here"
        );
        tokio::time::advance(ASK_EVERY).await;
        lag.turn(answering(60, &mut asked));
        assert_eq!(asked.len(), 2);
    }
}
