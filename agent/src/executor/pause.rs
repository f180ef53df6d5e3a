//! A part's pause, set by the operator: its VUs wait before their next iteration until it is
//! lifted. One atomic load per iteration when not paused.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Whether a part is paused; VUs on any worker wait on it.
#[derive(Debug, Default)]
pub struct Pause {
    paused: AtomicBool,
    lifted: Notify,
}

impl Pause {
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub fn set(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        if !paused {
            self.lifted.notify_waiters();
        }
    }

    /// Returns once the part is not paused.
    pub async fn lifted(&self) {
        loop {
            let notified = self.lifted.notified();
            tokio::pin!(notified);
            // Registered before the check, so a lift between the check and the wait is seen.
            notified.as_mut().enable();
            if !self.is_paused() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waiters_go_on_when_the_pause_is_lifted() {
        let pause = Arc::new(Pause::default());
        pause.lifted().await;
        pause.set(true);
        let waiter = tokio::spawn({
            let pause = pause.clone();
            async move { pause.lifted().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        pause.set(false);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("lifted in time")
            .expect("the waiter ends");
    }
}
