//! What the agent owes its controller: metric reports until the controller acknowledges them,
//! and the latest status of each recent run. It outlives sessions, so what could not be sent
//! when a stream broke is sent on the next one.
//!
//! Runs write here (never to a stream); the session sends what is new, and after reattaching
//! everything still held, oldest first, then the statuses (so a run's `FINISHED` follows its
//! last report). The controller counts each (agent, run, interval) once, so a report sent twice
//! (its acknowledgement was lost) is harmless. The buffer is bounded; past the bound the oldest
//! report is dropped and counted against its run.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;
use wsfleet_proto::v1::{AgentMessage, MetricReport};

use crate::wire::{report_message, RunStatus};

/// Reports kept for a controller that does not answer: an hour of one-second intervals.
pub const MAX_UNACKNOWLEDGED_REPORTS: usize = 3600;

/// Runs whose latest status is kept (to be resent after reattaching).
const STATUSES_KEPT: usize = 4;

/// The agent's outgoing run messages; see the module documentation.
pub struct Outbox {
    inner: Mutex<Inner>,
    /// Woken when something new is held.
    pub queued: Notify,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    /// Unacknowledged reports, oldest first.
    reports: VecDeque<MetricReport>,
    /// `reports[..sent]` went out on the current stream.
    sent: usize,
    /// The latest status of each recent run, oldest run first, with whether it went out on the
    /// current stream.
    statuses: VecDeque<(RunStatus, bool)>,
    /// Reports dropped past the bound, per run.
    dropped: BTreeMap<String, u64>,
    /// Whether the current stream's controller acknowledges reports; without acknowledgements
    /// (an older controller) a report is forgotten once sent.
    acknowledged: bool,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new(MAX_UNACKNOWLEDGED_REPORTS)
    }
}

