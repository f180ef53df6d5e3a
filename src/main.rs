//! The `wsfleet` binary: parses the command line, loads layered configuration, starts tracing,
//! dispatches to the libraries, and maps the outcome to a documented exit code (`exit`).

/// `println!` that ignores a closed stdout: a reader that went away must not stop a run.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod csv;
mod ctl;
mod exit;
mod exposure;
mod import;
mod junit;
mod local;
mod settings;
mod signals;

use std::io::IsTerminal as _;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use wsfleet_controller::ControllerSettings;

use crate::exit::OrExit as _;

/// mimalloc rather than the system's allocator: an agent holding many idle connections keeps a
/// few long-lived allocations per connection, made between the handshakes' short-lived ones;
/// mimalloc's pages of one size class each leave no header per allocation and fewer holes
/// between them (docs/benchmarks.md, "Idle memory").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "warn".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour escapes only for a person at a terminal, not in a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let settings = match settings::load(cli.config.as_deref(), overrides(&cli)) {
        Ok(settings) => settings,
        Err(error) => {
            tell!("error: {error:#}");
            return exit::code(exit::INVALID_INPUT);
        }
    };
    // An agent with one worker is one thread: the session and the VUs share it
    // (`wsfleet_agent::run_on_this_thread`).
    let one_thread = matches!(cli.command, Command::Agent(_))
        && !cli.dump_config
        && settings.agent.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            |workers| workers.max(1),
        ) == 1;
    let mut builder = if one_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tell!("error: cannot start the async runtime: {error}");
            return exit::code(exit::INTERNAL);
        }
    };
    let code = runtime.block_on(dispatch(cli, settings));
    // Do not wait for lingering tasks (e.g. a hung target) once the outcome is known.
    runtime.shutdown_timeout(Duration::from_secs(1));
    exit::code(code)
}

fn overrides(cli: &Cli) -> settings::Overrides {
    let mut overrides = settings::Overrides::new();
    match &cli.command {
        Command::Controller(args) => {
            if let Some(listen) = &args.listen {
                overrides.push(("controller.listen", listen.clone()));
            }
            if let Some(token) = &args.token {
                overrides.push(("controller.token", token.clone()));
            }
            if let Some(token) = &args.api_token {
                overrides.push(("controller.api_token", token.clone()));
            }
            if let Some(http) = &args.http {
                overrides.push(("controller.http", http.clone()));
            }
            if args.insecure_no_api_token {
                overrides.push(("controller.insecure_no_api_token", "true".to_owned()));
            }
            if args.insecure_no_agent_token {
                overrides.push(("controller.insecure_no_agent_token", "true".to_owned()));
            }
            if let Some(dir) = &args.data_dir {
                overrides.push(("controller.data_dir", dir.display().to_string()));
            }
            for (key, path) in [
                ("controller.tls_cert", &args.tls_cert),
                ("controller.tls_key", &args.tls_key),
                ("controller.client_ca", &args.client_ca),
            ] {
                if let Some(path) = path {
                    overrides.push((key, path.display().to_string()));
                }
            }
        }
        Command::Run(args) => {
            if let Some(token) = &args.api_token {
                overrides.push(("controller.api_token", token.clone()));
            }
            if args.insecure_no_api_token {
                overrides.push(("controller.insecure_no_api_token", "true".to_owned()));
            }
        }
        Command::Agent(args) => {
            if let Some(controller) = &args.controller {
                overrides.push(("agent.controller", controller.clone()));
            }
            if let Some(id) = &args.id {
                overrides.push(("agent.id", id.clone()));
            }
            if let Some(token) = &args.token {
                overrides.push(("agent.token", token.clone()));
            }
            if let Some(weight) = args.weight {
                overrides.push(("agent.weight", weight.to_string()));
            }
            if let Some(max) = args.max_connections {
                overrides.push(("agent.max_connections", max.to_string()));
            }
            if let Some(workers) = args.workers {
                overrides.push(("agent.workers", workers.to_string()));
            }
            for (key, path) in [
                ("agent.ca", &args.ca),
                ("agent.cert", &args.cert),
                ("agent.key", &args.key),
            ] {
                if let Some(path) = path {
                    overrides.push((key, path.display().to_string()));
                }
            }
            if let Some(addresses) = &args.source_addresses {
                overrides.push(("agent.source_addresses", addresses.clone()));
            }
            if let Some(domain) = &args.tls_domain {
                overrides.push(("agent.tls_domain", domain.clone()));
            }
        }
        _ => {}
    }
    overrides
}

