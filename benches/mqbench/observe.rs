//! Watching a sink from the benchmark process: every record the file sink appends, or every
//! record on a Kafka or RocketMQ topic, counted into a [`Tally`] with its arrival time. A thread
//! each; it ends when all expected messages arrived or the sink stalled.

use std::borrow::Cow;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::ClientConfig;
use rocketmq_client_rust::{ClientRuntime, DefaultLitePullConsumer};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;

use crate::common;
use crate::payload::now_ns;
use crate::tally::{StallClock, Summary, Tally};

/// What to expect of a sink.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub count: u64,
    pub groups: usize,
    pub stall: Duration,
}

/// Follows the file sink's JSON lines as they are appended.
pub fn file(path: PathBuf, expect: Expect) -> JoinHandle<Summary> {
    std::thread::spawn(move || {
        #[derive(serde::Deserialize)]
        struct Line<'a> {
            #[serde(borrow)]
            payload: Cow<'a, str>,
        }
        let mut tally = Tally::new(expect.count, expect.groups);
        let mut clock = StallClock::new(expect.stall);
        let mut file = None;
        let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 1 << 20]);
        while !tally.complete() && !clock.stalled(tally.unique()) {
            let Some(f) = file.as_mut() else {
                file = std::fs::File::open(&path).ok();
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            let n = f.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            let arrival = now_ns();
            buf.extend_from_slice(&chunk[..n]);
            let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in buf[..whole]
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
            {
                match serde_json::from_slice::<Line>(line) {
                    Ok(l) => tally.record(l.payload.as_bytes(), arrival),
                    Err(_) => tally.record(b"", arrival),
                }
            }
            buf.drain(..whole);
        }
        tally.summary()
    })
}

/// Reads a Kafka topic from the start of every partition.
pub fn kafka(
    bootstrap: String,
    topic: String,
    partitions: i32,
    expect: Expect,
) -> JoinHandle<Summary> {
    let mut config = ClientConfig::new();
    config.set("fetch.wait.max.ms", "10");
    let consumer = common::kafka::reader(&bootstrap, &topic, partitions, config);
    // The first fetches wait on metadata and offset lookups: about half a second, which would
    // count as latency of the first messages. Let them happen before anything is published.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(1) {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            panic!("the new topic {topic} already holds records");
        }
    }
    std::thread::spawn(move || {
        let mut tally = Tally::new(expect.count, expect.groups);
        let mut clock = StallClock::new(expect.stall);
        while !tally.complete() && !clock.stalled(tally.unique()) {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => tally.record(m.payload().unwrap_or_default(), now_ns()),
                Some(Err(e)) => eprintln!("kafka observer: {e}"),
                None => {}
            }
        }
        tally.summary()
    })
}

/// Reads a new RocketMQ topic of `queues` queues from its first offset, with a lite pull
/// consumer of a group of its own on the client's `runtime`. Returns once the consumer holds
/// every queue and a poll came back empty (its pulls are under way), so that what it reads
/// after is timed from the start.
pub fn rocketmq(
    runtime: Arc<ClientRuntime>,
    namesrv: String,
    topic: String,
    queues: usize,
    expect: Expect,
) -> anyhow::Result<JoinHandle<Summary>> {
    let (ready, is_ready) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the reader");
        rt.block_on(async move {
            let group = common::unique("bench-reader");
            let consumer = DefaultLitePullConsumer::builder(runtime)
                .consumer_group(group.as_str())
                .name_server_addr(namesrv.as_str())
                .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
                .auto_commit(false)
                .pull_batch_size(256)
                .build()
                .expect("a lite pull consumer");
            consumer.start().await.expect("the reader starts");
            consumer
                .subscribe_with_expression(&topic, "*")
                .await
                .expect("the reader subscribes");
            let since = Instant::now();
            while consumer.assignment().await.map_or(0, |a| a.len()) < queues {
                assert!(
                    since.elapsed() < Duration::from_secs(60),
                    "the reader of {topic} was not given its {queues} queues in 60 s"
                );
                consumer.poll_with_timeout(50).await;
            }
            let early = consumer.poll_with_timeout(100).await;
            assert!(
                early.is_empty(),
                "the new topic {topic} already holds messages"
            );
            let _ = ready.send(());
            let mut tally = Tally::new(expect.count, expect.groups);
            let mut clock = StallClock::new(expect.stall);
            while !tally.complete() && !clock.stalled(tally.unique()) {
                let got = consumer.poll_with_timeout_zero_copy(50).await;
                let arrival = now_ns();
                for m in got {
                    tally.record(&m.body().unwrap_or_default(), arrival);
                }
            }
            consumer.shutdown().await;
            tally.summary()
        })
    });
    match is_ready.recv_timeout(Duration::from_secs(90)) {
        Ok(()) => Ok(reader),
        // Its panic message is on standard error already.
        Err(_) => match reader.join() {
            Err(_) => anyhow::bail!("the RocketMQ reader failed"),
            Ok(_) => anyhow::bail!("the RocketMQ reader ended before it was ready"),
        },
    }
}