impl Outbox {
    /// An outbox holding at most `capacity` unacknowledged reports.
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner::default()),
            queued: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Held only to copy or update, never across an `.await`.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds a report until the controller acknowledges it.
    pub fn push_report(&self, report: MetricReport) {
        let mut inner = self.lock();
        if inner.reports.len() >= self.capacity {
            if let Some(oldest) = inner.reports.pop_front() {
                inner.sent = inner.sent.saturating_sub(1);
                let run_id = oldest.run_id;
                let dropped = {
                    let count = inner.dropped.entry(run_id.clone()).or_default();
                    *count += 1;
                    *count
                };
                if dropped == 1 || dropped.is_power_of_two() {
                    tracing::warn!(run = %run_id, dropped, "controller unreachable for long: oldest unacknowledged report dropped");
                }
                // The run's status says how many are missing; it goes out (again) with it.
                if let Some((status, sent)) = inner.statuses.iter_mut().find(|(status, _)| status.run_id == run_id) {
                    status.reports_dropped = dropped;
                    *sent = false;
                }
            }
        }
        inner.reports.push_back(report);
        drop(inner);
        self.queued.notify_one();
    }

    /// Holds `status` as its run's latest (with the run's dropped-report count).
    pub fn push_status(&self, mut status: RunStatus) {
        let mut inner = self.lock();
        status.reports_dropped = inner.dropped.get(&status.run_id).copied().unwrap_or(0);
        inner.statuses.retain(|(held, _)| held.run_id != status.run_id);
        inner.statuses.push_back((status, false));
        while inner.statuses.len() > STATUSES_KEPT {
            if let Some((old, _)) = inner.statuses.pop_front() {
                inner.dropped.remove(&old.run_id);
            }
        }
        drop(inner);
        self.queued.notify_one();
    }

    /// A new stream: everything held goes out again. `acknowledged` says whether its
    /// controller acknowledges reports.
    pub fn rewind(&self, acknowledged: bool) {
        let mut inner = self.lock();
        inner.sent = 0;
        inner.acknowledged = acknowledged;
        for (_, sent) in inner.statuses.iter_mut() {
            *sent = false;
        }
        drop(inner);
        self.queued.notify_one();
    }

    /// What has not gone out on the current stream yet: reports oldest first, then statuses.
    /// Marks them sent.
    pub fn take_unsent(&self) -> Vec<AgentMessage> {
        let mut inner = self.lock();
        let mut messages: Vec<AgentMessage> = inner
            .reports
            .iter()
            .skip(inner.sent)
            .map(|report| report_message(report.clone()))
            .collect();
        inner.sent = inner.reports.len();
        if !inner.acknowledged {
            inner.reports.clear();
            inner.sent = 0;
        }
        for (status, sent) in inner.statuses.iter_mut().filter(|(_, sent)| !*sent) {
            *sent = true;
            messages.push(status.clone().into());
        }
        messages
    }

    /// The controller has the report of `run_id`'s `interval`.
    pub fn acknowledge(&self, run_id: &str, interval: u64) {
        let mut inner = self.lock();
        // Acknowledgements come in order, so the report is nearly always the oldest.
        if let Some(position) = inner
            .reports
            .iter()
            .position(|report| report.interval == interval && report.run_id == run_id)
        {
            inner.reports.remove(position);
            if position < inner.sent {
                inner.sent -= 1;
            }
        }
    }

    /// Reports held, not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.lock().reports.len()
    }

    /// Reports of `run_id` dropped past the bound.
    pub fn dropped(&self, run_id: &str) -> u64 {
        self.lock().dropped.get(run_id).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use wsfleet_proto::v1::agent_message;

    use super::*;
    use crate::wire::RunPhase;

    fn status(run: &str, phase: RunPhase) -> RunStatus {
        RunStatus {
            run_id: run.into(),
            phase,
            message: String::new(),
            last_interval: 0,
            reports_dropped: 0,
        }
    }

    fn report(run: &str, interval: u64) -> MetricReport {
        MetricReport {
            run_id: run.into(),
            interval,
            ..Default::default()
        }
    }

    fn intervals(messages: &[AgentMessage]) -> Vec<String> {
        messages
            .iter()
            .map(|message| match &message.kind {
                Some(agent_message::Kind::Report(report)) => format!("{}:{}", report.run_id, report.interval),
                Some(agent_message::Kind::RunStatus(status)) => {
                    format!(
                        "{}:status{}:dropped{}",
                        status.run_id, status.phase, status.reports_dropped
                    )
                }
                _ => "?".into(),
            })
            .collect()
    }

    #[test]
    fn unacknowledged_reports_go_out_again_on_a_new_stream_before_the_status() {
        let outbox = Outbox::new(100);
        outbox.rewind(true);
        outbox.push_report(report("r", 0));
        outbox.push_report(report("r", 1));
        assert_eq!(intervals(&outbox.take_unsent()), ["r:0", "r:1"]);
        assert!(outbox.take_unsent().is_empty());
        outbox.acknowledge("r", 0);
        outbox.push_report(report("r", 2));
        outbox.push_status(status("r", RunPhase::Finished));
        // The stream broke: 1 was sent but never acknowledged, 2 never sent.
        outbox.rewind(true);
        assert_eq!(intervals(&outbox.take_unsent()), ["r:1", "r:2", "r:status3:dropped0"]);
        outbox.acknowledge("r", 2);
        outbox.acknowledge("r", 1);
        assert_eq!(outbox.unacknowledged(), 0);
        // Statuses are repeated on each new stream; reports only until acknowledged.
        outbox.rewind(true);
        assert_eq!(intervals(&outbox.take_unsent()), ["r:status3:dropped0"]);
    }

    #[test]
    fn past_the_bound_the_oldest_reports_are_dropped_and_counted() {
        let outbox = Outbox::new(3);
        outbox.push_status(status("r", RunPhase::Running));
        for interval in 0..5 {
            outbox.push_report(report("r", interval));
        }
        assert_eq!(outbox.dropped("r"), 2);
        assert_eq!(outbox.unacknowledged(), 3);
        outbox.rewind(true);
        assert_eq!(
            intervals(&outbox.take_unsent()),
            ["r:2", "r:3", "r:4", "r:status2:dropped2"]
        );
    }

    #[test]
    fn without_acknowledgements_a_sent_report_is_forgotten() {
        let outbox = Outbox::new(10);
        outbox.rewind(false);
        outbox.push_report(report("r", 0));
        assert_eq!(intervals(&outbox.take_unsent()), ["r:0"]);
        assert_eq!(outbox.unacknowledged(), 0);
        outbox.rewind(false);
        assert!(outbox.take_unsent().is_empty());
    }
}
