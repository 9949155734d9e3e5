//! The status page in a real headless browser (Debian's chromium, driven over the DevTools
//! protocol): the table shows the routes of a running bridge, and its pause button pauses.
//! Without chromium the test says so and passes, unless MQBRIDGE_REQUIRE_CHROMIUM is set
//! (scripts/test sets it once it has installed chromium).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::bridge::http_request;
use common::config::{Config, Connection, Route};
use common::mqtt::Publisher;
use common::{die_with_parent, free_port, mosquitto, wait_port, Bridge};

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| {
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .map(move |dir| dir.join(name))
        })
        .find(|p| p.is_file())
}

/// One page of the browser, driven over its DevTools websocket.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Page {
    /// Evaluates `expression` in the page and returns its value.
    async fn eval(&mut self, expression: &str) -> serde_json::Value {
        self.next += 1;
        let id = self.next;
        let request = serde_json::json!({
            "id": id, "method": "Runtime.evaluate",
            "params": {"expression": expression, "returnByValue": true, "awaitPromise": true}
        });
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        loop {
            let message = self.ws.next().await.expect("devtools open").unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                return reply["result"]["result"]["value"].clone();
            }
        }
    }

    /// Evaluates `expression` until it is true, for up to `limit`.
    async fn until(&mut self, expression: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.eval(expression).await == true {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

/// A PUT to the browser's DevTools HTTP endpoint, which answers HTTP/1.1 only and keeps the
/// connection open: the status and the body (by its Content-Length).
async fn devtools_put(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let request =
        format!("PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    let text = String::from_utf8_lossy(&data).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_routes_and_pauses_one() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("MQBRIDGE_REQUIRE_CHROMIUM").is_none(),
            "chromium is required (MQBRIDGE_REQUIRE_CHROMIUM) but not installed"
        );
        eprintln!(
            "SKIPPED: no chromium on PATH; scripts/test installs it (apt-get install chromium)"
        );
        return;
    };
    let broker = mosquitto();
    let admin = free_port();
    let config = Config::new(broker.port, "page")
        .admin(admin)
        .connection("out", Connection::file("out.jsonl"))
        .route(Route::new("vehicles", "city/#", "out"))
        .route(Route::new("battery", "cars/+/battery", "out").set("consumers", 2))
        .text();
    let bridge = Bridge::start(&config);
    bridge.wait_subscribed(0, 3);
    // 500 messages went through before the page opens: it shows their totals, rates and
    // chart at once, from what the bridge kept.
    let mut publisher = Publisher::connect(broker.port).await;
    publisher
        .publish_numbered(0..500, |i| format!("city/{}", i % 4))
        .await;
    publisher.wait_acked(Duration::from_secs(10)).await;
    let delivered = "mqbridge_messages_delivered_total";
    let through = bridge.wait_metric(admin, delivered, 500.0, Duration::from_secs(20));
    assert!(through.await, "{}", bridge.log_text());

    let profile = tempfile::tempdir().unwrap();
    let devtools = free_port();
    let mut chrome = die_with_parent(&mut Command::new(&browser))
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--remote-debugging-port={devtools}"),
            "--remote-debugging-address=127.0.0.1",
            // A name of the attacker's that resolves to this host, as DNS rebinding makes it.
            "--host-resolver-rules=MAP rebound.test 127.0.0.1",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(devtools, Duration::from_secs(30));
    let url = format!("http://127.0.0.1:{admin}/");
    // The browser takes a moment between listening and answering.
    let mut answer = (0, String::new());
    for _ in 0..100 {
        answer = devtools_put(devtools, &format!("/json/new?{url}")).await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = answer;
    assert_eq!(status, 200, "{body}");
    let target: serde_json::Value = serde_json::from_str(&body).unwrap();
    // It names "localhost", which may resolve to ::1, where the browser does not listen.
    let ws_url = target["webSocketDebuggerUrl"]
        .as_str()
        .unwrap()
        .replace("//localhost:", "//127.0.0.1:");
    let (ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let mut page = Page { ws, next: 0 };

    let rows = "document.querySelectorAll('#routes tbody tr').length === 2";
    assert!(
        page.until(rows, Duration::from_secs(20)).await,
        "the table never showed 2 routes"
    );
    let names = page
        .eval("[...document.querySelectorAll('#routes tbody tr')].map(r => r.dataset.route).join(',')")
        .await;
    assert_eq!(names, "battery,vehicles");
    let battery = page
        .eval("document.querySelector('tr[data-route=battery]').innerText")
        .await;
    let battery = battery.as_str().unwrap();
    assert!(
        battery.contains("running") && battery.contains("2/2"),
        "{battery}"
    );
    let cells = page
        .eval("[...document.querySelectorAll('tr[data-route=vehicles] td')].map(c => c.textContent).join('|')")
        .await;
    let cells: Vec<&str> = cells.as_str().unwrap().split('|').collect();
    // Route, State, Consumers, Received, /s, Delivered, /s, ...
    assert_eq!((cells[3], cells[5]), ("500", "500"), "{cells:?}");
    // A rate at first sight (since the bridge's last sample), not "…".
    let rate: f64 = cells[6].parse().unwrap_or_else(|_| panic!("{cells:?}"));
    assert!(rate >= 0.0, "{cells:?}");
    let points = page
        .eval("Number(document.querySelector('tr[data-route=vehicles] canvas').dataset.points)")
        .await;
    assert!(
        points.as_u64() >= Some(1),
        "no chart at first sight: {points}"
    );
    let (status, history) = http_request(admin, "GET", "/history", None).await;
    assert_eq!(status, 200, "{history}");
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history["every_seconds"], 10, "{history}");
    assert!(
        history["flows"]["vehicles"][0]["at"].as_u64() > Some(0),
        "{history}"
    );

    // The pause button pauses the route at the bridge, and the page shows it.
    page.eval(
        "document.querySelector('button[data-route=battery][data-action=pause]').click(); true",
    )
    .await;
    let paused =
        "document.querySelector('tr[data-route=battery] .state').textContent.startsWith('paused')";
    assert!(
        page.until(paused, Duration::from_secs(10)).await,
        "the page never showed paused"
    );
    let (_, routes) = http_request(admin, "GET", "/routes", None).await;
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    let state = |name: &str| {
        routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state("battery"), "paused");
    assert_eq!(state("vehicles"), "running");
    let resume =
        "document.querySelector('button[data-route=battery][data-action=resume]') !== null";
    assert!(page.until(resume, Duration::from_secs(5)).await);

    // A page of another origin submits a form to pause "vehicles": refused.
    let attacker = serve_page(format!(
        "<form id=f method=POST action=\"http://127.0.0.1:{admin}/routes/vehicles/pause\"></form>\
         <script>document.getElementById('f').submit()</script>"
    ))
    .await;
    let (status, body) =
        devtools_put(devtools, &format!("/json/new?http://127.0.0.1:{attacker}/")).await;
    assert_eq!(status, 200, "{body}");
    let refused = |reason: &'static str| {
        let label = format!("reason=\"{reason}\"");
        let bridge = &bridge;
        async move {
            bridge
                .metric_where(admin, "mqbridge_admin_requests_refused_total", &label)
                .await
        }
    };
    let start = Instant::now();
    while refused("cross_site").await < 1.0 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused("cross_site").await >= 1.0,
        "the form never reached the bridge"
    );
    // The page under a rebound name of its own reaches the listener and is refused.
    let rebound = format!("/json/new?http://rebound.test:{admin}/routes");
    let (status, body) = devtools_put(devtools, &rebound).await;
    assert_eq!(status, 200, "{body}");
    let start = Instant::now();
    while refused("host").await < 1.0 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused("host").await >= 1.0,
        "the rebound request never reached the bridge"
    );
    let (_, routes) = http_request(admin, "GET", "/routes", None).await;
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    let vehicles = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "vehicles")
        .unwrap();
    assert_eq!(vehicles["state"], "running", "{vehicles}");
    let _ = chrome.kill();
    let _ = chrome.wait();
}

/// Serves `html` to every request on a free loopback port (a page of another origin).
async fn serve_page(html: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = s.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}
