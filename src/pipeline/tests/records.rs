//! A flow reading Kafka or RocketMQ, on the pipeline, under paused time: a fake group member
//! (`Reader`) run by the records source, the scripted sink: each partition in order with a
//! retry ahead of what follows, commits only past what is settled, a pause with a batch in
//! hand, and a hard stop that commits nothing given up.

use std::collections::{BTreeMap, VecDeque};

use super::*;
use crate::flow::ConsumerStatus;
use crate::message::{Origin, Partition, System};
use crate::sources::records::{self, RecordSpec};
use crate::sources::Reader;

/// What the fake group member was asked, in virtual ms since the start.
#[derive(Default)]
struct Log {
    /// Messages not yet read.
    unread: VecDeque<Message>,
    /// Each commit: when, and the next offset per partition id.
    commits: Vec<(u64, BTreeMap<i32, i64>)>,
    paused: Vec<bool>,
    closed: bool,
    /// How long a read takes before it brings what there is.
    read_time: Duration,
}

struct FakeReader {
    start: Instant,
    log: Arc<Mutex<Log>>,
}

#[async_trait]
impl Reader for FakeReader {
    async fn poll(&mut self, max: usize, wait: Duration) -> Vec<Message> {
        let read_time = self.log.lock().unwrap().read_time;
        tokio::time::sleep(read_time).await;
        let batch: Vec<Message> = {
            let mut log = self.log.lock().unwrap();
            let n = log.unread.len().min(max);
            log.unread.drain(..n).collect()
        };
        if batch.is_empty() {
            tokio::time::sleep(wait).await;
        }
        batch
    }
    async fn commit(&mut self, next: &BTreeMap<Partition, i64>) {
        let at = self.start.elapsed().as_millis() as u64;
        let next = next.iter().map(|(p, o)| (p.id, *o)).collect();
        self.log.lock().unwrap().commits.push((at, next));
    }
    async fn set_paused(&mut self, paused: bool) {
        self.log.lock().unwrap().paused.push(paused);
    }
    async fn idle(&mut self, wait: Duration) {
        tokio::time::sleep(wait).await;
    }
    async fn close(self: Box<Self>) {
        self.log.lock().unwrap().closed = true;
    }
}

/// A system that has partitions.
static PARTITIONED: System = System {
    name: "partitioned",
    fields: None,
    ckafka_event: false,
};

/// Record `payload` at `offset` of partition `id`.
fn record(id: i32, offset: i64, payload: &str) -> Message {
    let origin = Origin {
        system: &PARTITIONED,
        partition: Partition {
            topic: "t".into(),
            broker: String::new(),
            id,
        },
        offset,
        key: None,
        tag: None,
    };
    Message::record(origin, Vec::new(), payload.to_owned().into())
}

