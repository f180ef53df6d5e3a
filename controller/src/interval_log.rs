//! The run's per-second series, kept out of the controller's memory: each interval's fleet
//! figures are appended to an unnamed temporary file (deleted by the system when the last
//! handle closes) as one JSON line, and read back whole only when asked (the summary at the
//! end, a chart). A run of a day holds what a run of a minute holds; the file grows by about
//! 200 bytes a second of run.
//!
//! Figures that change after they were first logged (a late report completes an interval
//! already shown) are appended again: the last line of an interval wins when read.
//!
//! Where no temporary file can be made or written (no writable `$TMPDIR`), the series stays in
//! memory, with a warning: the figures are never lost, only the memory bound is.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::summary::IntervalSummary;

/// The series of one run; clones share it.
#[derive(Clone, Debug, Default)]
pub struct IntervalLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The spill file and how many bytes it holds; `None` before the first interval, and
    /// for good once the file failed (see `memory`).
    file: Option<(File, u64)>,
    /// Intervals held in memory: all of them when no file could be used, else none.
    memory: Vec<IntervalSummary>,
    /// A file could not be made or written: the series lives in `memory` from then on.
    in_memory: bool,
    /// The last interval appended in order (not a late report), for status views.
    last: Option<IntervalSummary>,
    /// Lines logged, late reports included.
    lines: u64,
}

impl IntervalLog {
    /// An empty series that spills to a temporary file from its first interval on.
    pub fn new() -> IntervalLog {
        IntervalLog::default()
    }

    /// An empty series held in memory (tests, and runs too short to matter).
    pub fn in_memory() -> IntervalLog {
        let log = IntervalLog::default();
        log.lock().in_memory = true;
        log
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Logs an interval's figures: a new interval, or new figures for one logged before.
    pub fn record(&self, figures: &IntervalSummary) {
        let mut inner = self.lock();
        inner.lines += 1;
        let is_next = inner.last.as_ref().is_none_or(|last| figures.interval > last.interval);
        if is_next {
            inner.last = Some(figures.clone());
        } else if let Some(last) = inner.last.as_mut().filter(|last| last.interval == figures.interval) {
            *last = figures.clone();
        }
        if !inner.in_memory {
            match inner.append(figures) {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "cannot keep the run's per-second series in a temporary file (set TMPDIR to a writable \
                         folder to bound the controller's memory): keeping it in memory"
                    );
                    let logged = inner.read_file().unwrap_or_else(|error| {
                        tracing::warn!(%error, "cannot read back the series logged so far: charts and the summary miss it");
                        Vec::new()
                    });
                    inner.memory = logged;
                    inner.file = None;
                    inner.in_memory = true;
                }
            }
        }
        match inner
            .memory
            .iter_mut()
            .rev()
            .find(|shown| shown.interval == figures.interval)
        {
            Some(shown) => *shown = figures.clone(),
            None => {
                inner.memory.push(figures.clone());
                if !is_next {
                    inner.memory.sort_by_key(|interval| interval.interval);
                }
            }
        }
    }

    /// Every interval logged, in order, each with its latest figures.
    pub fn all(&self) -> Vec<IntervalSummary> {
        let inner = self.lock();
        if inner.in_memory {
            return inner.memory.clone();
        }
        inner.read_file().unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read back the run's per-second series");
            Vec::new()
        })
    }

    /// The last interval logged in order, with its latest figures.
    pub fn last(&self) -> Option<IntervalSummary> {
        self.lock().last.clone()
    }

    /// Lines logged so far, late reports included.
    pub fn lines(&self) -> u64 {
        self.lock().lines
    }
}

impl Inner {
    fn append(&mut self, figures: &IntervalSummary) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(figures).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if self.file.is_none() {
            self.file = Some((tempfile::tempfile()?, 0));
        }
        let Some((file, length)) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all_at(&line, *length)?;
        *length += line.len() as u64;
        Ok(())
    }

    fn read_file(&self) -> std::io::Result<Vec<IntervalSummary>> {
        let Some((file, length)) = &self.file else {
            return Ok(Vec::new());
        };
        let mut bytes = vec![0; *length as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let mut intervals = BTreeMap::new();
        for line in bytes.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()) {
            let figures: IntervalSummary = serde_json::from_slice(line).map_err(std::io::Error::other)?;
            intervals.insert(figures.interval, figures);
        }
        Ok(intervals.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(interval: u64, received: u64) -> IntervalSummary {
        IntervalSummary {
            interval,
            counters: BTreeMap::from([("messages_received".to_owned(), received)]),
            gauges: BTreeMap::from([("active_connections".to_owned(), 3)]),
            latency: BTreeMap::new(),
        }
    }

    fn rows(log: &IntervalLog) -> Vec<(u64, u64)> {
        log.all()
            .iter()
            .map(|row| (row.interval, row.counters["messages_received"]))
            .collect()
    }

    #[test]
    fn spilled_series_reads_back_in_order_with_late_reports_applied() {
        let log = IntervalLog::new();
        assert!(log.all().is_empty());
        log.record(&figures(0, 9));
        log.record(&figures(1, 6));
        log.record(&figures(2, 4));
        // A late report completes interval 1 after 2 was shown.
        log.record(&figures(1, 8));
        assert_eq!(rows(&log), vec![(0, 9), (1, 8), (2, 4)]);
        assert_eq!(
            log.last()
                .map(|last| (last.interval, last.counters["messages_received"])),
            Some((2, 4))
        );
        assert_eq!(log.lines(), 4);
        // Nothing of the series is held in memory but the last interval.
        let inner = log.lock();
        assert!(inner.memory.is_empty());
        assert!(!inner.in_memory);
        assert!(inner.file.as_ref().is_some_and(|(_, length)| *length > 0));
    }

    #[test]
    fn clones_share_one_series() {
        let log = IntervalLog::new();
        let reader = log.clone();
        log.record(&figures(0, 1));
        log.record(&figures(1, 2));
        assert_eq!(rows(&reader), vec![(0, 1), (1, 2)]);
    }

    #[test]
    fn in_memory_series_behaves_alike() {
        let log = IntervalLog::in_memory();
        log.record(&figures(0, 9));
        log.record(&figures(2, 4));
        log.record(&figures(1, 6));
        log.record(&figures(2, 5));
        assert_eq!(rows(&log), vec![(0, 9), (1, 6), (2, 5)]);
        assert_eq!(log.last().map(|last| last.counters["messages_received"]), Some(5));
    }
}
