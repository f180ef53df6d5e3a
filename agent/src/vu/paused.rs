//! The operator's pause of a part, as a VU sees it: it finishes the step it is in, then waits
//! before the next one until the pause is lifted (what it holds to send leaves first; with
//! handlers, its open connections are read meanwhile, as during a think). The time it waited
//! is not made up: pacing due times move by it.

use std::time::{Duration, Instant};

use wsfleet_scenario::StepId;

use super::outcome::StepResult;
use super::state::Vu;
use crate::clock;

/// Far enough ahead to stand for "until the pause is lifted".
const UNTIL_LIFTED: Duration = Duration::from_secs(365 * 24 * 3600);

impl Vu {
    /// Whether the VU's part is paused now (one atomic load).
    pub(super) fn is_paused(&self) -> bool {
        self.pause.is_paused()
    }

    /// Waits, before step `step` of iteration `iteration`, until the part's pause is lifted or
    /// the VU is asked to finish its iteration (a graceful stop lets it finish its steps).
    /// The time waited adds to [`Vu::paused_for`].
    pub(super) async fn wait_while_paused(&mut self, step: StepId, iteration: u64) -> StepResult {
        let pause = self.pause.clone();
        let graceful = self.graceful.clone();
        let paused_at = clock::now();
        let until: Instant = paused_at + UNTIL_LIFTED;
        let result = tokio::select! {
            biased;
            _ = pause.lifted() => Ok(()),
            _ = graceful.cancelled() => Ok(()),
            result = self.wait_until(until, step, iteration) => result,
        };
        self.paused_for += clock::now() - paused_at;
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::time::{sleep, Instant};

    use super::super::testing::{control, Harness};

    /// Paused in the middle of an iteration, the VU finishes the step it is in (a think), then
    /// sends nothing until the pause is lifted; the next paced iteration is due later by the
    /// time it waited, not made up at once.
    #[tokio::test(start_paused = true)]
    async fn a_paused_vu_finishes_its_step_and_waits_before_the_next() {
        let yaml = "load: { vus: 1, iterations: 2, pacing: 1s }
steps:
  - connect: { url: 'ws://target.test/', keep_open: true }
  - send: { name: first, text: a }
  - receive: { timeout: 10s }
  - think: 500ms
  - send: { name: second, text: b }
  - receive: { timeout: 10s }
";
        let (harness, mut target) = Harness::new(yaml);
        let vu = control();
        let pause = vu.pause.clone();
        let began = Instant::now();
        let server = async move {
            let mut socket = target.accept().await;
            let mut arrivals = Vec::new();
            while let Some(Ok(message)) = socket.next().await {
                if message.is_text() {
                    arrivals.push((message.to_text().unwrap_or_default().to_owned(), began.elapsed()));
                    socket.send(message).await.expect("echo");
                }
            }
            arrivals
        };
        let operator = async move {
            // Paused during the think (200 ms in), lifted at 2.2 s.
            sleep(Duration::from_millis(200)).await;
            pause.set(true);
            sleep(Duration::from_millis(2_000)).await;
            pause.set(false);
        };
        let ((), arrivals, ()) = tokio::join!(harness.play_with(0, vu), server, operator);
        let at = |index: usize| arrivals[index].1.as_millis();
        let texts: Vec<&str> = arrivals.iter().map(|(text, _)| text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "a", "b"], "{arrivals:?}");
        assert!(at(0) < 5, "{arrivals:?}");
        // The think ended at 500 ms, inside the pause: `b` waited for the lift at 2.2 s.
        assert!((2_200..2_210).contains(&at(1)), "{arrivals:?}");
        // Due at 1 s, moved by the 1.7 s the VU waited.
        assert!((2_700..2_710).contains(&at(2)), "{arrivals:?}");
        assert!((3_200..3_210).contains(&at(3)), "{arrivals:?}");
        assert_eq!(harness.metrics().conn("iterations"), 2);
    }

    /// A pause between a repeat's rounds holds the next send; a graceful stop during the pause
    /// lets the VU finish its iteration.
    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_a_repeat_between_sends_and_a_graceful_stop_ends_the_wait() {
        let yaml = "load: { vus: 1, iterations: 1 }
steps:
  - connect: { url: 'ws://target.test/' }
  - repeat:
      count: 3
      pacing: 100ms
      steps:
        - send: { name: ask, text: go }
        - receive: { name: answer, timeout: 10s }
";
        let (harness, mut target) = Harness::new(yaml);
        let vu = control();
        let (pause, graceful) = (vu.pause.clone(), vu.graceful.clone());
        let began = Instant::now();
        let server = async move {
            let mut socket = target.accept().await;
            let mut arrivals = Vec::new();
            while let Some(Ok(message)) = socket.next().await {
                if message.is_text() {
                    arrivals.push(began.elapsed().as_millis());
                    socket.send(message).await.expect("echo");
                }
            }
            arrivals
        };
        let operator = async move {
            sleep(Duration::from_millis(50)).await;
            pause.set(true);
            sleep(Duration::from_millis(1_000)).await;
            graceful.cancel();
        };
        let ((), arrivals, ()) = tokio::join!(harness.play_with(0, vu), server, operator);
        assert_eq!(arrivals.len(), 3, "{arrivals:?}");
        assert!(arrivals[0] < 5, "{arrivals:?}");
        // Round 2 was due at 100 ms; the pause held it until the stop at 1.05 s, and round 3
        // is due 100 ms after it, moved by the 950 ms waited.
        assert!((1_050..1_060).contains(&arrivals[1]), "{arrivals:?}");
        assert!((1_150..1_160).contains(&arrivals[2]), "{arrivals:?}");
        let metrics = harness.metrics();
        assert_eq!(metrics.step("ask", "messages_sent"), 3);
        assert_eq!(metrics.conn("iterations"), 1);
    }
}
