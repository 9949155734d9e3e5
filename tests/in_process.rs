//! The library's `run`, driven in this process with a shutdown future of the test's own (no
//! binary, no signals): it delivers to a file, stops when the future completes, acknowledges
//! what it delivered (a second run in the same process gets nothing again), and refuses to
//! start on a connection it cannot build.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::config::{Config, Connection, Route};
use common::mqtt::Publisher;
use common::{eventually, mosquitto, unique};

fn config(mqtt_port: u16, dir: &Path, prefix: &str) -> mqbridge::config::Config {
    let text = Config::new(mqtt_port, "inproc")
        .mqtt("client_id_prefix", prefix)
        .connection("out", Connection::file("out.jsonl"))
        .route(
            Route::new("cars", "cars/#", "out")
                .set("consumers", 2)
                .set("batch_size", 50)
                .set("max_wait", "20ms"),
        )
        .text();
    mqbridge::config::parse_str(&text, dir, &|_| None).expect("valid config")
}

fn payloads(dir: &Path) -> HashMap<String, usize> {
    common::file_payloads(&dir.join("out.jsonl"))
}

/// Starts `run` on its own task; completing the returned sender stops it.
fn start(
    config: mqbridge::config::Config,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), mqbridge::RunError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(mqbridge::run(config, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// Publishes probes to `topic` until one reaches the file: the route's consumers are
/// subscribed.
async fn wait_flowing(publisher: &mut Publisher, dir: &Path, topic: &str) {
    let probe = unique("probe");
    for i in 0..100 {
        publisher
            .publish(topic, format!("{probe}-{i}"), Default::default())
            .await;
        let arrived = eventually(Duration::from_millis(100), || {
            payloads(dir).keys().any(|p| p.starts_with(&probe))
        });
        if arrived.await {
            return;
        }
    }
    panic!("the bridge delivered no probe on {topic}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_delivers_stops_on_its_future_and_acknowledges_what_it_delivered() {
    const N: usize = 2_000;
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("inproc");
    let (stop, task) = start(config(broker.port, dir.path(), &prefix));
    let mut publisher = Publisher::connect(broker.port).await;
    wait_flowing(&mut publisher, dir.path(), "cars/probe").await;
    publisher
        .publish_numbered(0..N, |i| format!("cars/{}", i % 7))
        .await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    let all = eventually(Duration::from_secs(30), || {
        let arrived = payloads(dir.path());
        (0..N).all(|i| arrived.contains_key(&format!("msg-{i}")))
    });
    assert!(all.await, "not every message reached the file");

    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), task).await;
    let result = ended.expect("run returns once its shutdown future completes");
    assert!(result.unwrap().is_ok());

    // The same sessions again: a graceful stop acknowledged everything, so nothing comes back.
    let before = payloads(dir.path());
    let (stop, task) = start(config(broker.port, dir.path(), &prefix));
    wait_flowing(&mut publisher, dir.path(), "cars/probe").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = payloads(dir.path());
    let again: Vec<_> = (0..N)
        .map(|i| format!("msg-{i}"))
        .filter(|p| after[p] != before[p])
        .collect();
    assert!(
        again.is_empty(),
        "redelivered after a graceful stop: {again:?}"
    );
    assert!(after.values().all(|&c| c == 1), "duplicates in a clean run");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn run_refuses_a_connection_it_cannot_build() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(broker.port, dir.path(), &unique("inproc"));
    let missing = dir.path().join("no/such/folder/out.jsonl");
    let text = Config::new(broker.port, "inproc")
        .unset("mqtt.client_id_prefix")
        .connection("out", Connection::file(missing.to_str().unwrap()))
        .text();
    config.connections = mqbridge::config::parse_str(&text, dir.path(), &|_| None)
        .unwrap()
        .connections;
    let error = mqbridge::run(config, std::future::pending())
        .await
        .expect_err("a file in a folder that does not exist cannot be opened");
    let text = error.to_string();
    assert!(
        text.starts_with("connection \"out\":") && text.contains("no/such/folder"),
        "{text}"
    );
}

/// The supervisor's handle per route: one route stops alone (its consumers disconnect keeping
/// their sessions, so the broker holds its messages) while the other flows on, and starts again
/// to receive what waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_route_stops_alone_and_resumes_with_what_the_broker_held() {
    use mqbridge::route::{RouteState, Shared, Supervisor};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    const N: usize = 200;
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let text = Config::new(broker.port, "sup")
        .connection("out", Connection::file("out.jsonl"))
        .route(Route::new("a", "a/#", "out"))
        .route(Route::new("b", "b/#", "out"))
        .text();
    let config = mqbridge::config::parse_str(&text, dir.path(), &|_| None).unwrap();
    let mut connections = BTreeMap::new();
    for (name, c) in &config.connections {
        connections.insert(name.clone(), c.connect(name).await.unwrap());
    }
    let dead_letter =
        mqbridge::dead_letter::DeadLetter::build(&config.dead_letter, config.mqtt.as_ref(), |_| {
            None
        })
        .await
        .unwrap();
    let mut supervisor = Supervisor::new(Shared {
        connections: Arc::new(connections),
        dead_letter: Arc::new(dead_letter),
        window_bytes: config.window_bytes(),
        data_dir: config.data_dir.clone(),
        budget: mqbridge::flow::Budget::new(config.memory_budget),
        shutdown: tokio_util::sync::CancellationToken::new(),
    });
    for route in &config.routes {
        supervisor.start(route, false).unwrap();
    }
    let mut publisher = Publisher::connect(broker.port).await;
    for topic in ["a/probe", "b/probe"] {
        wait_flowing(&mut publisher, dir.path(), topic).await;
    }

    assert_eq!(
        supervisor.stop("a", Duration::from_secs(10), false).await,
        Some(true)
    );
    assert!(supervisor.route("a").is_none());
    assert_eq!(supervisor.route("b").unwrap().state(), RouteState::Running);
    publisher
        .publish_numbered(0..N, |i| format!("a/{}", i % 3))
        .await;
    publisher
        .publish_numbered(N..2 * N, |i| format!("b/{}", i % 3))
        .await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    let b_arrived = eventually(Duration::from_secs(30), || {
        let arrived = payloads(dir.path());
        (N..2 * N).all(|i| arrived.contains_key(&format!("msg-{i}")))
    });
    assert!(b_arrived.await, "route b stopped with route a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrived = payloads(dir.path());
    assert!(
        (0..N).all(|i| !arrived.contains_key(&format!("msg-{i}"))),
        "route a took messages while stopped"
    );
    let stats = supervisor.route("b").unwrap().stats();
    assert!(stats.delivered >= N as u64, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");

    let route_a = config.routes.iter().find(|r| r.name == "a").unwrap();
    supervisor.start(route_a, false).unwrap();
    let a_arrived = eventually(Duration::from_secs(30), || {
        let arrived = payloads(dir.path());
        (0..N).all(|i| arrived.contains_key(&format!("msg-{i}")))
    });
    assert!(
        a_arrived.await,
        "what the broker held for route a did not come"
    );
    assert!(supervisor.stop_all(Duration::from_secs(10)).await);
    assert!(payloads(dir.path()).values().all(|&c| c == 1), "duplicates");
}
