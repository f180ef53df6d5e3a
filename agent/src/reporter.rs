//! The reporter of a run: merges the workers' finished intervals into one metric report per
//! interval, once every worker has passed it, and holds each in the outbox until the controller
//! acknowledges it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use wsfleet_metrics::MetricSets;

use crate::outbox::Outbox;
use crate::worker::WorkerReport;

/// Merges the workers' intervals and holds each interval's report once every worker has passed
/// it. Returns the last interval reported.
pub async fn report_intervals(
    mut reports: mpsc::UnboundedReceiver<WorkerReport>,
    workers: usize,
    run_id: String,
    outbox: Arc<Outbox>,
) -> u64 {
    let mut watermarks = vec![0u64; workers];
    let mut pending: BTreeMap<u64, MetricSets> = BTreeMap::new();
    let mut next_to_send = 0u64;
    let mut last_sent = 0u64;
    while let Some(report) = reports.recv().await {
        for (interval, sets) in report.intervals {
            if let Err(error) = pending.entry(interval).or_default().merge(&sets) {
                tracing::error!(%error, interval, "cannot merge worker interval");
            }
        }
        watermarks[report.worker] = report.watermark;
        let complete = watermarks.iter().copied().min().unwrap_or(0);
        let all_final = complete == u64::MAX;
        let ready_until = if all_final {
            pending.keys().next_back().map_or(next_to_send, |last| last + 1)
        } else {
            complete
        };
        while next_to_send < ready_until {
            let sets = pending.remove(&next_to_send).unwrap_or_default();
            match sets.to_report(&run_id, next_to_send) {
                // Kept until the controller acknowledges it, across reattachments.
                Ok(report) => outbox.push_report(report),
                Err(error) => tracing::error!(%error, "cannot encode report"),
            }
            last_sent = next_to_send;
            next_to_send += 1;
        }
        if all_final {
            break;
        }
    }
    last_sent
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wsfleet_proto::v1::agent_message;

    use super::*;

    fn report(worker: usize, intervals: &[u64], watermark: u64) -> WorkerReport {
        WorkerReport {
            worker,
            intervals: intervals
                .iter()
                .map(|interval| (*interval, MetricSets::default()))
                .collect(),
            watermark,
        }
    }

    #[tokio::test]
    async fn each_interval_is_reported_once_in_order_when_every_worker_has_passed_it() {
        let outbox = Arc::new(Outbox::new(100));
        outbox.rewind(true);
        let (workers, reports) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(report_intervals(reports, 2, "r".into(), outbox.clone()));
        workers.send(report(0, &[0, 1], 2)).unwrap();
        workers.send(report(1, &[0], 1)).unwrap();
        // Interval 1 waits for worker 1; interval 3 comes with the last report.
        workers.send(report(0, &[2], u64::MAX)).unwrap();
        workers.send(report(1, &[1, 3], u64::MAX)).unwrap();
        let last = tokio::time::timeout(Duration::from_secs(5), reporter)
            .await
            .expect("the reporter ends after every worker's last report")
            .unwrap();
        assert_eq!(last, 3);
        let sent: Vec<u64> = outbox
            .take_unsent()
            .into_iter()
            .filter_map(|message| match message.kind {
                Some(agent_message::Kind::Report(report)) if report.run_id == "r" => Some(report.interval),
                _ => None,
            })
            .collect();
        assert_eq!(sent, [0, 1, 2, 3]);
    }
}
