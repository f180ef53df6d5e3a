//! The agent-facing side of a controller: its registry of attached agents, its settings, the
//! live state of the run, and the gRPC service agents attach to.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wsfleet_proto::v1::fleet_server::FleetServer;
use wsfleet_proto::MAX_MESSAGE_BYTES;

use crate::registry::Registry;
use crate::settings::ControllerSettings;
use crate::{live, service};

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
