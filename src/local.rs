//! `wsfleet run` and `wsfleet controller --run`: start what a run needs (the scenario's test
//! server included), run it with a live line per second, and report.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wsfleet_controller::human::{human_bytes, human_count, human_micros};
use wsfleet_controller::runs::{RunTestServer, Runs, TestServerError, TestServerStarter};
use wsfleet_controller::{RunEvent, Summary};
use wsfleet_metrics::catalog::ACTIVE_CONNECTIONS;
use wsfleet_metrics::summary::LatencyStats;
use wsfleet_metrics::Counter;
use wsfleet_scenario::{Bundle, Scenario};

use crate::exit::{self, Failure};

/// Where results go besides the terminal.
#[derive(Debug, Default)]
pub struct Outputs {
    pub json: Vec<std::path::PathBuf>,
    pub csv: Vec<std::path::PathBuf>,
    pub html: Vec<std::path::PathBuf>,
    pub junit: Vec<std::path::PathBuf>,
}

impl Outputs {
    pub fn parse(specs: &[String]) -> anyhow::Result<Outputs> {
        let mut outputs = Outputs::default();
        for spec in specs {
            match spec.split_once('=') {
                Some(("json", file)) if !file.is_empty() => outputs.json.push(file.into()),
                Some(("csv", file)) if !file.is_empty() => outputs.csv.push(file.into()),
                Some(("html", file)) if !file.is_empty() => outputs.html.push(file.into()),
                Some(("junit", file)) if !file.is_empty() => outputs.junit.push(file.into()),
                _ => anyhow::bail!(
                    "--out `{spec}` is not understood: write `--out json=FILE`, `csv=FILE`, `html=FILE` or `junit=FILE`"
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
        if !self.junit.is_empty() {
            let hostname = hostname::get()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".to_owned());
            let xml = crate::junit::junit_xml(summary, std::time::SystemTime::now(), &hostname);
            for path in &self.junit {
                std::fs::write(path, &xml).with_context(|| format!("cannot write {}", path.display()))?;
            }
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
    (bundle, scenario): (Bundle, Scenario),
    variables: HashMap<String, String>,
    outputs: &Outputs,
    quiet: bool,
    interrupt: CancellationToken,
) -> u8 {
    let scenario_source = bundle.source.clone();
    let (events, mut event_receiver) = tokio::sync::mpsc::unbounded_channel();
    let (stop, run) = match runs.start_compiled(bundle, scenario, variables, Some(events)) {
        Ok(started) => started,
        Err(error) => return Failure::new(exit::of_start_error(&error), error).report(),
    };
    // Ctrl-C stops this run gracefully.
    let interrupted = interrupt.clone();
    tokio::spawn(async move {
        interrupted.cancelled().await;
        stop.cancel();
    });
    while let Some(event) = event_receiver.recv().await {
        if !quiet {
            show(event);
        }
    }
    let summary = match run.await {
        Ok(Ok(summary)) => summary,
        Ok(Err(error)) => return Failure::new(exit::of_run_error(&error), error).report(),
        Err(error) => return Failure::new(exit::INTERNAL, anyhow::anyhow!("the run task failed: {error}")).report(),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(summary.render_text().as_bytes());
    let _ = stdout.flush();
    if let Err(error) = outputs.write(&summary, &scenario_source) {
        return Failure::new(exit::INTERNAL, error).report();
    }
    exit::of_summary(&summary, interrupt.is_cancelled())
}

/// A run event as a line on stderr.
fn show(event: RunEvent) {
    match event {
        RunEvent::Started {
            run_id, agents, vus, ..
        } => {
            tell!("run {run_id} started: {vus} VUs at peak on {agents} agent(s)")
        }
        RunEvent::Interval(shown) => tell!("{}", live_line(shown.interval, &shown.sets)),
        RunEvent::AgentLost {
            agent, reason, detail, ..
        } => tell!("agent {agent} lost: {reason}; {detail}"),
        RunEvent::Reshared { shares } => {
            let shares: Vec<String> = shares.iter().map(|(agent, vus)| format!("{agent} {vus}")).collect();
            tell!("shares of the peak VUs now: {}", shares.join(", "))
        }
        RunEvent::Changed(change) => tell!("[{:>5.1}s] {}", change.at_seconds, change.detail),
        // The summary has it; the live lines are history.
        RunEvent::LateReport(_) => {}
    }
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
        human_count(total.counter(Counter::ConnectionsOpened.name()) as f64),
        human_count(total.counter(Counter::ConnectionsFailed.name()) as f64),
        human_bytes(total.counter(Counter::BytesSent.name()) as f64),
        human_bytes(total.counter(Counter::BytesReceived.name()) as f64),
        human_count(total.counter(Counter::MessagesSent.name()) as f64),
        human_count(total.counter(Counter::MessagesReceived.name()) as f64),
        latency
    )
}

/// Binds the controller's gRPC listener.
pub async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}: is another controller running there?"))
}

/// The value of a run carrying the PEM certificate of the scenario's TLS test server, which
/// agents add to the roots they trust.
const TESTSERVER_CA_VARIABLE: &str = wsfleet_scenario::TESTSERVER_CA_VARIABLE;

/// How the controller starts the test server a scenario asks for (`testserver:`), and the
/// values it publishes (`testserver.url`, `.http_url`, `.host`, `.port`, and its CA under TLS).
pub fn testserver_starter() -> TestServerStarter {
    Arc::new(|spec| Box::pin(start_testserver(spec)))
}

async fn start_testserver(spec: wsfleet_scenario::TestServerSpec) -> Result<RunTestServer, TestServerError> {
    let config = wsfleet_testserver::Config {
        subprotocols: spec.subprotocols.clone(),
        tls: spec.tls,
        ..wsfleet_testserver::Config::default()
    };
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], spec.port));
    let server = wsfleet_testserver::TestServer::start(address, config)
        .await
        .map_err(|error| format!("cannot start the scenario's test server on {address}: {error}"))?;
    let bound = server.local_addr();
    tracing::info!(url = %server.url(), "test server started for the run");
    let mut values = HashMap::from([
        ("testserver.url".to_owned(), server.url()),
        // The same server's HTTP endpoints (`/login`, `/http/echo`).
        ("testserver.http_url".to_owned(), server.http_url()),
        ("testserver.host".to_owned(), bound.ip().to_string()),
        ("testserver.port".to_owned(), bound.port().to_string()),
    ]);
    // Agents trust the run's own test server: its certificate is made for this run.
    if let Some(pem) = server.ca_certificate_pem() {
        values.insert(TESTSERVER_CA_VARIABLE.to_owned(), pem.to_string());
    }
    Ok(RunTestServer {
        values,
        stop: Box::pin(server.shutdown()),
    })
}
