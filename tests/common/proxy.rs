//! A TCP proxy on loopback whose traffic can be cut (every connection closed, new ones refused)
//! and restored, to make a server unreachable without killing it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Runs on a runtime of its own, so that a test blocking its own thread does not stall it.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
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
        let (epoch, _) = watch::channel(0u64);
        let (c, e) = (cut.clone(), epoch.clone());
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            accept(listener, target, c, e).await
        });
        Proxy {
            port,
            cut,
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
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut client, mut server) = (client, server);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = closed.changed() => {}
            }
        });
    }
}