/// The agents' channel as `section` describes it; without `with_tls`, its TLS settings are not
/// read (`wsfleet run` serves its own local agents on loopback).
fn controller_settings(section: &settings::ControllerSection, with_tls: bool) -> anyhow::Result<ControllerSettings> {
    let tls = match (&section.tls_cert, &section.tls_key) {
        _ if !with_tls => None,
        (Some(certificate), Some(key)) => Some(wsfleet_controller::ServerTls {
            certificate_pem: settings::read_pem(certificate, "controller.tls_cert")?,
            key_pem: settings::read_pem(key, "controller.tls_key")?,
            client_ca_pem: section
                .client_ca
                .as_deref()
                .map(|ca| settings::read_pem(ca, "controller.client_ca"))
                .transpose()?,
        }),
        (None, None) if section.client_ca.is_some() => {
            anyhow::bail!("configuration `controller.client_ca` needs `controller.tls_cert` and `controller.tls_key`")
        }
        (None, None) => None,
        _ => anyhow::bail!("configuration: give both `controller.tls_cert` and `controller.tls_key`"),
    };
    Ok(ControllerSettings {
        tls,
        token: section.token.clone().filter(|token| !token.is_empty()),
        heartbeat_interval: settings::parse_duration(&section.heartbeat_interval, "controller.heartbeat_interval")?,
        silence_timeout: settings::parse_duration(&section.silence_timeout, "controller.silence_timeout")?,
    })
}

/// The API token `section` sets; an empty one is none.
fn api_token(section: &settings::ControllerSection) -> Option<String> {
    section.api_token.clone().filter(|token| !token.is_empty())
}

/// Refuses, before anything listens, to serve the HTTP endpoints at `http` or the agents'
/// channel (`agents`: its address and settings; absent for `wsfleet run`, whose agents attach on
/// loopback) beyond this host without a token, unless the section says so on purpose.
async fn refuse_unguarded(
    section: &settings::ControllerSection,
    http: &str,
    agents: Option<(&str, &ControllerSettings)>,
) -> Result<(), exit::Failure> {
    let agents = match agents {
        Some((address, settings)) => Some(exposure::Listener {
            address,
            reach: exposure::reach_of(address).await,
            guarded: settings.token.is_some() || settings.tls.as_ref().is_some_and(|tls| tls.client_ca_pem.is_some()),
            open_on_purpose: section.insecure_no_agent_token,
        }),
        None => None,
    };
    let http = exposure::Listener {
        address: http,
        reach: exposure::reach_of(http).await,
        guarded: api_token(section).is_some(),
        open_on_purpose: section.insecure_no_api_token,
    };
    exposure::check(agents.as_ref(), &http).or_exit(exit::INVALID_INPUT)
}

