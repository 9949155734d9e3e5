//! A TCP proxy on loopback whose traffic can be cut (every connection closed, new ones refused)
//! and restored, to make a server unreachable without killing it, or throttled, to make it slow.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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
    runtime: Option<tokio::runtime::Runtime>,
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
        let (c, r, e) = (cut.clone(), rate.clone(), epoch.clone());
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            accept(listener, target, c, r, e).await
        });
        Proxy {
            port,
            cut,
            rate,
            epoch,
            runtime: Some(runtime),
        }
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
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
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
