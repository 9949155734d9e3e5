//! `/readyz` tells whether each route reads its source, against real servers: a subscription
//! the broker refuses keeps the route `starting` with the broker's reason and the bridge not
//! ready (while a route the broker accepts runs), and a Kafka group member that the group gives
//! no partition counts as not reading once that lasted longer than its session.

mod common;

use std::time::Duration;

use common::bridge::{flow_status, http_request};
use common::config::{Config, Connection, Route};
use common::kafka::create_topic;
use common::{free_port, mosquitto, mosquitto_refusing, unique, Bridge, KafkaUnderTest};

/// `/readyz`'s status and body, once `done` holds of them, or the last ones after `limit`.
async fn readyz_until(
    admin: u16,
    limit: Duration,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let start = std::time::Instant::now();
    loop {
        let (status, body) = http_request(admin, "GET", "/readyz", None).await;
        if done(status, &body) || start.elapsed() > limit {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_keeps_the_route_starting_and_the_bridge_not_ready() {
    // mosquitto authorizes a shared subscription by its whole filter, `$share/` included.
    let broker = mosquitto_refusing("$share/good/allowed/#");
    let admin = free_port();
    let config = Config::new(broker.port, "ready")
        .admin(admin)
        .connection("out", Connection::file("out.jsonl"))
        .route(Route::new("good", "allowed/#", "out"))
        .route(Route::new("bad", "denied/#", "out"));
    let bridge = Bridge::start(&config.text());
    common::wait_port(admin, Duration::from_secs(10));
    let (status, body) = readyz_until(admin, Duration::from_secs(20), |status, body| {
        status == 503 && body.contains("cannot read its source")
    })
    .await;
    assert_eq!(status, 503, "{body}\n{}", bridge.log_text());
    let line = body
        .lines()
        .find(|l| l.starts_with("route \"bad\""))
        .unwrap_or_else(|| panic!("no line for the route: {body}"));
    assert!(
        line.contains("cannot read its source") && line.contains("NotAuthorized"),
        "{body}"
    );
    assert!(
        !body.contains("route \"good\""),
        "the granted route is fine: {body}"
    );
    let bad = flow_status(admin, "routes", "bad").await;
    assert_eq!(bad["state"], "starting", "{bad}");
    assert!(
        bad["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("NotAuthorized"),
        "{bad}"
    );
    // The routes share one connection; the broker answers their SUBSCRIBEs one by one.
    let mut good = flow_status(admin, "routes", "good").await;
    for _ in 0..100 {
        if good["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        good = flow_status(admin, "routes", "good").await;
    }
    assert_eq!(good["state"], "running", "{good}");
    // The status shows each route's source as what it is.
    assert_eq!(good["source"]["kind"], "mqtt", "{good}");
    assert_eq!(good["source"]["filters"][0], "allowed/#", "{good}");
    assert_eq!(good["source"]["share_group"], "good", "{good}");
    assert_eq!(good["sink"]["kind"], "file", "{good}");
    assert!(good["source"].get("group").is_none(), "{good}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_without_partitions_is_not_ready_once_its_session_passed() {
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("one-partition").replace(['.', '/'], "_");
    create_topic(&kafka.bootstrap(), &topic, 1).await;
    let group = unique("readiness").replace(['.', '/'], "_");
    // Two bridges in one group on a topic of one partition: one of them reads nothing.
    let start = |tag: &str| {
        let admin = free_port();
        let config = Config::new(broker.port, tag)
            .admin(admin)
            .connection(
                "ck",
                Connection::kafka(&kafka.bootstrap()).librdkafka("session.timeout.ms", "6000"),
            )
            .connection("out", Connection::file("out.jsonl"))
            .route(
                Route::reading("orders", "ck", &topic, "out").set("source.group", group.as_str()),
            );
        (admin, Bridge::start(&config.text()))
    };
    let (first, _a) = start("member-a");
    let (second, _b) = start("member-b");
    common::wait_port(first, Duration::from_secs(10));
    common::wait_port(second, Duration::from_secs(10));
    // Whichever the group leaves without the partition says so once its session (6 s) passed.
    let idle = |status: u16, body: &str| status == 503 && body.contains("no partition");
    let started = std::time::Instant::now();
    let (idle_one, reader, body) = loop {
        let (a, b) = tokio::join!(
            http_request(first, "GET", "/readyz", None),
            http_request(second, "GET", "/readyz", None)
        );
        match (idle(a.0, &a.1), idle(b.0, &b.1)) {
            (true, true) => panic!("both members read nothing:\n{a:?}\n{b:?}"),
            (true, false) => break (first, second, a.1),
            (false, true) => break (second, first, b.1),
            (false, false) if started.elapsed() < Duration::from_secs(40) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            (false, false) => panic!("no member said it reads nothing:\n{a:?}\n{b:?}"),
        }
    };
    assert!(
        body.contains("route \"orders\"") && body.contains("longer than its session"),
        "{body}"
    );
    let status = flow_status(idle_one, "routes", "orders").await;
    assert_eq!(status["source"]["kind"], "kafka", "{status}");
    assert_eq!(status["source"]["group"], group.as_str(), "{status}");
    assert_eq!(status["source"]["topic"], topic.as_str(), "{status}");
    assert!(
        status["source"]["partitions"].as_array().is_some(),
        "{status}"
    );
    assert!(status["source"].get("filters").is_none(), "{status}");
    // The member with the partition is ready.
    let (status, body) = readyz_until(reader, Duration::from_secs(10), |s, _| s == 200).await;
    assert_eq!(status, 200, "{body}");
}
