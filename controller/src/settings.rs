//! How the controller treats its agents: the token they present, the heartbeat both sides keep,
//! the silence after which an agent is lost, and TLS for their channel.

use std::time::Duration;

/// How the controller treats its agents.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// Agents must present this token in their hello, when set.
    pub token: Option<String>,
    /// How often each side sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// Silence after which the controller drops an agent (and an agent stops its load).
    pub silence_timeout: Duration,
    /// TLS for the agents' gRPC channel; with `client_ca_pem`, agents must present a
    /// certificate signed by that CA (mutual TLS).
    pub tls: Option<ServerTls>,
}

/// The controller's TLS material, PEM-encoded.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub certificate_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            token: None,
            heartbeat_interval: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}
