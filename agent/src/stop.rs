//! The hard stop of one part's VUs on an agent: set once, it wakes every VU waiting on it.
//!
//! A VU waits on the hard stop beside everything it does, so the wait is polled every time the
//! VU wakes (twice per echoed message). A `CancellationToken` takes two uncontended locks per
//! poll (its `is_cancelled` and its `Notified`); once a VU's waker is registered here, a poll is
//! one atomic load and a waker comparison.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use slab::Slab;

#[derive(Default)]
pub struct HardStop {
    fired: AtomicBool,
    waiters: Mutex<Slab<Waker>>,
}

impl HardStop {
    pub fn new() -> Arc<HardStop> {
        Arc::new(HardStop::default())
    }

    /// Stops every VU; later calls do nothing.
    pub fn fire(&self) {
        if self.fired.swap(true, Ordering::AcqRel) {
            return;
        }
        // Waiters that check the flag under the lock after this point see it set.
        let wakers: Vec<Waker> = self
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Resolves once the stop fires.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            stop: self,
            key: None,
            waker: None,
        }
    }
}

pub struct Wait<'a> {
    stop: &'a HardStop,
    /// This wait's entry among the waiters, once registered.
    key: Option<usize>,
    /// The waker registered, to see without the lock that it is still the task's.
    waker: Option<Waker>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.is_fired() {
            return Poll::Ready(());
        }
        if self.waker.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let this = &mut *self;
        let mut waiters = this.stop.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        // `fire` sets the flag before it takes the lock to wake the waiters.
        if this.stop.is_fired() {
            return Poll::Ready(());
        }
        match this.key.and_then(|key| waiters.get_mut(key)) {
            Some(registered) => registered.clone_from(cx.waker()),
            None => this.key = Some(waiters.insert(cx.waker().clone())),
        }
        this.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            if !self.stop.is_fired() {
                self.stop
                    .waiters
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .try_remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_every_waiter_and_forgets_dropped_ones() {
        let stop = HardStop::new();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move { stop.wait().await }));
        }
        // A wait dropped before the stop leaves no waiter behind.
        {
            let waiting = stop.wait();
            let dropped = tokio::time::timeout(Duration::from_millis(20), waiting).await;
            assert!(dropped.is_err());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(stop.waiters.lock().unwrap().len(), 3);
        stop.fire();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("a waiter was not woken")
                .unwrap();
        }
        assert!(stop.is_fired());
        // After the stop, a new wait is ready at once.
        tokio::time::timeout(Duration::from_secs(1), stop.wait()).await.unwrap();
        stop.fire();
    }
}
