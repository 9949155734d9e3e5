//! A route's pause switch. Once it is set, the pipeline starts no delivery (no new batch, no
//! retry) until it is cleared: what arrives meanwhile, including what a source's read in
//! progress brings, is held unacknowledged. Sources also stop reading while it is set, so that
//! what is held stays within their windows; they register a waker to read again on resume.

use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

#[derive(Debug)]
pub struct Pause {
    paused: watch::Sender<bool>,
    /// The sources' read gates, woken on resume.
    wakers: Mutex<Vec<Arc<Notify>>>,
}

impl Pause {
    pub fn new(paused: bool) -> Self {
        Pause {
            paused: watch::Sender::new(paused),
            wakers: Mutex::default(),
        }
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Sets or clears the pause; true when that changed it.
    pub fn set(&self, paused: bool) -> bool {
        let changed = self.paused.send_replace(paused) != paused;
        if !paused {
            for wake in self.wakers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                wake.notify_one();
            }
        }
        changed
    }

    /// Wakes `wake` whenever the pause is cleared.
    pub fn register(&self, wake: Arc<Notify>) {
        self.wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(wake);
    }

    /// Follows the switch: `changed()` on it returns when the pause is set or cleared.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.paused.subscribe()
    }

    /// Returns once the pause is clear (at once when it is).
    pub async fn cleared(&self) {
        let mut watch = self.watch();
        // The sender lives as long as `self`: this cannot fail while we borrow it.
        let _ = watch.wait_for(|paused| !paused).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cleared_returns_on_resume_and_wakes_the_sources() {
        let pause = Arc::new(Pause::new(true));
        let wake = Arc::new(Notify::new());
        pause.register(wake.clone());
        let waiting = tokio::spawn({
            let pause = pause.clone();
            async move { pause.cleared().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(!pause.set(true), "already paused");
        assert!(pause.set(false));
        waiting.await.unwrap();
        // The source's gate got a permit.
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified())
            .await
            .unwrap();
        assert!(!pause.is_paused());
    }
}
