//! `mqbridge replay`: dead letters sent again through their route once the cause is mended.
//! A route's transform refuses some meter readings; the letters go to the dead-letter file.
//! After the transform is mended, a replay delivers them once, a letter that still fails is a
//! new dead letter, and a replay run again sends nothing it sent before.

mod common;

use std::time::Duration;

use common::bridge::cli;
use common::config::{Config, Connection, Route};
use common::function::await_dead_letters;
use common::mqtt::Publisher;
use common::{complete_lines, eventually, mosquitto, Bridge};

const STRICT: &str = ".payload.value = parse_int!(.payload.reading)\n";
/// Takes "x" as 0; "!" still fails.
const MENDED: &str =
    "if .payload.reading == \"x\" { .payload.value = 0 } else { .payload.value = parse_int!(.payload.reading) }\n";
const LENIENT: &str = ".payload.value = to_int(.payload.reading) ?? 0\n";

fn config(port: u16, transform: &str) -> String {
    Config::new(port, "replay")
        .connection("out", Connection::file("out.jsonl"))
        .route(Route::new("meters", "meters/#", "out").set("transform", transform))
        .dead_letter("dead.jsonl")
        .text()
}

/// The replay's summary line, for the config at `path`.
fn replay(config: &std::path::Path, dead: &std::path::Path) -> String {
    let (code, text) = cli(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        dead.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_delivers_each_letter_once_and_a_second_run_sends_nothing() {
    let broker = mosquitto();
    let mut bridge = Bridge::start(&config(broker.port, STRICT));
    bridge.wait_subscribed(0, 1);
    let mut publisher = Publisher::connect(broker.port).await;
    let messages: Vec<(String, String)> = (0..20)
        .map(|n| {
            let reading = match n {
                3 | 7 | 11 | 15 => "x".to_owned(),
                19 => "!".to_owned(),
                n => n.to_string(),
            };
            (
                format!("meters/m{n}"),
                format!(r#"{{"n":{n},"reading":"{reading}"}}"#),
            )
        })
        .collect();
    publisher
        .publish_all(messages, Duration::from_secs(10))
        .await;
    let dead = bridge.dir.join("dead.jsonl");
    let out = bridge.dir.join("out.jsonl");
    assert_eq!(
        await_dead_letters(&dead, 5, Duration::from_secs(10))
            .await
            .len(),
        5
    );
    assert!(eventually(Duration::from_secs(10), || complete_lines(&out).len() >= 15).await);
    assert!(bridge.stop().is_some());

    // Mended for "x", not for "!": four delivered, one dead-lettered again.
    std::fs::write(&bridge.config, config(broker.port, MENDED)).unwrap();
    let text = replay(&bridge.config, &dead);
    assert!(
        text.contains("replayed 4, filtered 0, dead-lettered again 1, already replayed 0"),
        "{text}"
    );
    let lines = complete_lines(&out);
    assert_eq!(lines.len(), 19, "{lines:?}");
    for n in [3, 7, 11, 15] {
        let found = lines
            .iter()
            .filter(|l| l.contains(&format!("\\\"n\\\":{n},")))
            .count();
        assert_eq!(found, 1, "message {n} once in {lines:?}");
    }
    assert_eq!(
        complete_lines(&dead).len(),
        6,
        "the one that failed again is a new letter"
    );

    // Run again: nothing it replayed goes out again; the new letter fails once more.
    let text = replay(&bridge.config, &dead);
    assert!(
        text.contains("replayed 0, filtered 0, dead-lettered again 1, already replayed 5"),
        "{text}"
    );
    assert_eq!(complete_lines(&out).len(), 19);

    // Mended for everything: the last letter goes through, and then nothing is left.
    std::fs::write(&bridge.config, config(broker.port, LENIENT)).unwrap();
    let text = replay(&bridge.config, &dead);
    assert!(
        text.contains("replayed 1, filtered 0, dead-lettered again 0, already replayed 6"),
        "{text}"
    );
    let text = replay(&bridge.config, &dead);
    assert!(
        text.contains("replayed 0, filtered 0, dead-lettered again 0, already replayed 7"),
        "{text}"
    );
    assert_eq!(complete_lines(&out).len(), 20);

    // A route the file no longer has is skipped; so is what the filters leave out.
    let (code, text) = cli(&[
        "replay",
        "--config",
        bridge.config.to_str().unwrap(),
        "--route",
        "elsewhere",
        dead.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("replayed 0") && text.contains("skipped 0"),
        "{text}"
    );
}
