//! `wsfleet run` and `wsfleet controller --run`: start what a run needs, run it with a live
//! line per second, and report.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wsfleet_controller::runs::{Runs, StartError};
use wsfleet_controller::summary::{human_bytes, human_count, human_micros};
use wsfleet_controller::{RunEvent, Summary};
use wsfleet_metrics::catalog::ACTIVE_CONNECTIONS;
use wsfleet_metrics::summary::LatencyStats;
use wsfleet_scenario::{Bundle, Scenario};

use crate::exit;

/// Where results go besides the terminal.
#[derive(Debug, Default)]
pub struct Outputs {
    pub json: Vec<std::path::PathBuf>,
    pub csv: Vec<std::path::PathBuf>,
    pub html: Vec<std::path::PathBuf>,
}

impl Outputs {
    pub fn parse(specs: &[String]) -> anyhow::Result<Outputs> {
        let mut outputs = Outputs::default();
        for spec in specs {
            match spec.split_once('=') {
                Some(("json", file)) if !file.is_empty() => outputs.json.push(file.into()),
                Some(("csv", file)) if !file.is_empty() => outputs.csv.push(file.into()),
                Some(("html", file)) if !file.is_empty() => outputs.html.push(file.into()),
                _ => anyhow::bail!(
                    "--out `{spec}` is not understood: write `--out json=FILE`, `csv=FILE` or `html=FILE`"
                ),
            }
        }
        Ok(outputs)
    }

    pub fn write(&self, summary: &Summary, scenario_source: &str) -> anyhow::Result<()> {
        if !self.html.is_empty() {
            let report = wsfleet_controller::report::render(summary, scenario_source);
            for path in &self.html {
                std::fs::write(path, &report).with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        for path in &self.json {
            let text = serde_json::to_string_pretty(summary)?;
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
        for path in &self.csv {
            std::fs::write(path, crate::csv::intervals_csv(summary))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// Reads and checks a scenario; problems go to stderr.
pub fn load_scenario(path: &Path) -> Result<(Bundle, Scenario), u8> {
    let bundle = match Bundle::read(path) {
        Ok(bundle) => bundle,
        Err(error) => {
            tell!("error: {error}");
            return Err(exit::INVALID_INPUT);
        }
    };
    match bundle.compile() {
        Ok(scenario) => Ok((bundle, scenario)),
        Err(error) => {
            for problem in error.problems() {
                tell!("error: {problem}");
            }
            if error.problems().is_empty() {
                tell!("error: {error}");
            }
            Err(exit::INVALID_INPUT)
        }
    }
}

/// Runs a scenario on the controller's attached agents with a live line, then prints the
/// summary and writes outputs. Returns the exit code.
pub async fn run_and_report(
    runs: &Arc<Runs>,
    bundle: Bundle,
    variables: HashMap<String, String>,
    outputs: &Outputs,
    quiet: bool,
    interrupt: CancellationToken,
) -> u8 {
    let scenario_source = bundle.source.clone();
    let (events, mut event_receiver) = tokio::sync::mpsc::unbounded_channel();
    let (stop, run) = match runs.start(bundle, variables, Some(events)) {
        Ok(started) => started,
        Err(error) => {
            tell!("error: {error}");
            return match error {
                StartError::Scenario(_) => exit::INVALID_INPUT,
                _ => exit::RUN_NOT_DONE,
            };
        }
    };
    // Ctrl-C stops this run gracefully.
    let interrupted = interrupt.clone();
    tokio::spawn(async move {
        interrupted.cancelled().await;
        stop.cancel();
    });
    while let Some(event) = event_receiver.recv().await {
        if quiet {
            continue;
        }
        match event {
            RunEvent::Started {
                run_id, agents, vus, ..
            } => {
                tell!("run {run_id} started: {vus} VUs at peak on {agents} agent(s)")
            }
            RunEvent::Interval { interval, sets } => tell!("{}", live_line(interval, &sets)),
            RunEvent::AgentLost { agent, reason, action } => tell!("agent {agent} lost: {reason}; {action}"),
            RunEvent::Reshared { shares } => {
                let shares: Vec<String> = shares.iter().map(|(agent, vus)| format!("{agent} {vus}")).collect();
                tell!("shares of the peak VUs now: {}", shares.join(", "))
            }
            // The summary has it; the live lines are history.
            RunEvent::LateReport { .. } => {}
        }
    }
    let summary = match run.await {
        Ok(Ok(summary)) => summary,
        Ok(Err(error)) => {
            tell!("error: {error}");
            return match error {
                wsfleet_controller::RunError::Scenario(_) => exit::INVALID_INPUT,
                _ => exit::RUN_NOT_DONE,
            };
        }
        Err(error) => {
            tell!("error: the run task failed: {error}");
            return exit::INTERNAL;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(summary.render_text().as_bytes());
    let _ = stdout.flush();
    if let Err(error) = outputs.write(&summary, &scenario_source) {
        tell!("error: {error:#}");
        return exit::INTERNAL;
    }
    outcome_code(&summary, interrupt.is_cancelled())
}

/// The exit code a finished run earns.
pub fn outcome_code(summary: &Summary, interrupted: bool) -> u8 {
    if summary.outcome.starts_with("failed") {
        return exit::RUN_NOT_DONE;
    }
    if summary.lost_agents.aborted() {
        tell!("error: {}", summary.outcome);
        return exit::AGENT_LOST;
    }
    let failed: Vec<&str> = summary
        .thresholds
        .iter()
        .filter(|threshold| !threshold.passed)
        .map(|threshold| threshold.name.as_str())
        .collect();
    if !failed.is_empty() {
        tell!("error: {} threshold(s) failed: {}", failed.len(), failed.join(", "));
        return exit::THRESHOLDS_FAILED;
    }
    if interrupted {
        return exit::INTERRUPTED;
    }
    if !summary.thresholds.is_empty() {
        return exit::OK;
    }
    let opened = summary.totals.counter("connections_opened");
    let failed = summary.totals.counter("connections_failed");
    if opened == 0 && failed > 0 {
        tell!("error: every connection attempt failed ({failed}); see `errors` above");
        return exit::NO_CONNECTION;
    }
    exit::OK
}

fn live_line(interval: u64, sets: &wsfleet_metrics::MetricSets) -> String {
    let total = sets.total();
    let latency = total
        .histograms
        .get("message_latency")
        .map(|histogram| {
            let stats = LatencyStats::of(histogram);
            format!(
                " | latency p50 {} p99 {}",
                human_micros(stats.p50_us),
                human_micros(stats.p99_us)
            )
        })
        .unwrap_or_default();
    format!(
        "[{:>4}s] active {:>6} | new {:>6}/s failed {:>5}/s | sent {:>10}/s received {:>10}/s | msgs out {:>7}/s in {:>7}/s{}",
        interval + 1,
        sets.gauge(ACTIVE_CONNECTIONS),
        human_count(total.counter("connections_opened") as f64),
        human_count(total.counter("connections_failed") as f64),
        human_bytes(total.counter("bytes_sent") as f64),
        human_bytes(total.counter("bytes_received") as f64),
        human_count(total.counter("messages_sent") as f64),
        human_count(total.counter("messages_received") as f64),
        latency
    )
}

/// Binds the controller's gRPC listener.
pub async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}: is another controller running there?"))
}
