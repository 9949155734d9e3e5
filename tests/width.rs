//! Routes sharing consumer connections (the pools of `connectors/mqtt/pool`), on mosquitto
//! 2.0.11: a message two routes read reaches both and survives a SIGKILL; a destination that
//! stalls does not slow the routes that deliver elsewhere; pausing, restarting and removing one
//! route among many moves nothing else and makes no new connection; a route's subscriptions
//! moving while a connection is down, by reload or pause, lose nothing; the memory budget
//! holds.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::bridge::http_request;
use common::config::{Config, Connection, Route};
use common::function::{FunctionServer, Reply};
use common::kafka::{all_arrived, create_topic};
use common::mqtt::Publisher;
use common::proxy::Proxy;
use common::{
    eventually, file_payloads, free_port, mosquitto, mosquitto_log, mosquitto_verbose, unique,
    Bridge, KafkaUnderTest,
};

const CONNECTS: &str = "mqbridge_mqtt_connects_total";
const DELIVERED: &str = "mqbridge_messages_delivered_total";

/// A route to the file connection `out` whose rule tags every payload with the route's name,
/// so that the one file tells the routes apart.
fn tagged(name: &str, filter: &str) -> Route {
    Route::new(name, filter, "out").set(
        "transform",
        format!(".payload = \"{name}:\" + string!(.payload)"),
    )
}

