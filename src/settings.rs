//! Layered configuration: defaults, then a file (`--config`), then environment variables
//! (`WSFLEET_<SECTION>__<KEY>`), then flags.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Unknown keys inside a section are refused; unknown top-level keys are ignored so that other
/// `WSFLEET_*` environment variables do not break the configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Settings {
    pub controller: ControllerSection,
    pub agent: AgentSection,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSection {
    /// gRPC listen address for agents.
    pub listen: String,
    pub token: Option<String>,
    /// Heartbeat period, e.g. `1s`.
    pub heartbeat_interval: String,
    /// Silence after which an agent is dropped and an agent stops its load, e.g. `10s`.
    pub silence_timeout: String,
    /// HTTP endpoints (dashboard, /api, /metrics).
    pub http: String,
    /// Token the dashboard and /api require, when set.
    pub api_token: Option<String>,
    /// Serve the dashboard and /api without `api_token` on an address that is not loopback.
    pub insecure_no_api_token: bool,
    /// Accept agents without `token` (or mutual TLS) on an address that is not loopback.
    pub insecure_no_agent_token: bool,
    /// Directory of the run history database.
    pub data_dir: String,
    /// TLS certificate and key files (PEM) for the agents' channel.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// CA file whose certificates agents must present (mutual TLS).
    pub client_ca: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    pub controller: String,
    pub id: Option<String>,
    pub token: Option<String>,
    pub weight: Option<f64>,
    pub max_connections: Option<u64>,
    pub workers: Option<usize>,
    /// Local addresses to spread connections over (`127.0.0.2-127.0.0.9`).
    pub source_addresses: Option<String>,
    /// CA file that signed the controller's certificate.
    pub ca: Option<String>,
    /// Client certificate and key files for mutual TLS.
    pub cert: Option<String>,
    pub key: Option<String>,
    pub tls_domain: Option<String>,
}

/// Flags that override the file and environment, as (key, value) pairs.
pub type Overrides = Vec<(&'static str, String)>;

pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Settings> {
    let mut builder = config::Config::builder()
        .set_default("controller.listen", "127.0.0.1:7600")?
        .set_default("controller.heartbeat_interval", "1s")?
        .set_default("controller.silence_timeout", "10s")?
        .set_default("controller.data_dir", "wsfleet-data")?
        .set_default("controller.http", "127.0.0.1:7601")?
        .set_default("controller.insecure_no_api_token", false)?
        .set_default("controller.insecure_no_agent_token", false)?
        .set_default("agent.controller", "http://127.0.0.1:7600")?;
    if let Some(file) = file {
        if !file.exists() {
            anyhow::bail!("configuration file {} does not exist", file.display());
        }
        builder = builder.add_source(config::File::from(file));
    }
    builder = builder.add_source(
        config::Environment::with_prefix("WSFLEET")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true),
    );
    for (key, value) in overrides {
        builder = builder.set_override(key, value)?;
    }
    let settings: Settings = builder
        .build()
        .map_err(|error| anyhow::anyhow!("configuration: {error}"))?
        .try_deserialize()
        .map_err(|error| anyhow::anyhow!("configuration: {error}"))?;
    Ok(settings)
}

/// Reads a PEM file named by setting `key`.
pub fn read_pem(path: &str, key: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|error| anyhow::anyhow!("configuration `{key}`: cannot read {path}: {error}"))
}

pub fn parse_duration(text: &str, key: &str) -> anyhow::Result<std::time::Duration> {
    humantime::parse_duration(text).map_err(|error| {
        anyhow::anyhow!("configuration `{key}` = `{text}` is not a duration ({error}): write e.g. `10s`")
    })
}
