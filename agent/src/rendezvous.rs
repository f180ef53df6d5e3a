//! Rendezvous on the agent side: VUs that reach a rendezvous step wait here; the session tells
//! the controller how many arrived (per point and generation) and releases them when the
//! controller says the fleet is there.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{mpsc, watch};

/// Arrivals (point, generation) waiting to be reported, taken once by the session.
pub type Arrivals = std::sync::Arc<Mutex<Option<mpsc::UnboundedReceiver<(u32, u64)>>>>;

/// One run's rendezvous points. A point's generation counts its releases: VUs arriving in
/// generation `g` go on once it is past `g`.
pub struct RendezvousHub {
    points: Mutex<HashMap<u32, watch::Sender<u64>>>,
    arrivals: mpsc::UnboundedSender<(u32, u64)>,
}

impl RendezvousHub {
    /// A hub and the receiver of its arrivals (point, generation), for the session.
    pub fn new() -> (RendezvousHub, mpsc::UnboundedReceiver<(u32, u64)>) {
        let (arrivals, receiver) = mpsc::unbounded_channel();
        (
            RendezvousHub {
                points: Mutex::new(HashMap::new()),
                arrivals,
            },
            receiver,
        )
    }

    /// A VU arrives at `point`: returns the generation it waits in and what to wait on.
    pub fn arrive(&self, point: u32) -> (u64, watch::Receiver<u64>) {
        let mut points = self.points.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sender = points.entry(point).or_insert_with(|| watch::Sender::new(0));
        let generation = *sender.borrow();
        let receiver = sender.subscribe();
        let _ = self.arrivals.send((point, generation));
        (generation, receiver)
    }

    /// The controller released `generation` of `point` (a repeated or late release is harmless).
    pub fn release(&self, point: u32, generation: u64) {
        let mut points = self.points.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sender = points.entry(point).or_insert_with(|| watch::Sender::new(0));
        sender.send_if_modified(|current| {
            if *current <= generation {
                *current = generation + 1;
                true
            } else {
                false
            }
        });
    }
}

/// Waits until `generation` of a point is released (or the hub is gone with its run).
pub async fn released(mut receiver: watch::Receiver<u64>, generation: u64) {
    let _ = receiver.wait_for(|current| *current > generation).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn arrivals_are_reported_and_released_by_generation() {
        let (hub, mut arrivals) = RendezvousHub::new();
        let (generation, receiver) = hub.arrive(3);
        assert_eq!(generation, 0);
        assert_eq!(arrivals.recv().await, Some((3, 0)));
        let waiting = tokio::spawn(released(receiver, generation));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        hub.release(3, 0);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        // Later arrivals belong to the next generation; a late repeat of release 0 does not
        // release them.
        let (next, receiver) = hub.arrive(3);
        assert_eq!(next, 1);
        hub.release(3, 0);
        let waiting = tokio::spawn(released(receiver, next));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        hub.release(3, 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}