/// How many copies of each payload the file holds.
fn copies(path: &Path) -> HashMap<String, usize> {
    file_payloads(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_two_routes_read_reaches_both_once_and_a_kill_loses_neither() {
    const N: usize = 4000;
    let broker = mosquitto();
    let admin = free_port();
    // `all` reads every device, `odd` the odd ones: each odd message matches both, on the
    // connections the two routes share (both deliver to `out`).
    let text = Config::new(broker.port, "overlap")
        .admin(admin)
        .connection("out", Connection::file("out.jsonl"))
        .route(tagged("all", "dev/#"))
        .route(tagged("odd", "dev/odd/#"))
        .dead_letter("dead.jsonl")
        .text();
    let mut bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 2);
    let out = bridge.dir.join("out.jsonl");
    let topic = |i: usize| match i % 2 {
        1 => format!("dev/odd/{}", i % 5),
        _ => format!("dev/even/{}", i % 5),
    };
    let mut publisher = Publisher::connect(broker.port).await;
    publisher.publish_numbered(0..N / 2, topic).await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    let some = eventually(Duration::from_secs(20), || copies(&out).len() > N / 4).await;
    assert!(some, "{}", bridge.log_text());
    bridge.kill();
    publisher.publish_numbered(N / 2..N, topic).await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    bridge.spawn();

    let want = |i: usize| {
        let mut names = vec![format!("all:msg-{i}")];
        if i % 2 == 1 {
            names.push(format!("odd:msg-{i}"));
        }
        names
    };
    let everything = eventually(Duration::from_secs(60), || {
        let got = copies(&out);
        (0..N).flat_map(want).all(|p| got.contains_key(&p))
    })
    .await;
    let got = copies(&out);
    let missing: Vec<String> = (0..N)
        .flat_map(want)
        .filter(|p| !got.contains_key(p))
        .take(10)
        .collect();
    assert!(everything, "missing {missing:?}\n{}", bridge.log_text());
    // Nothing went where it should not: `odd` took no even message.
    assert!(
        (0..N)
            .filter(|i| i % 2 == 0)
            .all(|i| !got.contains_key(&format!("odd:msg-{i}"))),
        "odd took an even message"
    );
    // Duplicates come only from the kill; before it each copy arrived once.
    let repeated = got.values().filter(|&&c| c > 1).count();
    eprintln!("{repeated} payloads arrived more than once (the kill)");
    assert!(repeated < N / 4, "{repeated} repeated");
    // The two routes read through one pool: two connections (one consumer and parking).
    let log = bridge.log_text();
    assert!(log.contains("client_id=\"overlap-"), "{log}");
    assert!(
        !log.contains("overlap-all-1"),
        "a connection of the route's own: {log}"
    );
}

/// Publishes `range` to `up/…` and returns the rate at which route `up` delivered them, read
/// from its delivered count (reading the growing file would slow the later rounds).
async fn rate_of(
    publisher: &mut Publisher,
    range: std::ops::Range<usize>,
    bridge: &Bridge,
    admin: u16,
) -> f64 {
    let n = range.len() as f64;
    let delivered = || bridge.metric_where(admin, DELIVERED, "route=\"up\"");
    let before = delivered().await;
    let started = Instant::now();
    publisher
        .publish_numbered(range, |i| format!("up/{}", i % 8))
        .await;
    let done = eventually_async(Duration::from_secs(60), || async {
        delivered().await >= before + n
    });
    assert!(done.await, "the working route stopped");
    n / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_destination_does_not_slow_a_route_that_delivers_elsewhere() {
    const BATCH: usize = 20_000;
    const STALLED: usize = 3_000;
    const ROUNDS: usize = 5;
    let broker = mosquitto();
    let kafka = KafkaUnderTest::start().await;
    let topic = unique("stalled");
    create_topic(&kafka.bootstrap(), &topic, 1).await;
    let admin = free_port();
    let text = Config::new(broker.port, "stall")
        .admin(admin)
        .connection("out", Connection::file("out.jsonl"))
        .connection(
            "kafka",
            Connection::kafka(&kafka.bootstrap()).librdkafka("reconnect.backoff.max.ms", "500"),
        )
        .route(Route::new("up", "up/#", "out"))
        .route(Route::new("down", "down/#", "kafka").set("topic", topic.as_str()))
        .dead_letter("dead.jsonl")
        .text();
    let bridge = Bridge::start(&text);
    bridge.wait_subscribed(0, 2);
    let mut publisher = Publisher::connect(broker.port).await;

    // Alone, then beside a route whose destination is gone, five times over (the stall
    // lifted and drained between); the median of each, the machine being shared and noisy.
    let held = || bridge.metric_where(admin, "mqbridge_inflight_messages", ".kafka\"");
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        kafka.proxy.restore();
        let drained = eventually_async(Duration::from_secs(60), || async { held().await == 0.0 });
        assert!(drained.await, "{}", bridge.log_text());
        let at = round * 2 * BATCH;
        alone.push(rate_of(&mut publisher, at..at + BATCH, &bridge, admin).await);
        kafka.proxy.cut();
        let stalled = round * STALLED..(round + 1) * STALLED;
        publisher
            .publish_numbered(stalled, |i| format!("down/{}", i % 8))
            .await;
        publisher.wait_acked(Duration::from_secs(30)).await;
        // The stalled route's connection holds its window full (1024), the rest waits in the
        // broker.
        let full = eventually_async(Duration::from_secs(30), || async { held().await >= 1000.0 });
        assert!(full.await, "{}", bridge.log_text());
        let at = at + BATCH;
        beside.push(rate_of(&mut publisher, at..at + BATCH, &bridge, admin).await);
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = median(&beside) / median(&alone);
    eprintln!("msg/s alone {alone:?}, beside a stalled route {beside:?}: {ratio:.2}");
    assert!(
        ratio >= 0.8,
        "alone {alone:?}, beside a stalled route {beside:?}"
    );

    kafka.proxy.restore();
    let duplicates = all_arrived(&kafka.bootstrap(), &topic, 1, ROUNDS * STALLED, || {
        bridge.log_text()
    });
    eprintln!("{duplicates} duplicates in Kafka");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_route_among_a_hundred_pauses_restarts_and_goes_without_moving_the_others() {
    const ROUTES: usize = 100;
    let broker = mosquitto();
    let admin = free_port();
    let prefix = unique("hundred");
    let config = |batch_size: i64, without: Option<usize>| {
        let mut c = Config::new(broker.port, "hundred")
            .mqtt("client_id_prefix", prefix.as_str())
            .admin(admin)
            .connection("out", Connection::file("out.jsonl"))
            .dead_letter("dead.jsonl");
        for r in (0..ROUTES).filter(|r| Some(*r) != without) {
            let mut route = Route::new(&format!("r{r}"), &format!("w/{r}/#"), "out");
            if r == 7 {
                route = route.set("batch_size", batch_size);
            }
            c = c.route(route);
        }
        c.text()
    };
    let bridge = Bridge::start(&config(100, None));
    bridge.wait_subscribed(0, ROUTES);
    let out = bridge.dir.join("out.jsonl");
    let connects = bridge.metric(admin, CONNECTS).await;

    // Devices publish to every route's topics the whole time.
    let publisher = Publisher::connect(broker.port).await;
    let sending = tokio::spawn(async move {
        let mut publisher = publisher;
        let topic = |i| format!("w/{}/x", i % ROUTES);
        publisher
            .publish_spread(0..60 * ROUTES * 2, topic, ROUTES * 2)
            .await;
        publisher
    });
    let delivered = |route: usize| {
        let name = format!("route=\"r{route}\"");
        let bridge = &bridge;
        async move { bridge.metric_where(admin, DELIVERED, &name).await }
    };
    // The others' counts rise while `step` happens.
    let others_rise = |step: &'static str| {
        let bridge = &bridge;
        async move {
            let watched = [0, 50, 99];
            let mut before = Vec::new();
            for r in watched {
                before.push(delivered(r).await);
            }
            let risen = eventually_async(Duration::from_secs(10), || async {
                let mut all = true;
                for (r, b) in watched.iter().zip(&before) {
                    all &= delivered(*r).await > *b;
                }
                all
            })
            .await;
            assert!(
                risen,
                "the others stopped during {step}:\n{}",
                bridge.log_text()
            );
        }
    };
    assert!(eventually(Duration::from_secs(10), || copies(&out).len() > 1000).await);

    let (code, body) = http_request(admin, "POST", "/routes/r5/pause", None).await;
    assert_eq!(code, 200, "{body}");
    let paused_at = delivered(5).await;
    others_rise("the pause").await;
    assert!(
        delivered(5).await <= paused_at + 256.0,
        "r5 went on delivering"
    );
    let (code, body) = http_request(admin, "POST", "/routes/r5/resume", None).await;
    assert_eq!(code, 200, "{body}");

    // A reload restarts r7 (its batch size) and removes r9.
    std::fs::write(&bridge.config, config(50, Some(9))).unwrap();
    let (code, body) = http_request(admin, "POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"restarted\":[\"r7\"]"), "{body}");
    assert!(body.contains("\"removed\":[\"r9\"]"), "{body}");
    others_rise("the reload").await;

    sending.await.unwrap();
    // Everything published for the routes that stayed arrived, r5 and r7 included.
    let total = 60 * ROUTES * 2;
    let arrived = eventually(Duration::from_secs(30), || {
        let got = copies(&out);
        (0..total)
            .filter(|i| i % ROUTES != 9)
            .all(|i| got.contains_key(&format!("msg-{i}")))
    })
    .await;
    let got = copies(&out);
    let missing: Vec<usize> = (0..total)
        .filter(|i| i % ROUTES != 9 && !got.contains_key(&format!("msg-{i}")))
        .take(10)
        .collect();
    assert!(arrived, "missing {missing:?}:\n{}", bridge.log_text());
    assert_eq!(
        bridge.metric(admin, CONNECTS).await,
        connects,
        "a connection was made: {}",
        bridge.log_text()
    );
}

/// Like `eventually`, for an async check.
async fn eventually_async<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_stalled_routes_hold_no_more_than_the_memory_budget() {
    const ROUTES: usize = 200;
    const EACH: usize = 40;
    const BUDGET_MIB: u64 = 48;
    let broker = mosquitto();
    let admin = free_port();
    let server = FunctionServer::start(|_| Reply::ok()).await;
    let port: u16 = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/invoke")
        .parse()
        .unwrap();
    // Every destination is down: their requests go through a proxy that refuses them.
    let proxy = Proxy::start(port);
    proxy.cut();
    let url = format!("http://127.0.0.1:{}/invoke", proxy.port);
    let mut config = Config::new(broker.port, "budget")
        .mqtt("client_id_prefix", unique("budget").as_str())
        .set("memory_budget", format!("{BUDGET_MIB}MiB"))
        .admin(admin)
        .dead_letter("dead.jsonl");
    // A destination each: 200 pools, none sharing another's window.
    for r in 0..ROUTES {
        config = config
            .connection(&format!("f{r}"), Connection::http(&url))
            .route(Route::new(
                &format!("r{r}"),
                &format!("b/{r}/#"),
                &format!("f{r}"),
            ));
    }
    let bridge = Bridge::start(&config.text());
    bridge.wait_subscribed(0, ROUTES);
    let idle = bridge.rss_kib();

    // 16 KiB each, as fast as the broker takes them: 128 MB, far past the budget. (mosquitto
    // 2.0.11 sends past each connection's Receive Maximum: the bridge bounds itself.)
    let padding = "x".repeat(16 * 1024);
    let mut publisher = Publisher::connect(broker.port).await;
    let mut peak = idle;
    for i in 0..ROUTES * EACH {
        let payload = format!("msg-{i}|{padding}");
        publisher
            .publish(&format!("b/{}/x", i % ROUTES), payload, Default::default())
            .await;
        if i % 500 == 0 {
            peak = peak.max(bridge.rss_kib());
        }
    }
    publisher.wait_acked(Duration::from_secs(60)).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(bridge.rss_kib());
    }
    let held = bridge.metric(admin, "mqbridge_inflight_messages").await;
    let grew = peak.saturating_sub(idle) / 1024;
    eprintln!(
        "{held} messages held; RSS idle {} MiB, peak {} MiB: grew {grew} MiB",
        idle / 1024,
        peak / 1024
    );
    // Without the budget each route's window would take all 40 (128 MB in all). With it, RSS
    // grows by the budget at most, the allocator's slack aside.
    assert!(
        held > 0.0 && held < (ROUTES * EACH / 2) as f64,
        "{held} held"
    );
    assert!(
        grew <= BUDGET_MIB + 4,
        "RSS grew by {grew} MiB with a budget of {BUDGET_MIB} MiB"
    );

    proxy.restore();
    let all = eventually(Duration::from_secs(120), || {
        let got: std::collections::HashSet<usize> = server
            .delivered()
            .keys()
            .filter_map(|p| p.split('|').next()?.strip_prefix("msg-")?.parse().ok())
            .collect();
        got.len() == ROUTES * EACH
    })
    .await;
    assert!(all, "not everything was delivered:\n{}", bridge.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_moving_to_shared_connections_retires_its_old_sessions() {
    const AWAY: usize = 300;
    const AFTER: usize = 300;
    let broker = mosquitto();
    let prefix = unique("retire");
    let config = |shared: bool| {
        Config::new(broker.port, "retire")
            .mqtt("client_id_prefix", prefix.as_str())
            .connection("out", Connection::file("out.jsonl"))
            .route(
                Route::new("r", "r/#", "out")
                    .set("consumers", 2)
                    .set("shared_connections", shared),
            )
            .dead_letter("dead.jsonl")
            .text()
    };
    // An earlier bridge, each route on connections of its own, stopped with its sessions kept.
    let mut bridge = Bridge::start(&config(false));
    bridge.wait_subscribed(0, 2);
    assert_eq!(bridge.stop(), Some(0));
    let out = bridge.dir.join("out.jsonl");
    // While it is away, its sessions (the group's only members) keep what comes.
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish_numbered(0..AWAY, |i| format!("r/{}", i % 4))
        .await;
    publisher.wait_acked(Duration::from_secs(30)).await;

    // This version reads through shared connections; the old sessions leave the group with
    // what they queued.
    std::fs::write(&bridge.config, config(true)).unwrap();
    bridge.spawn();
    bridge.wait_subscribed(2, 2);
    let left = eventually(Duration::from_secs(30), || {
        bridge.log_text().matches("left its share group").count() == 2
    })
    .await;
    assert!(left, "{}", bridge.log_text());
    publisher
        .publish_numbered(AWAY..AWAY + AFTER, |i| format!("r/{}", i % 4))
        .await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    let all = eventually(Duration::from_secs(30), || {
        let got = copies(&out);
        (0..AWAY + AFTER).all(|i| got.contains_key(&format!("msg-{i}")))
    })
    .await;
    let got = copies(&out);
    let missing: Vec<usize> = (0..AWAY + AFTER)
        .filter(|i| !got.contains_key(&format!("msg-{i}")))
        .take(10)
        .collect();
    assert!(all, "missing {missing:?}:\n{}", bridge.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_broker_settings_moves_the_pool_without_a_fight() {
    const N: usize = 500;
    let broker = mosquitto();
    let admin = free_port();
    let prefix = unique("moved");
    let config = |keep_alive: &str| {
        Config::new(broker.port, "moved")
            .mqtt("client_id_prefix", prefix.as_str())
            .mqtt("keep_alive", keep_alive)
            .admin(admin)
            .connection("out", Connection::file("out.jsonl"))
            .route(Route::new("a", "a/#", "out"))
            .route(Route::new("b", "b/#", "out"))
            .dead_letter("dead.jsonl")
            .text()
    };
    let bridge = Bridge::start(&config("30s"));
    bridge.wait_subscribed(0, 2);
    let out = bridge.dir.join("out.jsonl");
    // `[mqtt]` changes: every route restarts on a new endpoint, whose pool has the same
    // client ids as the one before.
    reload(&bridge, admin, &config("20s")).await;
    bridge.wait_subscribed(2, 2);
    let got = publish_to_a_and_b(broker.port, N, &out).await;
    assert_eq!(got, N, "{}", bridge.log_text());
    // The earlier pool disconnected before the new one connected: no session was taken over.
    let log = bridge.log_text();
    assert!(!log.contains("consumer disconnected"), "{log}");
}

/// A reload that changes `memory_budget` applies it to the running routes and says so; the
/// routes go on delivering under a budget cut to their readers' reserves, and after it grows.
/// Each reload changes `client_id_prefix` too: the pool of the earlier prefix withdraws the
/// route's subscription (its share group would otherwise keep sending that pool a share of
/// every message) and hands what it holds to the route's new run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_the_budget_and_the_client_id_prefix_loses_nothing() {
    const N: usize = 400;
    let broker = mosquitto();
    let admin = free_port();
    let prefix = unique("budget");
    let config = |budget: &str, round: usize| {
        Config::new(broker.port, "budget")
            .mqtt("client_id_prefix", format!("{prefix}-{round}"))
            .set("memory_budget", budget)
            .admin(admin)
            .connection("out", Connection::file("out.jsonl"))
            .route(Route::new("a", "a/#", "out"))
            .dead_letter("dead.jsonl")
            .text()
    };
    let bridge = Bridge::start(&config("48MiB", 0));
    bridge.wait_subscribed(0, 1);
    let out = bridge.dir.join("out.jsonl");
    let mut publisher = Publisher::connect(broker.port).await;
    for (round, budget) in ["128KiB", "64MiB"].into_iter().enumerate() {
        let body = reload(&bridge, admin, &config(budget, round + 1)).await;
        assert!(body.contains("memory_budget changed"), "{body}");
        // The gauge shows the new total within its 5 s period.
        let bytes = [128 * 1024, 64 << 20][round];
        let line = format!("mqbridge_memory_budget_bytes {bytes}");
        let mut shown = false;
        for _ in 0..80 {
            let (_, metrics) = http_request(admin, "GET", "/metrics", None).await;
            if metrics.lines().any(|l| l == line) {
                shown = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(shown, "no {line:?} in /metrics");
        let range = round * N..(round + 1) * N;
        publisher.publish_numbered(range, |_| "a/x".into()).await;
        publisher.wait_acked(Duration::from_secs(30)).await;
        let want = (round + 1) * N;
        let all = eventually(Duration::from_secs(20), || copies(&out).len() >= want).await;
        let got = copies(&out).len();
        assert!(all, "round {round}: {got} of {want}\n{}", bridge.log_text());
    }
}

/// A reload that gives a route connections of its own (`shared_connections = false`) loses
/// nothing: the pool withdraws the route's subscriptions at once and hands over what it holds,
/// where before it kept a share of the route's messages for 60 s and then acknowledged them
/// undelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_leaves_its_pool_for_connections_of_its_own_loses_nothing() {
    const N: usize = 400;
    let broker = mosquitto();
    let admin = free_port();
    let prefix = unique("alone");
    let config = |shared: bool| {
        Config::new(broker.port, "alone")
            .mqtt("client_id_prefix", prefix.as_str())
            .admin(admin)
            .connection("out", Connection::file("out.jsonl"))
            .route(Route::new("a", "a/#", "out").set("shared_connections", shared))
            .route(Route::new("b", "b/#", "out"))
            .dead_letter("dead.jsonl")
            .text()
    };
    let bridge = Bridge::start(&config(true));
    bridge.wait_subscribed(0, 2);
    let out = bridge.dir.join("out.jsonl");
    reload(&bridge, admin, &config(false)).await;
    // Its own connection subscribed: the share group has it and the pool's session.
    bridge.wait_subscribed(2, 1);
    let got = publish_to_a_and_b(broker.port, N, &out).await;
    assert_eq!(got, N, "{}", bridge.log_text());
}

/// A route's subscription moves between its connection and parking (paused, resumed) while the
/// connection it moves to is down; the one it leaves lets it go only once the broker granted it
/// on the other. Here the connection moved to comes back two seconds late (a proxy holds its
/// CONNECT): had the other withdrawn at once, the route's share group would have had no member
/// for those two seconds, and mosquitto would have dropped what was published in them ("no
/// matching subscribers").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_paused_and_resumed_while_a_connection_is_down_loses_nothing() {
    const N: usize = 1000;
    let broker = mosquitto_verbose();
    let proxy = Proxy::start(broker.port);
    let admin = free_port();
    let prefix = unique("moved");
    let bridge = Bridge::start(&route_a(proxy.port, "moved", &prefix, admin));
    bridge.wait_subscribed(0, 1);
    let out = bridge.dir.join("out.jsonl");
    let (own, parking) = (format!("{prefix}.out-1"), format!("{prefix}.out-parked"));
    let mut publisher = Publisher::connect(broker.port).await;
    let topic = |_| "a/x".to_string();

    // Paused while parking is down: the route's connection keeps the subscription until
    // parking has it.
    proxy.cut();
    proxy.hold(Some((&parking, Duration::from_secs(2))));
    proxy.restore();
    let back =
        format!("consumer connected route=\"a\" client_id=\"{own}\" session_present=true epoch=1");
    bridge.wait_logged(&back, 1).await;
    let (code, body) = http_request(admin, "POST", "/routes/a/pause", None).await;
    assert_eq!(code, 200, "{body}");
    publisher.publish_spread(0..N, topic, 50).await;
    assert!(proxy.held() >= 1, "parking was not held back");
    proxy.hold(None);

    // Resumed while both are down, the route's connection back last: parking keeps the
    // subscription until the route's connection has it.
    proxy.cut();
    let down = format!("consumer disconnected; reconnecting route=\"a\" client_id=\"{own}\"");
    // The second time: it went down once above too.
    bridge.wait_logged(&down, 2).await;
    let (code, body) = http_request(admin, "POST", "/routes/a/resume", None).await;
    assert_eq!(code, 200, "{body}");
    proxy.hold(Some((&own, Duration::from_secs(2))));
    let held = proxy.held();
    proxy.restore();
    publisher.publish_spread(N..2 * N, topic, 50).await;
    eventually(Duration::from_secs(20), || copies(&out).len() >= 2 * N).await;
    assert_eq!(copies(&out).len(), 2 * N, "{}", bridge.log_text());
    assert!(
        proxy.held() > held,
        "the route's connection was not held back"
    );
    // Parking let the subscription go after the route's connection had it again.
    let position = |what: String| mosquitto_log(&broker).rfind(&what);
    let subscribed = position(format!("Received SUBSCRIBE from {own}"));
    assert!(subscribed.is_some(), "{}", mosquitto_log(&broker));
    let withdrawn = eventually(Duration::from_secs(10), || {
        position(format!("Received UNSUBSCRIBE from {parking}")) > subscribed
    })
    .await;
    assert!(withdrawn, "{}", mosquitto_log(&broker));
}

/// A route paused when the bridge stops starts again unpaused. Its subscription stayed in the
/// parking connection's session, which the broker goes on giving a share of the route's
/// messages: the pool takes them for the route and withdraws that subscription once the
/// route's own is granted, so everything published after the start is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_paused_when_the_bridge_stopped_gets_everything_after_the_next_start() {
    const N: usize = 1000;
    let broker = mosquitto_verbose();
    let admin = free_port();
    let prefix = unique("restarted");
    let mut bridge = Bridge::start(&route_a(broker.port, "restarted", &prefix, admin));
    bridge.wait_subscribed(0, 1);
    let (code, body) = http_request(admin, "POST", "/routes/a/pause", None).await;
    assert_eq!(code, 200, "{body}");
    // Subscribed on parking, and off the route's connection.
    bridge.wait_subscribed(1, 1);
    let parking = format!("{prefix}.out-parked");
    let own = format!("{prefix}.out-1");
    let off = format!("Received UNSUBSCRIBE from {own}");
    assert!(
        eventually(Duration::from_secs(10), || mosquitto_log(&broker)
            .contains(&off))
        .await
    );
    assert_eq!(bridge.stop(), Some(0));
    bridge.spawn();
    bridge.wait_subscribed(2, 1);
    let out = bridge.dir.join("out.jsonl");
    let mut publisher = Publisher::connect(broker.port).await;
    publisher.publish_spread(0..N, |_| "a/x".into(), 100).await;
    eventually(Duration::from_secs(20), || copies(&out).len() >= N).await;
    assert_eq!(copies(&out).len(), N, "{}", bridge.log_text());
    let withdrawn = format!("Received UNSUBSCRIBE from {parking}");
    let gone = eventually(Duration::from_secs(10), || {
        mosquitto_log(&broker).matches(&withdrawn).count() >= 1
    });
    assert!(gone.await, "{}", mosquitto_log(&broker));
}

/// One route `a` on `a/#` to the file connection `out`, on the broker at `port`.
fn route_a(port: u16, tag: &str, prefix: &str, admin: u16) -> String {
    Config::new(port, tag)
        .mqtt("client_id_prefix", prefix)
        .admin(admin)
        .connection("out", Connection::file("out.jsonl"))
        .route(Route::new("a", "a/#", "out"))
        .dead_letter("dead.jsonl")
        .text()
}

/// Writes `text` as the bridge's configuration and reloads it; returns the reload's answer.
async fn reload(bridge: &Bridge, admin: u16, text: &str) -> String {
    std::fs::write(&bridge.config, text).unwrap();
    let (code, body) = http_request(admin, "POST", "/reload", None).await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Publishes `n` messages, alternately to `a/x` and `b/x`, and waits up to 20 s for them in
/// `out`; returns how many distinct ones arrived.
async fn publish_to_a_and_b(port: u16, n: usize, out: &Path) -> usize {
    let mut publisher = Publisher::connect(port).await;
    publisher
        .publish_numbered(0..n, |i| format!("{}/x", ["a", "b"][i % 2]))
        .await;
    publisher.wait_acked(Duration::from_secs(30)).await;
    eventually(Duration::from_secs(20), || copies(out).len() >= n).await;
    copies(out).len()
}