struct Flow {
    fakes: Fakes,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Flow {
    /// Partition 0 holds `a0..a{n}`, partition 1 `b0..b{m}`, read interleaved; batches of 2,
    /// one of a partition out at a time.
    async fn start(
        a: i64,
        b: i64,
        delay: fn(&str) -> Duration,
        answer: fn(&str, u32) -> Option<Result<(), SinkError>>,
    ) -> Flow {
        Self::start_with(a, b, ordered(2, 0), delay, answer).await
    }

    async fn start_with(
        a: i64,
        b: i64,
        settings: Settings,
        delay: fn(&str) -> Duration,
        answer: fn(&str, u32) -> Option<Result<(), SinkError>>,
    ) -> Flow {
        let dir = tempfile::tempdir().unwrap();
        let fakes = Fakes::new(2, delay, answer, &dir.path().join("dead.jsonl")).await;
        let mut unread = VecDeque::new();
        for i in 0..a.max(b) {
            if i < a {
                unread.push_back(record(0, i, &format!("a{i}")));
            }
            if i < b {
                unread.push_back(record(1, i, &format!("b{i}")));
            }
        }
        let log = Arc::new(Mutex::new(Log {
            unread,
            ..Log::default()
        }));
        let start = Instant::now();
        let reader_log = log.clone();
        let open: records::Open = Box::new(move || {
            let reader = FakeReader {
                start,
                log: reader_log.clone(),
            };
            Box::pin(async move { Ok(Box::new(reader) as Box<dyn Reader>) })
        });
        let room = Arc::new(tokio::sync::Notify::new());
        let spec = RecordSpec {
            route: "test".into(),
            lanes: 2,
            pause: fakes.pause.clone(),
            status: Arc::new(ConsumerStatus::new("group".into())),
            max_messages: 8,
            max_bytes: 1 << 20,
            share: crate::flow::Budget::unbounded().share(room.clone()),
            room,
            shutdown: fakes.shutdown.clone(),
        };
        let (tx, intake) = crate::flow::intake();
        let (ackers, reader) = records::start(open, spec, tx);
        let pipeline = Pipeline {
            ctx: fakes.ctx.clone(),
            settings,
            intake,
            ackers,
        };
        let task = tokio::spawn(async move {
            pipeline.run().await;
            reader.await.unwrap();
        });
        Flow {
            fakes,
            log,
            task,
            _dir: dir,
        }
    }

    fn sent(&self) -> Vec<(u64, Vec<String>)> {
        self.fakes.calls.lock().unwrap().clone()
    }

    /// The last committed offset of partition `id` (0: none).
    fn committed(&self, id: i32) -> i64 {
        let log = self.log.lock().unwrap();
        let offsets = log.commits.iter().filter_map(|(_, c)| c.get(&id));
        offsets.copied().max().unwrap_or(0)
    }

    async fn stop(self) -> Self {
        self.fakes.shutdown.cancel();
        let mut flow = self;
        (&mut flow.task).await.unwrap();
        flow
    }
}

#[tokio::test(start_paused = true)]
async fn each_partition_goes_in_order_and_commits_wait_for_a_retry() {
    let flow = Flow::start(6, 3, no_delay, first_try_of_a1_fails).await;
    settle(Duration::from_secs(5)).await;
    let sent = flow.sent();
    // Partition 0's records in offset order, a1 retried before anything after it.
    let of_a: Vec<&str> = sent
        .iter()
        .flat_map(|(_, p)| p.iter().map(String::as_str))
        .filter(|p| p.starts_with('a'))
        .collect();
    assert_eq!(of_a, ["a0", "a1", "a1", "a2", "a3", "a4", "a5"], "{sent:?}");
    // Nothing past a0 committed before a1's second, successful send.
    let retried_at = sent.iter().filter(|(_, p)| p.contains(&"a1".into())).nth(1);
    let retried_at = retried_at.expect("a1 sent again").0;
    let commits = flow.log.lock().unwrap().commits.clone();
    for (at, next) in &commits {
        if next.get(&0).is_some_and(|n| *n > 1) {
            assert!(
                *at >= retried_at,
                "committed {next:?} at {at} ms, a1 sent at {retried_at}"
            );
        }
    }
    assert_eq!((flow.committed(0), flow.committed(1)), (6, 3));
    let flow = flow.stop().await;
    assert!(flow.log.lock().unwrap().closed, "the group member closed");
}

#[tokio::test(start_paused = true)]
async fn a_pause_holds_what_was_read_uncommitted_until_resume() {
    let flow = Flow::start(4, 0, no_delay, all_ok).await;
    flow.log.lock().unwrap().read_time = Duration::from_millis(100);
    // Paused while a read is under way: what it brings is held.
    settle(Duration::from_millis(50)).await;
    flow.fakes.pause.set(true);
    settle(Duration::from_secs(5)).await;
    // What the reader handed over is held: nothing sent, nothing committed, the reader paused.
    assert!(flow.sent().is_empty(), "{:?}", flow.sent());
    assert_eq!(flow.committed(0), 0);
    assert_eq!(flow.log.lock().unwrap().paused, [true]);
    assert_eq!(flow.fakes.stats.snapshot().in_flight, 4);
    flow.fakes.pause.set(false);
    settle(Duration::from_secs(5)).await;
    assert_eq!(flow.sent().iter().map(|c| c.1.len()).sum::<usize>(), 4);
    assert_eq!(flow.committed(0), 4);
    assert_eq!(flow.log.lock().unwrap().paused, [true, false]);
    flow.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_hard_stop_commits_what_was_delivered_and_nothing_it_gave_up() {
    fn only_a0(payload: &str, _: u32) -> Option<Result<(), SinkError>> {
        match payload {
            "a0" => Some(Ok(())),
            _ => fail(),
        }
    }
    let flow = Flow::start(3, 0, no_delay, only_a0).await;
    settle(Duration::from_secs(1)).await;
    assert_eq!(
        flow.committed(0),
        0,
        "a0 and a1 go in one batch: a1 is being retried"
    );
    flow.fakes.shutdown.cancel();
    flow.fakes.hard_stop.cancel();
    let flow = flow.stop().await;
    // a0 was delivered: committed; a1 and a2 were given up: left for the group to read again.
    assert_eq!(flow.committed(0), 1);
    assert!(flow.log.lock().unwrap().closed);
}

#[tokio::test(start_paused = true)]
async fn two_batches_of_a_partition_go_out_together_and_a_failure_resends_what_followed() {
    fn takes_10ms(_: &str) -> Duration {
        Duration::from_millis(10)
    }
    let settings = Settings {
        window: 2,
        ..ordered(2, 0)
    };
    let flow = Flow::start_with(6, 0, settings, takes_10ms, first_try_of_a1_fails).await;
    settle(Duration::from_secs(5)).await;
    let sent = flow.sent();
    // The second batch went out while the first was on its way.
    assert_eq!(
        sent[0],
        (0, vec!["a0".to_owned(), "a1".to_owned()]),
        "{sent:?}"
    );
    assert_eq!(
        sent[1],
        (0, vec!["a2".to_owned(), "a3".to_owned()]),
        "{sent:?}"
    );
    // a1 failed: a1 goes again, then what was delivered after it (a2, a3, and a4, a5 sent
    // meanwhile), so that the last copy of each arrives in order.
    let mut last: Vec<(usize, &str)> = Vec::new();
    for (n, (_, payloads)) in sent.iter().enumerate() {
        for p in payloads {
            last.retain(|(_, q)| q != p);
            last.push((n, p.as_str()));
        }
    }
    let order: Vec<&str> = last.iter().map(|(_, p)| *p).collect();
    assert_eq!(order, ["a0", "a1", "a2", "a3", "a4", "a5"], "{sent:?}");
    let again: Vec<&str> = sent[2..]
        .iter()
        .flat_map(|c| c.1.iter().map(String::as_str))
        .collect();
    assert!(again.starts_with(&["a1", "a2", "a3"]), "{sent:?}");
    assert_eq!(flow.committed(0), 6);
    flow.stop().await;
}
