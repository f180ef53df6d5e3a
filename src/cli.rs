//! The command line, parsed in one place; `main` resolves it into behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "wsfleet",
    version,
    about = "Distributed WebSocket load generation: one controller, many agents, exact metrics."
)]
pub struct Cli {
    /// Configuration file (TOML or YAML); environment variables WSFLEET_<SECTION>__<KEY> and flags override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the resolved configuration and exit.
    #[arg(long, global = true)]
    pub dump_config: bool,
    /// Log filter (e.g. `info`, `wsfleet_agent=debug`); also RUST_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario now: an in-process controller, local agent processes, and the test server
    /// when the scenario asks for it. Exits 0 when the run passed (see docs/cli.md for codes).
    Run(RunArgs),
    /// A long-running controller that agents attach to.
    Controller(ControllerArgs),
    /// An agent that attaches to a controller and plays what it is assigned.
    Agent(AgentArgs),
    /// Check a scenario file without running it.
    Validate {
        /// The scenario file.
        scenario: PathBuf,
    },
    /// The built-in WebSocket test server (echo, broadcast, JSON, scripted misbehaviour).
    Testserver(TestserverArgs),
    /// Turn a browser's HAR recording into a scenario: its WebSocket connections, messages and
    /// think times, with matchers proposed from the replies (Chrome, Edge, Playwright; see
    /// docs/cli.md).
    Import(ImportArgs),
    /// Steer the run a controller is playing, through its HTTP API: set VUs or rate, hold or
    /// resume the plan, pause, unpause or stop a part, drain an agent.
    Ctl(CtlArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The HAR file (DevTools' Network panel: "Export HAR"; Playwright's `recordHar`).
    pub har: PathBuf,
    /// Import only the WebSocket entries whose URL contains this text (default: all of them).
    #[arg(long, value_name = "URL")]
    pub filter: Option<String>,
    /// Think times from the recorded gaps: `keep`, `scale=F` (times F, e.g. `scale=0.5`) or `none`.
    #[arg(long, default_value = "keep", value_name = "keep|scale=F|none")]
    pub think: crate::import::Think,
    /// Also write the fetch and XHR requests made before the first upgrade as `http` steps.
    #[arg(long)]
    pub http_steps: bool,
    /// Write the scenario here (default: stdout).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The controller's HTTP address (its dashboard), e.g. `http://127.0.0.1:7601`.
    #[arg(long, env = "WSFLEET_CTL_CONTROLLER", default_value = "http://127.0.0.1:7601")]
    pub controller: String,
    /// The controller's API token, when it requires one.
    #[arg(long, env = "WSFLEET_CONTROLLER__API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// The scenario's part to change (not needed when it has one).
    #[arg(long, global = true)]
    pub part: Option<String>,
    #[command(subcommand)]
    pub change: CtlChange,
}

#[derive(Debug, Subcommand)]
pub enum CtlChange {
    /// Set the fleet's VUs of a closed-model part from now on.
    SetVus {
        vus: u64,
        /// Reach them over this long (e.g. `30s`); at once without it.
        #[arg(long)]
        ramp: Option<String>,
    },
    /// Set the arrival rate (per second) of an open-model part from now on.
    SetRate {
        rate: f64,
        /// Reach it over this long (e.g. `30s`); at once without it.
        #[arg(long)]
        ramp: Option<String>,
    },
    /// Stop the plan's clock: the load stays where it is.
    Hold,
    /// Start the plan's clock again where it stopped (drops a value set).
    Resume,
    /// VUs wait before their next iteration; open-model arrivals are skipped meanwhile.
    Pause,
    /// The paused part goes on.
    Unpause,
    /// End the part (its iterations finish within its graceful stop); the others go on.
    Stop,
    /// Move an agent's share of the rest of the run to the other agents; its VUs finish their
    /// iteration and end.
    Drain {
        /// The agent's id.
        agent: String,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file.
    pub scenario: PathBuf,
    /// How many local agent processes to start.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub agents: u32,
    /// Write results: `json=FILE` (summary and per-interval series), `csv=FILE` (per-interval
    /// series), `html=FILE` (a standalone report with charts), `junit=FILE` (each threshold a
    /// JUnit test case, for CI). Repeatable.
    #[arg(long, value_name = "KIND=FILE")]
    pub out: Vec<String>,
    /// Worker threads per local agent (default: the cores divided among the agents, at least 1).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Do not print a live line per second.
    #[arg(long)]
    pub quiet: bool,
    /// Address of the HTTP endpoints (/metrics); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub http: String,
    /// Token the dashboard and /api require (`Authorization: Bearer TOKEN` or `?token=`).
    #[arg(long, value_name = "TOKEN")]
    pub api_token: Option<String>,
    /// Serve the dashboard and /api without a token on an --http address that is not loopback.
    #[arg(long)]
    pub insecure_no_api_token: bool,
    /// Keep the run's history (SQLite) in this directory (default: a temporary one).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep serving the dashboard and /metrics this long after the run ends.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub linger: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Address for agents' gRPC streams (default 127.0.0.1:7600; binding elsewhere is an explicit choice).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Token agents must present (required on a --listen address that is not loopback, unless
    /// --client-ca or --insecure-no-agent-token).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Address of the HTTP endpoints (/metrics) (default 127.0.0.1:7601).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Token the dashboard and /api require (`Authorization: Bearer TOKEN` or `?token=`);
    /// required on an --http address that is not loopback, unless --insecure-no-api-token.
    #[arg(long, value_name = "TOKEN")]
    pub api_token: Option<String>,
    /// Serve the dashboard and /api without a token on an --http address that is not loopback.
    #[arg(long)]
    pub insecure_no_api_token: bool,
    /// Accept agents without a token (or --client-ca) on a --listen address that is not loopback.
    #[arg(long)]
    pub insecure_no_agent_token: bool,
    /// Where the run history (SQLite) is kept (default ./wsfleet-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Serve the agents' channel over TLS with this certificate (PEM; with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require agents to present a certificate signed by this CA (mutual TLS; needs --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Run this scenario once `--agents` agents have attached, then exit with the run's code.
    #[arg(long, value_name = "SCENARIO")]
    pub run: Option<PathBuf>,
    /// How many agents to wait for before `--run` starts.
    #[arg(long, default_value_t = 1)]
    pub agents: usize,
    /// How long to wait for them.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
    /// Write results of `--run`: `json=FILE`, `csv=FILE`, `html=FILE`, `junit=FILE`.
    #[arg(long, value_name = "KIND=FILE")]
    pub out: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The controller's gRPC address, e.g. http://10.0.0.5:7600.
    #[arg(long, value_name = "URL")]
    pub controller: Option<String>,
    /// This agent's id (default: HOSTNAME-PID).
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub token: Option<String>,
    /// Trust this CA for the controller's certificate (use an https:// controller URL).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Present this certificate to a controller that requires client certificates (with --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name to verify in the controller's certificate (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub tls_domain: Option<String>,
    /// Relative share of load (default: the number of cores).
    #[arg(long)]
    pub weight: Option<f64>,
    /// Hold at most this many connections.
    #[arg(long)]
    pub max_connections: Option<u64>,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Spread connections over these local addresses, e.g. `127.0.0.2-127.0.0.9` or
    /// `10.0.0.5,10.0.0.6` (each gives ~28k ports per destination).
    #[arg(long, value_name = "ADDRESSES")]
    pub source_addresses: Option<String>,
    /// Exit when the controller goes away instead of reattaching.
    #[arg(long)]
    pub once: bool,
    /// Announce another protocol version (for testing refusal).
    #[arg(long, hide = true)]
    pub protocol_version: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TestserverArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: std::net::SocketAddr,
    /// Serve wss:// with a self-signed certificate (written to --cert-out when given).
    #[arg(long)]
    pub tls: bool,
    /// Where to write the self-signed certificate (PEM) for clients to trust.
    #[arg(long, value_name = "FILE")]
    pub cert_out: Option<PathBuf>,
    /// A subprotocol the server accepts (repeatable).
    #[arg(long = "subprotocol")]
    pub subprotocols: Vec<String>,
    /// Share the port with other processes (SO_REUSEPORT).
    #[arg(long)]
    pub reuse_port: bool,
}
