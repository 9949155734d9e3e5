//! Test utilities: real servers (mosquitto, tansu) started on free loopback ports, a TCP proxy
//! that can cut a connection, the bridge binary as a child process, an MQTT v5 publisher and a
//! Kafka reader. Names (topics, groups, client ids) are random per test.
#![allow(dead_code, unused_imports)]

pub mod bridge;
pub mod certs;
pub mod config;
pub mod device;
pub mod function;
pub mod kafka;
pub mod mqtt;
pub mod proxy;
pub mod rocketmq;
pub mod scf;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use bridge::Bridge;
pub use proxy::Proxy;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A short random name, unique enough for one test run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Waits until `port` on loopback accepts connections.
pub fn wait_port(port: u16, limit: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < limit,
            "nothing listens on port {port} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The complete lines of a file another process appends to (none when it does not exist yet):
/// a last line without its newline is still being written and is left out.
pub fn complete_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    whole.lines().map(str::to_owned).collect()
}

/// The complete JSON lines of a file another process appends to, parsed.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    complete_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:.200}")))
        .collect()
}

/// How many times each payload appears in a `file` sink's JSON lines at `path`.
pub fn file_payloads(path: &Path) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for record in json_lines(path) {
        *counts
            .entry(record["payload"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

/// Polls `check` every 50 ms until it is true or `limit` passes; returns whether it became true.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// Makes `cmd`'s process die with the test that started it, even when the test is killed and
/// never runs `Drop`.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// SIGTERM, then waits up to `limit` for the exit; kills the process when it is still running
/// then and returns `None`.
pub fn terminate(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    bridge::send_signal(child.id(), "TERM");
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A field of `/proc/{pid}/status` given in kB (`VmRSS`, `VmHWM` for the peak), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus system CPU time the process has used so far, in seconds (`/proc/{pid}/stat`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) as f64 / ticks)
}

/// A child process killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto with MQTT v5 and shared subscriptions, queueing without limit for sessions that
/// fall behind (its default of 1000 queued messages per client would drop the rest).
pub fn mosquitto() -> Server {
    mosquitto_with("persistence false\n")
}

/// The same, logging every packet it receives and sends (`mosquitto_log`).
pub fn mosquitto_verbose() -> Server {
    mosquitto_with("persistence false\nlog_type all\n")
}

/// The broker's log so far.
pub fn mosquitto_log(server: &Server) -> String {
    std::fs::read_to_string(server.dir.path().join("mosquitto.log")).unwrap_or_default()
}

/// mosquitto as installed: it queues at most 1000 messages for a client that falls behind
/// (`max_queued_messages`, default 1000) and drops the QoS 1 messages past them.
pub fn mosquitto_default_queue() -> Server {
    mosquitto_with("persistence false\n# max_queued_messages: its default\n")
}

/// The same, keeping its sessions and queued messages on disk across `restart_mosquitto`.
pub fn mosquitto_persistent() -> Server {
    mosquitto_with("persistence true\npersistence_location PERSISTENCE/\nautosave_interval 0\n")
}

/// The same, refusing anonymous clients any subscription outside `allowed` (a pattern such
/// as `allowed/#`) with SUBACK 0x87, through mosquitto's dynamic-security plugin (its
/// `acl_file` only filters deliveries).
pub fn mosquitto_refusing(allowed: &str) -> Server {
    let plugin = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join("mosquitto_dynamic_security.so"))
    .find(|p| p.exists())
    .expect("mosquitto's dynamic-security plugin is installed with mosquitto");
    let config = serde_json::json!({
        "defaultACLAccess": {"publishClientSend": true, "publishClientReceive": true,
                             "subscribe": false, "unsubscribe": true},
        "clients": [],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "reader"}], "clients": []}],
        "roles": [{"rolename": "reader", "acls": [
            {"acltype": "subscribePattern", "topic": allowed, "priority": 0, "allow": true}]}],
        "anonymousGroup": "anonymous"
    });
    mosquitto_with(&format!(
        "persistence false\nplugin {}\nplugin_opt_config_file PERSISTENCE/acl\n\u{0}{config}",
        plugin.display()
    ))
}

