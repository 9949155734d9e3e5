//! A TCP proxy on loopback whose traffic can be cut (every connection closed, new ones refused)
//! and restored, to make a server unreachable without killing it, or throttled, to make it slow,
//! or made to hold the first bytes of chosen new connections, to make one client come back
//! later than the others.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Runs on a runtime of its own, so that a test blocking its own thread does not stall it.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Bytes per second each direction of each connection may carry; 0 for no limit.
    rate: Arc<AtomicU64>,
    epoch: watch::Sender<u64>,
    hold: Arc<Hold>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Which new connections wait, and how many did.
#[derive(Default)]
struct Hold {
    /// What their first bytes contain, and how long they wait.
    rule: Mutex<Option<(Vec<u8>, Duration)>>,
    held: AtomicUsize,
}

impl Proxy {
    /// Listens on a free loopback port (see `port`) and forwards to `target`.
    pub fn start(target: u16) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let rate = Arc::new(AtomicU64::new(0));
        let (epoch, _) = watch::channel(0u64);
        let hold = Arc::new(Hold::default());
        let (c, r, e, h) = (cut.clone(), rate.clone(), epoch.clone(), hold.clone());
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            accept(listener, target, c, r, e, h).await
        });
        Proxy {
            port,
            cut,
            rate,
            epoch,
            hold,
            runtime: Some(runtime),
        }
    }

    /// Each new connection whose first bytes contain `needle` (an MQTT client id, in its
    /// CONNECT) passes them on only `delay` later; `None`: none waits.
    pub fn hold(&self, rule: Option<(&str, Duration)>) {
        let rule = rule.map(|(needle, delay)| (needle.as_bytes().to_vec(), delay));
        *self.hold.rule.lock().unwrap() = rule;
    }

    /// How many connections were held.
    pub fn held(&self) -> usize {
        self.hold.held.load(Ordering::SeqCst)
    }

    /// Closes every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Limits each direction of each connection to `bytes_per_second` (`None`: no limit).
    pub fn throttle(&self, bytes_per_second: Option<u64>) {
        self.rate
            .store(bytes_per_second.unwrap_or(0), Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept(
    listener: TcpListener,
    target: u16,
    cut: Arc<AtomicBool>,
    rate: Arc<AtomicU64>,
    epoch: watch::Sender<u64>,
    hold: Arc<Hold>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut closed = epoch.subscribe();
        let rate = rate.clone();
        let hold = hold.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let mut client = client;
            let mut first = vec![0; 16 * 1024];
            let n = match client.read(&mut first).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let first = &first[..n];
            let delay = hold
                .rule
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|(needle, delay)| {
                    let found = first.windows(needle.len()).any(|w| w == &needle[..]);
                    found.then_some(*delay)
                });
            if let Some(delay) = delay {
                hold.held.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = closed.changed() => return,
                }
            }
            if server.write_all(first).await.is_err() {
                return;
            }
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::select! {
                _ = pump(client_read, server_write, rate.clone()) => {}
                _ = pump(server_read, client_write, rate) => {}
                _ = closed.changed() => {}
            }
        });
    }
}

/// Copies one direction, sleeping after each chunk as long as the rate asks.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rate: Arc<AtomicU64>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let limit = rate.load(Ordering::SeqCst);
        let chunk = match limit {
            0 => buf.len(),
            // About ten chunks a second, so that the limit is smooth.
            n => (n as usize / 10).clamp(1, buf.len()),
        };
        let n = match from.read(&mut buf[..chunk]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if limit > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / limit as f64)).await;
        }
    }
}
