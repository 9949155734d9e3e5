//! Bridging on the one flow model, against real servers: a route from one MQTT broker to a
//! second one (`type = "mqtt"`) loses nothing through the second broker's outage and a SIGKILL
//! of the bridge, keeps each topic's order, the user properties and the content type, and
//! holds its backlog in the first broker, not in memory; two routes on one broker that would
//! echo each other forever carry each message once (the origin marker cuts the loop); a route
//! from Kafka to Kafka keeps each record's key and headers and loses nothing through a kill;
//! Kafka records reach a second MQTT broker, not `[mqtt]`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rumqttc::v5::mqttbytes::v5::PublishProperties;

use common::bridge::{flow_settled, http_get};
use common::config::{Config, Connection, Route};
use common::device::{Device, Received};
use common::function::dead_letters;
use common::kafka::{create_topic, produce, producer, reader, text};
use common::mqtt::Publisher;
use common::{
    free_port, mosquitto, mosquitto_persistent, start_mosquitto, stop_mosquitto, unique, Bridge,
    KafkaUnderTest,
};

const RETRIES: &str = "mqbridge_delivery_retries_total";
const DELIVERED: &str = "mqbridge_messages_delivered_total";
const RECEIVED: &str = "mqbridge_messages_received_total";
const SKIPPED: &str = "mqbridge_messages_skipped_total";

fn topic_name(prefix: &str) -> String {
    unique(prefix).replace(['.', '/'], "_")
}

/// A `type = "mqtt"` connection to the broker on loopback `port`, its client ids (and its
/// origin marker's value) starting with `prefix`.
fn mqtt_connection(port: u16, prefix: &str) -> Connection {
    Connection::of("mqtt")
        .set("url", format!("mqtt://127.0.0.1:{port}"))
        .set("client_id_prefix", prefix)
}

/// The `i` of a payload `n-{i}`.
fn number(payload: &str) -> Option<usize> {
    payload.strip_prefix("n-")?.parse().ok()
}

/// How many different `n-{i}` arrived.
fn distinct(received: &[Received]) -> usize {
    received
        .iter()
        .filter_map(|r| number(&r.text()))
        .collect::<HashSet<_>>()
        .len()
}