/// Stops `stop` at the first Ctrl-C or SIGTERM; a second one exits at once.
fn spawn_interrupt_handler(stop: CancellationToken) {
    tokio::spawn(async move {
        if signals::stop_requested().await.is_err() {
            return;
        }
        tell!("\nstopping: letting iterations finish, then closing connections (Ctrl-C again to exit now)");
        stop.cancel();
        if signals::stop_requested().await.is_ok() {
            tell!("exiting now");
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
    });
}

async fn dispatch(cli: Cli, settings: settings::Settings) -> u8 {
    if cli.dump_config {
        match toml_like(&settings) {
            Ok(text) => {
                say!("{text}");
                return exit::OK;
            }
            Err(error) => {
                tell!("error: {error}");
                return exit::INTERNAL;
            }
        }
    }
    match cli.command {
        Command::Validate { scenario } => match local::load_scenario(&scenario) {
            Ok((_, compiled)) => {
                let parts = if compiled.parts.len() > 1 {
                    format!(
                        " in {} scenarios ({})",
                        compiled.parts.len(),
                        compiled
                            .parts
                            .iter()
                            .map(|part| format!("{}: {}", part.name, part.plan.max_vus()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                };
                say!(
                    "{}: ok — scenario `{}`, {} step(s), {} VU(s) at peak{parts}",
                    scenario.display(),
                    compiled.name,
                    compiled.step_names.len(),
                    compiled.max_vus()
                );
                exit::OK
            }
            Err(code) => code,
        },
        Command::Run(args) => run_local(args, &settings).await,
        Command::Controller(args) => run_controller(args, &settings).await,
        Command::Agent(args) => run_agent(args, &settings).await,
        Command::Testserver(args) => run_testserver(args).await,
        Command::Ctl(args) => ctl::run(args),
        Command::Import(args) => import::run(import::Request {
            har: &args.har,
            filter: args.filter,
            think: args.think,
            http_steps: args.http_steps,
            output: args.output.as_deref(),
        })
        .unwrap_or_else(exit::Failure::report),
    }
}

fn toml_like(settings: &settings::Settings) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(settings)
}

async fn run_local(args: cli::RunArgs, settings: &settings::Settings) -> u8 {
    run_local_failing(args, settings)
        .await
        .unwrap_or_else(exit::Failure::report)
}

/// `wsfleet run`: a controller on loopback ports, `--agents` local agent processes, one run.
async fn run_local_failing(args: cli::RunArgs, settings: &settings::Settings) -> Result<u8, exit::Failure> {
    let outputs = local::Outputs::parse(&args.out).or_exit(exit::USAGE)?;
    let loaded = local::load_scenario(&args.scenario).map_err(exit::Failure::reported)?;
    // The agents are this command's own, on loopback: the agents' channel has no TLS here.
    let controller_settings = controller_settings(&settings.controller, false).or_exit(exit::INVALID_INPUT)?;
    refuse_unguarded(&settings.controller, &args.http, None).await?;
    let token = controller_settings.token.clone();
    // The run's history lives as long as this command (the dashboard reads it), unless kept.
    let temporary_data = tempfile::tempdir().ok();
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| temporary_data.as_ref().map(|dir| dir.path().to_owned()));
    let history = match data_dir {
        Some(dir) => open_history(dir).await?,
        None => None,
    };
    let grpc = local::bind("127.0.0.1:0").await.or_exit(exit::RUN_NOT_DONE)?;
    let grpc_address = grpc.local_addr().or_exit(exit::INTERNAL)?;
    let http = local::bind(&args.http).await.or_exit(exit::RUN_NOT_DONE)?;
    if let Ok(address) = http.local_addr() {
        tell!("dashboard at http://{address}/ (metrics at /metrics)");
    }
    let shutdown = CancellationToken::new();
    let config = wsfleet_controller::ServeConfig {
        settings: controller_settings,
        api_token: api_token(&settings.controller),
        testserver: Some(local::testserver_starter()),
    };
    let serving = wsfleet_controller::serve(
        wsfleet_controller::Listeners { grpc, http },
        config,
        history,
        shutdown.clone(),
    );

    let executable = std::env::current_exe()
        .context("cannot find the wsfleet executable to start agents")
        .or_exit(exit::INTERNAL)?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = args.workers.unwrap_or_else(|| (cores / args.agents as usize).max(1));
    let mut children = Vec::new();
    for index in 0..args.agents {
        let mut command = tokio::process::Command::new(&executable);
        command
            .arg("agent")
            .arg("--controller")
            .arg(format!("http://{grpc_address}"))
            .arg("--id")
            .arg(format!("local-{index}"))
            .arg("--workers")
            .arg(workers.to_string())
            .arg("--once");
        if let Some(token) = &token {
            command.arg("--token").arg(token);
        }
        let child = command
            // Their own process group: a terminal's Ctrl-C reaches only this process, which
            // stops the run gracefully through the controller; the agents exit when it closes
            // their streams.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start local agent {index}"))
            .or_exit(exit::RUN_NOT_DONE)?;
        children.push(child);
    }
    let wanted = args.agents as usize;
    let attached = serving
        .controller
        .wait_for_agents(wanted, Duration::from_secs(30))
        .await;
    if attached < wanted {
        return Err(exit::Failure::new(
            exit::RUN_NOT_DONE,
            anyhow::anyhow!(
                "only {attached} of {wanted} local agents attached within 30 s; run with --log info to see why"
            ),
        ));
    }

    let stop = CancellationToken::new();
    spawn_interrupt_handler(stop.clone());
    let code = local::run_and_report(&serving.runs, loaded, Default::default(), &outputs, args.quiet, stop).await;
    if !args.linger.is_zero() {
        // Keep the final figures scrapeable (e.g. by Prometheus) for a while.
        tokio::time::sleep(args.linger).await;
    }

    // Agents exit when the controller's stream closes; give them a moment, then make sure.
    shutdown.cancel();
    close(serving).await;
    for mut child in children {
        if tokio::time::timeout(Duration::from_secs(3), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    Ok(code)
}

/// Opens the run history in `dir`.
async fn open_history(dir: std::path::PathBuf) -> Result<Option<wsfleet_controller::history::History>, exit::Failure> {
    match tokio::task::spawn_blocking(move || wsfleet_controller::history::History::open(&dir)).await {
        Ok(history) => history.map(Some).or_exit(exit::INVALID_INPUT),
        // The history is a convenience: a run goes on without it.
        Err(_) => Ok(None),
    }
}

/// Waits for the controller's ordered shutdown; a server's failure is logged.
async fn close(serving: wsfleet_controller::Serving) {
    if let Err(error) = serving.closed().await {
        tracing::warn!(%error, "controller shut down with an error");
    }
}

async fn run_controller(args: cli::ControllerArgs, settings: &settings::Settings) -> u8 {
    run_controller_failing(args, settings)
        .await
        .unwrap_or_else(exit::Failure::report)
}

/// `wsfleet controller`: serve agents and the API until Ctrl-C or SIGTERM, or run `--run` once.
async fn run_controller_failing(args: cli::ControllerArgs, settings: &settings::Settings) -> Result<u8, exit::Failure> {
    let controller_settings = controller_settings(&settings.controller, true).or_exit(exit::INVALID_INPUT)?;
    let section = &settings.controller;
    refuse_unguarded(section, &section.http, Some((&section.listen, &controller_settings))).await?;
    let outputs = local::Outputs::parse(&args.out).or_exit(exit::USAGE)?;
    let scenario = match &args.run {
        Some(path) => Some(local::load_scenario(path).map_err(exit::Failure::reported)?),
        None => None,
    };
    let data_dir = std::path::PathBuf::from(&settings.controller.data_dir);
    let history = match tokio::task::spawn_blocking(move || wsfleet_controller::history::History::open(&data_dir)).await
    {
        Ok(history) => history.or_exit(exit::INVALID_INPUT)?,
        Err(error) => return Err(exit::Failure::new(exit::INTERNAL, error)),
    };
    let grpc = local::bind(&settings.controller.listen)
        .await
        .or_exit(exit::RUN_NOT_DONE)?;
    let address = grpc.local_addr().map(|address| address.to_string()).unwrap_or_default();
    let scheme = if controller_settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    say!("wsfleet controller listening for agents on {scheme}://{address}");
    let http = local::bind(&settings.controller.http)
        .await
        .or_exit(exit::RUN_NOT_DONE)?;
    if let Ok(address) = http.local_addr() {
        say!("dashboard at http://{address}/ (metrics at /metrics)");
    }
    let shutdown = CancellationToken::new();
    let config = wsfleet_controller::ServeConfig {
        settings: controller_settings,
        api_token: api_token(&settings.controller),
        testserver: Some(local::testserver_starter()),
    };
    let listeners = wsfleet_controller::Listeners { grpc, http };
    let serving = wsfleet_controller::serve(listeners, config, Some(history), shutdown.clone());
    let stop = CancellationToken::new();
    spawn_interrupt_handler(stop.clone());
    let code = match scenario {
        None => {
            stop.cancelled().await;
            exit::OK
        }
        Some(loaded) => {
            tell!("waiting for {} agent(s)", args.agents);
            let attached = tokio::select! {
                attached = serving.controller.wait_for_agents(args.agents, args.wait) => attached,
                _ = stop.cancelled() => 0,
            };
            if attached < args.agents {
                tell!(
                    "error: {attached} of {} agents attached within {:?}",
                    args.agents,
                    args.wait
                );
                exit::RUN_NOT_DONE
            } else {
                local::run_and_report(&serving.runs, loaded, Default::default(), &outputs, false, stop).await
            }
        }
    };
    shutdown.cancel();
    close(serving).await;
    Ok(code)
}

async fn run_agent(args: cli::AgentArgs, settings: &settings::Settings) -> u8 {
    run_agent_failing(args, settings)
        .await
        .unwrap_or_else(exit::Failure::report)
}

/// `wsfleet agent`: attach to the controller and play what it assigns.
async fn run_agent_failing(args: cli::AgentArgs, settings: &settings::Settings) -> Result<u8, exit::Failure> {
    let section = &settings.agent;
    let mut config = wsfleet_agent::AgentConfig::new(section.controller.clone());
    config.agent_id = section.id.clone();
    config.token = section.token.clone();
    if let Some(weight) = section.weight {
        if !wsfleet_scenario::plan::valid_weight(weight) {
            return Err(anyhow::anyhow!(
                "configuration `agent.weight`: {weight} is not a weight: give a number from {} to {}, or 0 for the agent's cores (as without it)",
                wsfleet_scenario::plan::MIN_WEIGHT,
                wsfleet_scenario::plan::MAX_WEIGHT
            ))
            .or_exit(exit::INVALID_INPUT);
        }
    }
    config.weight = section.weight;
    config.max_connections = section.max_connections;
    if let Some(workers) = section.workers {
        config.workers = workers.max(1);
    }
    config.once = args.once;
    config.protocol_version = args.protocol_version;
    if let Some(spec) = &section.source_addresses {
        config.source_addresses = wsfleet_agent::parse_source_addresses(spec)
            .map_err(|error| anyhow::anyhow!("configuration `agent.source_addresses`: {error}"))
            .or_exit(exit::INVALID_INPUT)?;
    }
    let tls = (|| -> anyhow::Result<Option<wsfleet_agent::ClientTls>> {
        let identity = match (&section.cert, &section.key) {
            (Some(certificate), Some(key)) => Some((
                settings::read_pem(certificate, "agent.cert")?,
                settings::read_pem(key, "agent.key")?,
            )),
            (None, None) => None,
            _ => anyhow::bail!("configuration: give both `agent.cert` and `agent.key`"),
        };
        match &section.ca {
            Some(ca) => Ok(Some(wsfleet_agent::ClientTls {
                ca_pem: settings::read_pem(ca, "agent.ca")?,
                identity,
                domain: section.tls_domain.clone(),
            })),
            None if identity.is_some() => {
                anyhow::bail!("configuration: `agent.cert` needs `agent.ca` (the CA of the controller's certificate)")
            }
            None => Ok(None),
        }
    })();
    config.tls = tls.or_exit(exit::INVALID_INPUT)?;
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _ = signals::stop_requested().await;
            cancel.cancel();
        });
    }
    let one_thread = config.workers == 1
        && tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread;
    let outcome = if one_thread {
        wsfleet_agent::run_on_this_thread(config, cancel).await
    } else {
        wsfleet_agent::run(config, cancel).await
    };
    Ok(exit::of_agent_outcome(outcome))
}

async fn run_testserver(args: cli::TestserverArgs) -> u8 {
    run_testserver_failing(args).await.unwrap_or_else(exit::Failure::report)
}

/// `wsfleet testserver`: serve until Ctrl-C or SIGTERM.
async fn run_testserver_failing(args: cli::TestserverArgs) -> Result<u8, exit::Failure> {
    let config = wsfleet_testserver::Config {
        subprotocols: args.subprotocols.clone(),
        tls: args.tls,
        reuse_port: args.reuse_port,
        ..wsfleet_testserver::Config::default()
    };
    let server = wsfleet_testserver::TestServer::start(args.listen, config)
        .await
        .or_exit(exit::RUN_NOT_DONE)?;
    if let (Some(path), Some(pem)) = (&args.cert_out, server.ca_certificate_pem()) {
        std::fs::write(path, pem)
            .with_context(|| format!("cannot write the certificate to {}", path.display()))
            .or_exit(exit::INTERNAL)?;
    }
    say!("wsfleet testserver listening on {}", server.url());
    let _ = signals::stop_requested().await;
    server.shutdown().await;
    Ok(exit::OK)
}