pub fn mosquitto_with(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    // What follows a NUL is the ACL file's text.
    let (extra, acl) = extra.split_once('\u{0}').unwrap_or((extra, ""));
    std::fs::write(dir.path().join("acl"), acl).unwrap();
    let mut extra = extra.replace("PERSISTENCE", &dir.path().display().to_string());
    // Started as root, mosquitto becomes the user "mosquitto", who cannot write in our temp dir
    // (its log, its persistence file).
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } == 0 {
        extra.push_str("user root\n");
    }
    // Queued and in flight without limit, unless `extra` keeps mosquitto's defaults.
    let queue = match extra.contains("max_queued_messages") {
        true => "",
        false => "max_queued_messages 0\nmax_inflight_messages 0\n",
    };
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\n{extra}\
             {queue}log_dest file {}\n{}",
            dir.path().join("mosquitto.log").display(),
            std::env::var("MQBRIDGE_TEST_MOSQUITTO_LOG_ALL")
                .map(|_| "log_type all\n")
                .unwrap_or("")
        ),
    )
    .unwrap();
    let child = spawn_mosquitto(&conf);
    wait_port(port, Duration::from_secs(10));
    Server { child, port, dir }
}

fn spawn_mosquitto(conf: &Path) -> Child {
    die_with_parent(&mut Command::new(which("mosquitto")))
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed (scripts/install-test-deps)")
}

/// Stops mosquitto with SIGTERM (it saves its state when persistent) and starts it again on the
/// same port and configuration.
pub fn restart_mosquitto(server: &mut Server) {
    let status = terminate(&mut server.child, Duration::from_secs(20));
    assert!(status.is_some(), "mosquitto did not stop on SIGTERM");
    server.child = spawn_mosquitto(&server.dir.path().join("mosquitto.conf"));
    wait_port(server.port, Duration::from_secs(10));
}

/// Stops mosquitto with SIGTERM (it saves its state when persistent), for `start_again`.
pub fn stop_mosquitto(server: &mut Server) {
    let status = terminate(&mut server.child, Duration::from_secs(20));
    assert!(status.is_some(), "mosquitto did not stop on SIGTERM");
}

/// Starts a stopped mosquitto again on the same port and configuration.
pub fn start_mosquitto(server: &mut Server) {
    server.child = spawn_mosquitto(&server.dir.path().join("mosquitto.conf"));
    wait_port(server.port, Duration::from_secs(10));
}

/// tansu with in-memory storage, listening on `port` and advertising `advertised` (a proxy's
/// port, so that every client connection goes through the proxy).
pub fn tansu(port: u16, advertised: u16) -> Server {
    tansu_with(port, advertised, "memory://tansu/", &[])
}

/// tansu on `storage` (`memory://tansu/`, or `sqlite://PATH` for what must outlive a restart,
/// such as SCRAM users), with more broker arguments (`--authentication`).
pub fn tansu_with(port: u16, advertised: u16, storage: &str, args: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(
        std::env::var("MQBRIDGE_TEST_TANSU_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|_| dir.path().join("tansu.log")),
    )
    .unwrap();
    let child = die_with_parent(&mut Command::new(tansu_bin()))
        // tansu takes a `sqlite://` path relative to its working directory, leading `/` or not.
        .current_dir("/")
        .args(["broker", "--storage-engine", storage])
        .args(args)
        .arg("--listener-url")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://127.0.0.1:{advertised}"))
        .env(
            "RUST_LOG",
            std::env::var("MQBRIDGE_TEST_TANSU_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tansu is installed (scripts/install-test-deps)");
    wait_port(port, Duration::from_secs(20));
    Server { child, port, dir }
}

pub fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MQBRIDGE_TANSU") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = Path::new(&home).join(".cache/mqbridge/tansu-0.6.0-sql/bin/tansu");
    if cached.exists() {
        return cached;
    }
    which("tansu")
}

fn which(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: run scripts/install-test-deps");
}

/// A Kafka broker reached through a proxy that tests can cut.
pub struct KafkaUnderTest {
    pub server: Server,
    pub proxy: Proxy,
}

impl KafkaUnderTest {
    pub async fn start() -> Self {
        let target = free_port();
        let proxy = Proxy::start(target);
        let server = tansu(target, proxy.port);
        KafkaUnderTest { server, proxy }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.proxy.port)
    }
}