/// Every value of the metric `name`, one per label set, with its labels.
async fn metric_values(admin: u16, name: &str) -> Vec<(String, f64)> {
    let text = http_get(admin, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The user properties of a message as it is published to the first broker: a name given
/// twice, in this order, one of them the message's own.
fn user_properties(i: usize) -> Vec<(String, String)> {
    vec![
        ("site".to_owned(), "north".to_owned()),
        ("site".to_owned(), i.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_to_a_second_broker_loses_nothing_through_its_outage_and_a_kill() {
    const N: usize = 10_000;
    const TOPICS: usize = 50;
    /// The bridge's window per consumer on broker A: small beside the outage's backlog.
    const RECEIVE_MAXIMUM: usize = 256;
    // Broker A, which the route reads. `mosquitto()` writes `max_queued_messages 0` (no limit)
    // into its configuration: mosquitto's default of 1000 queued messages per client would drop
    // most of the backlog A holds for the bridge's sessions while B is away (about 3,500
    // messages) and while the bridge is dead, so the limit is lifted rather than the publisher
    // paced to stay under it.
    let a = mosquitto();
    // Broker B, the destination, keeps its sessions on disk across its restart. A mosquitto
    // without persistence comes back having forgotten the device's session: what it had
    // acknowledged to the bridge but not yet passed on to the device would be gone, and so would
    // the device's subscription (what the bridge published next would find no subscriber and
    // be dropped with B's "no matching subscribers"). That would be B losing messages; what the
    // bridge must do is publish again everything B did not acknowledge, which this proves.
    let mut b = mosquitto_persistent();
    let admin = free_port();
    let cloud_prefix = unique("cloud");
    let config = Config::new(a.port, "bridging")
        .mqtt("receive_maximum", RECEIVE_MAXIMUM as i64)
        .admin(admin)
        .dead_letter("dead.jsonl")
        .connection("cloud", mqtt_connection(b.port, &cloud_prefix))
        .route(
            Route::to("up", "cloud")
                .set("source.filters", vec!["t/#"])
                .set("source.consumers", 2),
        );
    // The device's persistent session and QoS 1 subscription on B exist before anything flows.
    let device = Device::connect(b.port, "t/#").await;
    let mut bridge = Bridge::start(&config.text());
    bridge.wait_subscribed(0, 2);

    // 500 messages a second, `n-{i}` to `t/{i % 50}`: the first 6,000 through B's outage, the
    // rest, once B has taken that backlog, through the kill. mosquitto hands a shared group's
    // messages to its members in strict rotation, so with an even number of topics published
    // in turn each topic's messages all go to one of the two consumers, and their order on the
    // way in is the publisher's.
    const SECOND_PART: usize = 6_000;
    let published = Arc::new(AtomicUsize::new(0));
    let mut publisher = Publisher::connect(a.port).await;
    let (resume, resumed) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let published = published.clone();
        tokio::spawn(async move {
            let mut resumed = Some(resumed);
            for i in 0..N {
                if i == SECOND_PART {
                    resumed.take().unwrap().await.unwrap();
                }
                let props = PublishProperties {
                    content_type: Some("text/plain".into()),
                    user_properties: user_properties(i),
                    ..Default::default()
                };
                let topic = format!("t/{}", i % TOPICS);
                publisher.publish(&topic, format!("n-{i}"), props).await;
                published.store(i + 1, Ordering::SeqCst);
                if i % 50 == 49 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            publisher.wait_acked(Duration::from_secs(60)).await;
        })
    };

    // B goes away for 10 s once 2,500 have arrived.
    let got = device
        .wait(Duration::from_secs(60), |r| distinct(r) >= 2_500)
        .await;
    assert!(
        distinct(&got) >= 2_500,
        "{} arrived; log:\n{}",
        distinct(&got),
        bridge.log_text()
    );
    let retries_before = bridge.metric(admin, RETRIES).await;
    stop_mosquitto(&mut b);
    let stopped = Instant::now();
    let mut rss_max = 0;
    let mut delivered_at_one_second = None;
    while stopped.elapsed() < Duration::from_secs(10) {
        rss_max = rss_max.max(bridge.rss_kib());
        if delivered_at_one_second.is_none() && stopped.elapsed() >= Duration::from_secs(1) {
            delivered_at_one_second = Some(bridge.metric(admin, DELIVERED).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered_during = bridge.metric(admin, DELIVERED).await
        - delivered_at_one_second.expect("sampled a second into the outage");
    let retries_during = bridge.metric(admin, RETRIES).await - retries_before;
    // The windows of the route's two consumer connections (not of its pool's parking one).
    let mut windows = metric_values(admin, "mqbridge_inflight_messages_max").await;
    windows.retain(|(labels, _)| !labels.contains("-parked"));
    let arrived_before_outage = distinct(&device.all());
    let backlog = published.load(Ordering::SeqCst) - arrived_before_outage;
    start_mosquitto(&mut b);
    eprintln!(
        "outage of {:?}: {arrived_before_outage} arrived before it, backlog {backlog}, \
         {retries_during} retries, {delivered_during} delivered during it, peak RSS {} KiB, \
         windows {windows:?}",
        stopped.elapsed(),
        rss_max
    );
    assert_eq!(delivered_during, 0.0, "the outage was real: B took nothing");
    assert!(
        retries_during > 0.0,
        "publishes to B failed and were retried"
    );
    assert!(
        rss_max < 100 * 1024,
        "the bridge held {rss_max} KiB while B was away"
    );
    // The backlog waits in A: each consumer held at most its window (and the few packets one
    // socket read can bring), far less than what was waiting.
    assert_eq!(windows.len(), 2, "{windows:?}");
    for (labels, held) in &windows {
        assert!(
            *held <= (RECEIVE_MAXIMUM + 9) as f64,
            "{labels} held {held} messages"
        );
    }
    assert!(
        backlog > 4 * (RECEIVE_MAXIMUM + 9),
        "a backlog of {backlog} is no test of where it waits"
    );

    // B took the backlog; the stream goes on, and the bridge is killed in the middle of it,
    // holding messages it has not acknowledged.
    let got = device
        .wait(Duration::from_secs(60), |r| distinct(r) >= SECOND_PART)
        .await;
    assert!(
        distinct(&got) >= SECOND_PART,
        "{} arrived after the outage; log:\n{}",
        distinct(&got),
        bridge.log_text()
    );
    let caught_up_at = got.len();
    resume.send(()).unwrap();
    let got = device
        .wait(Duration::from_secs(30), |r| {
            distinct(r) >= SECOND_PART + 1_500
        })
        .await;
    assert!(distinct(&got) >= SECOND_PART + 1_500, "{}", distinct(&got));
    let start = Instant::now();
    let mut holding = 0.0;
    while holding == 0.0 && start.elapsed() < Duration::from_secs(10) {
        holding = bridge.metric(admin, "mqbridge_inflight_messages").await;
        if holding == 0.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(holding > 0.0, "the bridge held nothing to kill it over");
    bridge.kill();
    // Where the kill falls in what the device received: B passes a session's messages on in
    // the order it took them, and it took everything the dead bridge published before this.
    let mut witness = Publisher::connect(b.port).await;
    assert!(
        witness.publish_confirmed("t/killed", "killed").await,
        "the device's subscription outlived B's restart"
    );
    let got = device
        .wait(Duration::from_secs(30), |r| {
            r.iter().any(|m| m.text() == "killed")
        })
        .await;
    let killed_at = got
        .iter()
        .position(|m| m.text() == "killed")
        .expect("the device received the witness");
    let before = bridge.subscribed_count();
    bridge.spawn();
    bridge.wait_subscribed(before, 2);
    writer.await.unwrap();

    let got = device
        .wait(Duration::from_secs(90), |r| distinct(r) >= N)
        .await;
    let mut first_at: HashMap<usize, usize> = HashMap::new();
    let mut copies: HashMap<usize, usize> = HashMap::new();
    let mut per_topic: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (at, m) in got.iter().enumerate() {
        let Some(i) = number(&m.text()) else {
            continue;
        };
        assert_eq!(m.topic, format!("t/{}", i % TOPICS), "n-{i}");
        let p = &m.properties;
        assert_eq!(p.content_type.as_deref(), Some("text/plain"), "n-{i}");
        let (origin, own): (Vec<_>, Vec<_>) = p
            .user_properties
            .iter()
            .cloned()
            .partition(|(k, _)| k == "mqbridge-origin");
        assert_eq!(own, user_properties(i), "n-{i}: in order, with the repeat");
        assert_eq!(
            origin,
            [("mqbridge-origin".to_owned(), cloud_prefix.clone())],
            "n-{i}: marked with the publishing connection's prefix"
        );
        *copies.entry(i).or_default() += 1;
        if let std::collections::hash_map::Entry::Vacant(e) = first_at.entry(i) {
            e.insert(at);
            per_topic.entry(m.topic.clone()).or_default().push(i);
        }
    }
    let missing: Vec<usize> = (0..N).filter(|i| !copies.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{} lost, first {:?}; log:\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        bridge.log_text()
    );
    let twice: Vec<usize> = (0..N).filter(|i| copies[i] > 1).collect();
    let of_outage = twice.iter().filter(|i| first_at[i] < caught_up_at).count();
    let late: Vec<usize> = twice
        .iter()
        .copied()
        .filter(|i| first_at[i] > killed_at)
        .collect();
    eprintln!(
        "{} arrivals of {N} messages, {} published twice ({of_outage} first received before \
         B caught up after its outage), the kill at arrival {killed_at} holding {holding} \
         messages",
        got.len() - 1,
        twice.len()
    );
    // Duplicates only of what was in flight: a message's second copy comes from B's outage
    // or from the kill, never for something first published after the restart.
    assert!(
        late.is_empty(),
        "published twice after the restart: {late:?}"
    );
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
    // Each topic's messages first reached B in the order they were published: a retry is
    // never overtaken by what came after it, through the outage and the kill alike.
    for (topic, order) in &per_topic {
        if let Some(at) = order.windows(2).position(|w| w[1] <= w[0]) {
            let around = &order[at.saturating_sub(3)..(at + 12).min(order.len())];
            let (first, then) = (order[at], order[at + 1]);
            panic!(
                "{topic}: n-{first} reached B before n-{then}, first arrivals {around:?} \
                 (n-{first} at arrival {}, n-{then} at {}; the outage began after arrival \
                 {arrived_before_outage}, B had caught up at {caught_up_at}, the kill came at \
                 {killed_at})",
                first_at[&first], first_at[&then]
            );
        }
    }
}

/// What `route` received, delivered and skipped, once it holds nothing in flight.
async fn route_counts(bridge: &Bridge, admin: u16, route: &str) -> (f64, f64, f64) {
    let status = flow_settled(admin, "routes", route).await;
    assert_eq!(status["in_flight"], 0, "{status}");
    let label = format!("route=\"{route}\"");
    (
        bridge.metric_where(admin, RECEIVED, &label).await,
        bridge.metric_where(admin, DELIVERED, &label).await,
        bridge.metric_where(admin, SKIPPED, &label).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_to_mqtt_on_one_broker_does_not_loop() {
    let broker = mosquitto();
    let admin = free_port();
    let prefix = unique("loop");
    // `forth` carries `in/X` to `out/X` and `back` carries `out/X` to `in/X`, on the same broker:
    // without the origin marker, each message would go round forever.
    let config = Config::new(broker.port, "loop")
        .mqtt("client_id_prefix", prefix.as_str())
        .admin(admin)
        .dead_letter("dead.jsonl")
        .route(
            Route::to("forth", "mqtt")
                .set("source.filters", vec!["in/#"])
                .set("mqtt_topic", "out/{topic.2}"),
        )
        .route(
            Route::to("back", "mqtt")
                .set("source.filters", vec!["out/#"])
                .set("mqtt_topic", "in/{topic.2}"),
        );
    let bridge = Bridge::start(&config.text());
    bridge.wait_subscribed(0, 1);
    let device = Device::connect(broker.port, "#").await;
    let mut publisher = Publisher::connect(broker.port).await;
    // Ten messages into each end of the would-be loop.
    for i in 0..10 {
        let props = PublishProperties::default;
        publisher
            .publish(&format!("in/a-{i}"), format!("a-{i}"), props())
            .await;
        publisher
            .publish(&format!("out/b-{i}"), format!("b-{i}"), props())
            .await;
    }
    publisher.wait_acked(Duration::from_secs(10)).await;

    // Each crosses once, and its copy comes back to the other route, which skips it.
    let skipped = bridge
        .wait_metric(admin, SKIPPED, 20.0, Duration::from_secs(30))
        .await;
    assert!(skipped, "skipped {}", bridge.metric(admin, SKIPPED).await);
    let got = device
        .wait(Duration::from_secs(30), |r| r.len() >= 40)
        .await;
    for route in ["forth", "back"] {
        assert_eq!(
            route_counts(&bridge, admin, route).await,
            (20.0, 10.0, 10.0),
            "{route}: the 10 published to its end delivered, the 10 copies skipped"
        );
    }
    let mut seen: Vec<(String, String)> = got.iter().map(|r| (r.topic.clone(), r.text())).collect();
    seen.sort();
    let mut expected = Vec::new();
    for i in 0..10 {
        for (topic, payload) in [
            (format!("in/a-{i}"), format!("a-{i}")),
            (format!("out/a-{i}"), format!("a-{i}")),
            (format!("out/b-{i}"), format!("b-{i}")),
            (format!("in/b-{i}"), format!("b-{i}")),
        ] {
            expected.push((topic, payload));
        }
    }
    expected.sort();
    assert_eq!(seen, expected, "each message once at each end");
    for r in &got {
        let published_by_bridge = if r.text().starts_with('a') {
            r.topic.starts_with("out/")
        } else {
            r.topic.starts_with("in/")
        };
        let marker = r.user("mqbridge-origin");
        assert_eq!(
            marker,
            published_by_bridge.then_some(prefix.as_str()),
            "{} on {}",
            r.text(),
            r.topic
        );
    }

    // The counts stood still: one more message goes once round and is cut at the same place,
    // and everything adds up to one more, not to what a loop would have added meanwhile.
    publisher
        .publish("in/w", "w", PublishProperties::default())
        .await;
    publisher.wait_acked(Duration::from_secs(10)).await;
    let skipped = bridge
        .wait_metric(admin, SKIPPED, 21.0, Duration::from_secs(30))
        .await;
    assert!(skipped, "skipped {}", bridge.metric(admin, SKIPPED).await);
    let got = device
        .wait(Duration::from_secs(30), |r| r.len() >= 42)
        .await;
    for (route, expected) in [("forth", (21.0, 11.0, 10.0)), ("back", (21.0, 10.0, 11.0))] {
        assert_eq!(
            route_counts(&bridge, admin, route).await,
            expected,
            "{route}"
        );
    }
    assert_eq!(bridge.metric(admin, SKIPPED).await, 21.0);
    assert_eq!(got.len(), 42);
    assert_eq!(device.count(), 42, "nothing more went round");
    let skipped_for_origin = bridge
        .metric_where(admin, SKIPPED, "reason=\"origin\"")
        .await;
    assert_eq!(skipped_for_origin, 21.0);
}

/// Every record of a Kafka topic from its beginning, read in a thread of its own while the
/// test goes on.
struct Collector {
    records: Arc<Mutex<Vec<OwnedMessage>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> Self {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
            let (records, stop) = (records.clone(), stop.clone());
            std::thread::spawn(move || {
                let consumer = reader(&bootstrap, &topic, partitions, Default::default());
                while !stop.load(Ordering::SeqCst) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => records.lock().unwrap().push(m.detach()),
                        Some(Err(e)) => eprintln!("test reader: {e}"),
                        None => {}
                    }
                }
            })
        };
        Collector {
            records,
            stop,
            thread: Some(thread),
        }
    }

    fn all(&self) -> Vec<OwnedMessage> {
        self.records.lock().unwrap().clone()
    }

    /// How many different `n-{i}` it read.
    fn distinct(&self) -> usize {
        let records = self.records.lock().unwrap();
        let numbers = records.iter().filter_map(|r| number(&text(r)));
        numbers.collect::<HashSet<_>>().len()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes `payload` to `partition` of `topic`; its offset.
async fn produce_to(producer: &FutureProducer, topic: &str, partition: i32, payload: &str) -> i64 {
    let record = FutureRecord::<str, str>::to(topic)
        .partition(partition)
        .payload(payload);
    let delivery = producer
        .send(record, Duration::from_secs(30))
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
    delivery.offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_kafka_keeps_key_and_headers_and_a_kill_loses_nothing() {
    const N: usize = 400;
    const PARTITIONS: i32 = 2;
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let bootstrap = kafka.bootstrap();
    let (first, second) = (topic_name("from"), topic_name("to"));
    create_topic(&bootstrap, &first, PARTITIONS).await;
    create_topic(&bootstrap, &second, PARTITIONS).await;
    let admin = free_port();
    // tansu 0.6's faults, stepped around:
    // - a fetch from inside a stored batch starts at the next batch: the restarted bridge goes
    //   on from its committed offsets, so each record of `first` is produced alone (awaiting its
    //   delivery report), one record a batch, and every committed offset starts a batch. The
    //   test's reader reads `second` (batches of the bridge's producer) only from offset 0.
    // - a member joining while a killed member's session runs out can keep an empty
    //   assignment: a short `session.timeout.ms` ends the killed member's session quickly,
    //   so that the restarted one gets the partitions (librdkafka's default is 45 s).
    // - its high watermark is the last batch's base offset + 1: the test asks no partition
    //   for its end; where the kill falls is told by a record written after it (`cut`).
    let config = Config::new(broker.port, "k2k")
        .admin(admin)
        .dead_letter("dead.jsonl")
        .connection(
            "kafka",
            Connection::kafka(&bootstrap).librdkafka("session.timeout.ms", "6000"),
        )
        .route(Route::reading("copy", "kafka", &first, "kafka").set("topic", second.as_str()));
    let mut bridge = Bridge::start(&config.text());
    let collector = Collector::start(&bootstrap, &second, PARTITIONS);

    // Six keys, every tenth record without one; headers with a repeated name and one named like
    // the bridge's own MQTT metadata, which a record read from Kafka keeps as it is.
    let key = |i: usize| (i % 10 != 9).then(|| format!("k-{}", i % 6));
    let headers = |i: usize| -> Vec<(String, String)> {
        [
            ("fw", "1".to_owned()),
            ("fw", "2".to_owned()),
            ("n", i.to_string()),
            ("mqtt.topic", "spoof".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let writer = {
        let producer = producer(&bootstrap);
        let first = first.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let h = headers(i);
                let h: Vec<(&str, &str)> =
                    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                produce(&producer, &first, key(i).as_deref(), &h, &format!("n-{i}")).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let midway = common::eventually(Duration::from_secs(60), || collector.distinct() >= 120).await;
    assert!(
        midway,
        "{} copied; log:\n{}",
        collector.distinct(),
        bridge.log_text()
    );
    bridge.kill();
    // One record after the kill in each partition of `second`: what the dead bridge wrote
    // comes before it.
    let cutter = producer(&bootstrap);
    let mut cut = Vec::new();
    for p in 0..PARTITIONS {
        cut.push(produce_to(&cutter, &second, p, "cut").await);
    }
    bridge.spawn();
    writer.await.unwrap();
    let all = common::eventually(Duration::from_secs(90), || collector.distinct() >= N).await;
    let records = collector.all();

    let mut copies: HashMap<usize, Vec<(i32, i64)>> = HashMap::new();
    let mut per_key: BTreeMap<String, Vec<(i32, i64, usize)>> = BTreeMap::new();
    for r in &records {
        let body = text(r);
        if body == "cut" {
            continue;
        }
        let i = number(&body).unwrap_or_else(|| panic!("a record {body:?}"));
        let k = r.key().map(|k| String::from_utf8_lossy(k).into_owned());
        assert_eq!(k, key(i), "n-{i}: its key kept");
        assert_eq!(
            common::kafka::headers(r),
            headers(i),
            "n-{i}: its headers as they were, none added"
        );
        copies
            .entry(i)
            .or_default()
            .push((r.partition(), r.offset()));
        if let Some(k) = k {
            per_key
                .entry(k)
                .or_default()
                .push((r.partition(), r.offset(), i));
        }
    }
    let missing: Vec<usize> = (0..N).filter(|i| !copies.contains_key(i)).collect();
    assert!(
        all && missing.is_empty(),
        "{} lost: {missing:?}; log:\n{}",
        missing.len(),
        bridge.log_text()
    );
    // A key's records in one partition, first copies in the order produced.
    for (k, mut at) in per_key {
        at.sort();
        let partitions: HashSet<i32> = at.iter().map(|(p, _, _)| *p).collect();
        assert_eq!(partitions.len(), 1, "{k}: {at:?}");
        let mut seen = HashSet::new();
        let first: Vec<usize> = at
            .iter()
            .map(|(_, _, i)| *i)
            .filter(|i| seen.insert(*i))
            .collect();
        let back = first.windows(2).find(|w| w[1] <= w[0]);
        assert!(back.is_none(), "{k}: {back:?} out of order in {first:?}");
    }
    // Copied twice only what the dead bridge had not committed: a copy of each came before
    // the kill.
    let twice: Vec<usize> = (0..N).filter(|i| copies[i].len() > 1).collect();
    let late: Vec<usize> = twice
        .iter()
        .copied()
        .filter(|i| !copies[i].iter().any(|(p, o)| *o < cut[*p as usize]))
        .collect();
    eprintln!(
        "{} records for {N}, {} copied twice, the kill at offsets {cut:?}",
        records.len() - PARTITIONS as usize,
        twice.len()
    );
    assert!(late.is_empty(), "copied twice after the restart: {late:?}");
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_records_reach_a_second_mqtt_broker() {
    const N: usize = 60;
    let default = mosquitto();
    let cloud = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = topic_name("cmd");
    create_topic(&kafka.bootstrap(), &topic, 2).await;
    let admin = free_port();
    let cloud_prefix = unique("cloud");
    let config = Config::new(default.port, "k2m")
        .admin(admin)
        .dead_letter("dead.jsonl")
        .connection("kafka", Connection::kafka(&kafka.bootstrap()))
        .connection("cloud", mqtt_connection(cloud.port, &cloud_prefix))
        .route(
            Route::reading("commands", "kafka", &topic, "cloud")
                .set("mqtt_topic", "devices/{key}/cmd"),
        );
    let on_cloud = Device::connect(cloud.port, "devices/+/cmd").await;
    let on_default = Device::connect(default.port, "#").await;
    let bridge = Bridge::start(&config.text());
    let producer = producer(&kafka.bootstrap());
    for i in 0..N {
        let headers = [
            ("fw", "1"),
            ("fw", "2"),
            ("site", "north"),
            ("mqtt.content.type", "text/plain"),
        ];
        let key = format!("P-{}", i % 4);
        produce(&producer, &topic, Some(&key), &headers, &format!("n-{i}")).await;
    }
    let got = on_cloud
        .wait(Duration::from_secs(60), |r| distinct(r) >= N)
        .await;
    assert_eq!(
        distinct(&got),
        N,
        "every record reached the second broker; log:\n{}",
        bridge.log_text()
    );
    let status = flow_settled(admin, "routes", "commands").await;
    assert_eq!(status["in_flight"], 0, "{status}");
    assert_eq!(status["delivered"], N, "{status}");
    assert_eq!(on_cloud.count(), N, "each once");
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in on_cloud.all() {
        let i = number(&r.text()).unwrap();
        assert_eq!(r.topic, format!("devices/P-{}/cmd", i % 4));
        per_key.entry(r.topic.clone()).or_default().push(i);
        let p = &r.properties;
        assert_eq!(p.content_type.as_deref(), Some("text/plain"), "n-{i}");
        let fw: Vec<&str> = p
            .user_properties
            .iter()
            .filter(|(k, _)| k == "fw")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(fw, ["1", "2"], "n-{i}: headers in order with repeats");
        assert_eq!(r.user("site"), Some("north"), "n-{i}");
        assert_eq!(r.user("mqbridge-origin"), Some(cloud_prefix.as_str()));
        assert!(r.user("mqtt.content.type").is_none(), "n-{i}: {p:?}");
    }
    for (topic, order) in &per_key {
        let back = order.windows(2).find(|w| w[1] <= w[0]);
        assert!(back.is_none(), "{topic}: {order:?}");
    }
    // `[mqtt]` got nothing: its device, which does receive what is published there, has
    // only the witness.
    let mut publisher = Publisher::connect(default.port).await;
    assert!(publisher.publish_confirmed("witness", "witness").await);
    let got = on_default
        .wait(Duration::from_secs(10), |r| {
            r.iter().any(|m| m.text() == "witness")
        })
        .await;
    let texts: Vec<String> = got.iter().map(Received::text).collect();
    assert_eq!(texts, ["witness"], "nothing reached [mqtt] but the witness");
    assert!(dead_letters(&bridge.dir.join("dead.jsonl")).is_empty());
}
