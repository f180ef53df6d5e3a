//! The wsfleet controller: the agent registry and gRPC service agents attach to, run
//! orchestration with the exact load split, exact aggregation of agents' reports, and the
//! end-of-run summary.

pub mod aggregate;
pub mod api;
pub mod capacity;
pub mod history;
pub mod http;
pub mod human;
pub mod live;
pub mod lost;
pub mod outcome;
pub mod registry;
pub mod report;
pub mod run;
pub mod runs;
pub mod serve;
pub mod service;
pub mod summary;
pub mod thresholds;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wsfleet_proto::v1::fleet_server::FleetServer;
use wsfleet_proto::MAX_MESSAGE_BYTES;

pub use outcome::{LostAction, Outcome};
pub use registry::Registry;
pub use run::{execute, RunError, RunEvent, RunRequest};
pub use runs::{RunTestServer, StartError, TestServerStarter};
pub use serve::{serve, Listeners, ServeConfig, ServeError, Serving};
pub use summary::Summary;

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

/// A controller: its registry, settings and live run state.
#[derive(Clone)]
pub struct Controller {
    pub registry: Arc<Registry>,
    pub settings: Arc<ControllerSettings>,
    pub live: Arc<live::Live>,
}

impl Controller {
    pub fn new(settings: ControllerSettings) -> Controller {
        Controller {
            registry: Registry::new(),
            settings: Arc::new(settings),
            live: live::Live::new(),
        }
    }

    /// Serves the agent-facing gRPC service on `listener` until `cancel` fires.
    pub async fn serve_grpc(
        &self,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> Result<(), tonic::transport::Error> {
        let service = service::FleetService {
            registry: self.registry.clone(),
            settings: self.settings.clone(),
            shutdown: cancel.clone(),
        };
        let server = FleetServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let mut builder = tonic::transport::Server::builder().http2_keepalive_interval(Some(Duration::from_secs(10)));
        if let Some(tls) = &self.settings.tls {
            let mut config = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(&tls.certificate_pem, &tls.key_pem));
            if let Some(ca) = &tls.client_ca_pem {
                config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            builder = builder.tls_config(config)?;
        }
        builder
            .add_service(server)
            .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
            .await
    }

    /// Waits until at least `count` agents are attached, or `timeout` passes; returns how many are.
    pub async fn wait_for_agents(&self, count: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.registry.changed.notified();
            let attached = self.registry.agent_count();
            if attached >= count {
                return attached;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.registry.agent_count();
            }
        }
    }
}
