//! The bridge binary as a child process, with its config and log in a temp dir.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Bridge {
    pub child: Option<Child>,
    /// The binary it runs.
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Variables set for the process beside the test's own environment.
    pub env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

impl Bridge {
    /// Writes `config` into a new temp dir and starts `mqbridge run` on it.
    pub fn start(config: &str) -> Self {
        Self::start_bin(bridge_bin(), config)
    }

    /// The same, with another build of the bridge (the benchmark's baseline).
    pub fn start_bin(bin: PathBuf, config: &str) -> Self {
        Self::start_with(bin, config, Vec::new())
    }

    /// The same, with `env` set for the process.
    pub fn start_env(config: &str, env: &[(&str, &str)]) -> Self {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Self::start_with(bridge_bin(), config, env.collect())
    }

    fn start_with(bin: PathBuf, config: &str, env: Vec<(String, String)>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let config_path = dir.join("mqbridge.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut bridge = Bridge {
            child: None,
            bin,
            log: dir.join("bridge.log"),
            config: config_path,
            dir,
            env,
            _tmp: Some(tmp),
        };
        bridge.spawn();
        bridge
    }

    /// Starts the process (again) on the same config; the log is appended to.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = super::die_with_parent(&mut Command::new(&self.bin))
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("MQBRIDGE_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("bridge running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log shows `n` more "subscribed" lines than `before`.
    pub fn wait_subscribed(&self, before: usize, n: usize) {
        assert!(
            self.subscribed_within(before + n, Duration::from_secs(20)),
            "bridge not subscribed:\n{}",
            self.log_text()
        );
    }

    /// Waits up to `limit` until the log shows `total` "subscribed" lines; returns whether it
    /// did.
    pub fn subscribed_within(&self, total: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while self.subscribed_count() < total {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Waits up to 10 s until the log shows `text` `times` times; fails the test, with the log,
    /// if not.
    pub async fn wait_logged(&self, text: &str, times: usize) {
        let count = || self.log_text().matches(text).count();
        let seen = super::eventually(Duration::from_secs(10), || count() >= times).await;
        assert!(
            seen,
            "the log showed {text} {} times:\n{}",
            count(),
            self.log_text()
        );
    }

    pub fn subscribed_count(&self) -> usize {
        self.log_text().matches(" subscribed ").count()
    }

    /// SIGTERM, then waits for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        match super::terminate(&mut child, Duration::from_secs(40)) {
            Some(status) => status.code(),
            None => panic!("bridge did not stop on SIGTERM:\n{}", self.log_text()),
        }
    }

    /// SIGKILL: no chance to flush or acknowledge anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        super::proc_status_kib(self.pid(), "VmRSS").expect("bridge running")
    }

    /// The value of a counter summed over all label sets, read from the admin listener.
    pub async fn metric(&self, admin_port: u16, name: &str) -> f64 {
        self.metric_where(admin_port, name, "").await
    }

    /// The value of a counter summed over the label sets that contain `label` (such as
    /// `error="timeout"`).
    pub async fn metric_where(&self, admin_port: u16, name: &str, label: &str) -> f64 {
        let text = http_get(admin_port, "/metrics").await;
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    }
}

impl Bridge {
    /// Waits until the metric reaches `min`; returns whether it did within `limit`.
    pub async fn wait_metric(
        &self,
        admin_port: u16,
        name: &str,
        min: f64,
        limit: Duration,
    ) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.metric(admin_port, name).await >= min {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- bridge log ---\n{}", self.log_text());
        }
    }
}

/// The bridge binary cargo built, or another one named by MQBRIDGE_BRIDGE_BIN (the benchmark
/// uses it to compare two builds).
fn bridge_bin() -> PathBuf {
    std::env::var_os("MQBRIDGE_BRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_mqbridge").into())
}

pub fn send_signal(pid: u32, signal: &str) {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

/// Runs the bridge's command line with `args` (no admin token from the environment): its exit
/// code (-1 when killed) and its standard output followed by its standard error.
/// Runs `mqbridge ARGS` with `input` on its stdin; its exit code and stdout.
pub fn cli_with_input(args: &[&str], input: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(bridge_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

pub fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(bridge_bin())
        .args(args)
        .env_remove("MQBRIDGE_ADMIN_TOKEN")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A minimal HTTP/1.0 GET on loopback (the admin listener), returning the body.
pub async fn http_get(port: u16, path: &str) -> String {
    http_request(port, "GET", path, None).await.1
}

/// A minimal HTTP/1.0 request on loopback, with a bearer token when given: the status and the
/// body.
pub async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http_request_with(port, method, path, &headers).await
}

/// The same with the headers given (`Host: localhost` unless they name a host).
pub async fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The entry of flow `name` in `/routes`: `list` is "routes" or "downlinks".
pub async fn flow_status(admin: u16, list: &str, name: &str) -> serde_json::Value {
    let overview: serde_json::Value =
        serde_json::from_str(&http_get(admin, "/routes").await).unwrap();
    overview[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {list} entry {name} in {overview}"))
}

/// The same, once the flow holds nothing in flight (a receiver may see a message before the
/// bridge has counted its acknowledgement), or after 10 s.
pub async fn flow_settled(admin: u16, list: &str, name: &str) -> serde_json::Value {
    let mut status = flow_status(admin, list, name).await;
    for _ in 0..100 {
        if status["in_flight"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = flow_status(admin, list, name).await;
    }
    status
}
