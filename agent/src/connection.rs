//! Opening one WebSocket connection: DNS, TCP, TLS and the upgrade, each phase timed, over a
//! stream that counts every byte that crosses the socket (so handshakes, frame headers, masks
//! and TLS records are all in the wire totals).
//!
//! This is the VU's seam to its connections. A connect step opens its connection through the
//! run's [`Connector`] (the network in production, an in-memory stream in unit tests); what it
//! gets is a [`Socket`], a WebSocket over a [`Transport`] enum that dispatches each read and
//! write by `match`. Where the layers still to come belong:
//! - write coalescing (several frames per `write` call) is in [`Counted`], below the WebSocket
//!   (and below TLS, so records coalesce too): once the upgrade is done, what the WebSocket writes
//!   waits in a buffer until a flush or until [`COALESCE_BOUND`] bytes wait;
//!   [`Transport::wrote_everything`] reports `false` while bytes wait, and the VU flushes when
//!   it is about to wait (`vu/outgoing.rs`);
//! - permessage-deflate: offered in the upgrade request (`upgrade/request.rs`), its answer
//!   checked in [`handshake`] below, and applied per message between the VU's outgoing messages
//!   and inbox and the socket;
//! - Socket.IO (STOMP, MQTT to come): above this module, on whole messages: `crate::protocol`
//!   and the VU's `protocol` module run the handshake after the upgrade and read every message.
//!
//! Its parts: `transport` (the counting stream and the [`Transport`] enum), `socket` (the
//! [`Socket`] enum and tungstenite's buffer sizes), `dial` (source addresses, DNS, TCP, the
//! proxy tunnel and TLS), `tls` (TLS client settings); this module holds the seam itself, the
//! request and its outcome, and the upgrade.

mod dial;
mod socket;
mod tls;
mod transport;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use wsfleet_metrics::{ErrorKind, Hist, Recorder, SetId};

use crate::clock;
use crate::deflate::DeflateSocket;
use crate::failure::ConnectError;
use crate::upgrade::{UpgradeRequest, Upgraded};

use dial::dial;
pub use dial::SourceAddresses;
pub(crate) use dial::{connect_from, resolve, tunnel};
pub use socket::{websocket_config, Socket, MAX_MESSAGE_BYTES, WEBSOCKET_READ_BUFFER};
pub(crate) use tls::tls_or_io;
pub use tls::{default_tls_config, run_tls_config, step_tls_config, TlsConfig};
pub use transport::{Counted, Transport, WriteOffsets, COALESCE_BOUND};

/// What a connect step asks for, rendered.
pub struct ConnectRequest<'a> {
    /// The upgrade request, laid out once per distinct URL, headers and subprotocols.
    pub upgrade: &'a UpgradeRequest,
    pub timeout: Duration,
    /// The local address to bind before connecting (`None`: the kernel picks).
    pub source: Option<std::net::IpAddr>,
    /// The TLS settings for wss:// (the run's default or the step's own).
    pub tls: &'a TlsConfig,
    /// The name the server certificate is checked against, when not the URL's host.
    pub server_name: Option<&'a str>,
    pub proxy: Option<&'a wsfleet_scenario::Proxy>,
    /// The handshake status that counts as success (101, or e.g. 401 to test refusals).
    pub expect_status: u16,
    /// Copy the response headers into `Opened::headers` (only when a step reads them).
    pub keep_headers: bool,
}

/// The outcome of a handshake the scenario expected.
pub struct Opened {
    /// The open WebSocket; `None` when the expected status was a refusal.
    pub socket: Option<Socket>,
    pub status: u16,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The permessage-deflate parameters the server agreed to; `None` without compression
    /// (not offered, or declined).
    pub agreed: Option<wsfleet_scenario::Agreed>,
}

/// The future of a connection being opened.
pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = Result<Opened, ConnectError>> + 'a>>;

/// How a connect step opens its connection: the seam between a VU and its transport. One call
/// per connection (a virtual call and the one box the handshake's state needs anyway, never
/// per message); what it returns is a [`Socket`] over a [`Transport`], whose reads and writes
/// dispatch by `match`.
///
/// [`Network`] dials for real. A test's connector hands the VU one end of an in-memory stream
/// ([`Transport::Memory`]) and plays the server on the other. Later layers plug in here too: a
/// connector that speaks a protocol's own handshake after the upgrade (Socket.IO, STOMP, MQTT),
/// or a transport that coalesces writes (see the module's notes on [`Transport`]).
pub trait Connector {
    /// Opens the connection `request` asks for, recording phase timings and handshake bytes in
    /// `step`'s set, within `request.timeout`.
    fn open<'a>(
        &'a self,
        request: &'a ConnectRequest<'a>,
        recorder: &'a Rc<RefCell<Recorder>>,
        step: SetId,
    ) -> OpenFuture<'a>;
}

/// Opens connections over the network: DNS, TCP (from the chosen source address, through a
/// proxy when the step names one), TLS for `wss://`, then the upgrade.
pub struct Network;

impl Connector for Network {
    fn open<'a>(
        &'a self,
        request: &'a ConnectRequest<'a>,
        recorder: &'a Rc<RefCell<Recorder>>,
        step: SetId,
    ) -> OpenFuture<'a> {
        Box::pin(open(request, recorder, step))
    }
}

/// Opens a connection over the network, recording phase timings and handshake bytes in
/// `step`'s set.
pub async fn open(
    request: &ConnectRequest<'_>,
    recorder: &Rc<RefCell<Recorder>>,
    step: SetId,
) -> Result<Opened, ConnectError> {
    let started = clock::now();
    within_timeout(request.timeout, async {
        let transport = dial(request, recorder, step).await?;
        handshake(transport, request, recorder, step, started).await
    })
    .await
}

/// Bounds the opening of a connection by the connect step's timeout (error kind `timeout`).
pub async fn within_timeout(
    timeout: Duration,
    opening: impl Future<Output = Result<Opened, ConnectError>>,
) -> Result<Opened, ConnectError> {
    match tokio::time::timeout(timeout, opening).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::new(
            ErrorKind::Timeout,
            format!("connect did not finish within {timeout:?}"),
        )),
    }
}

/// The WebSocket upgrade over an open transport, timed from `started` (the connect's start)
/// for `handshake`, and the checks of the status the step expects.
pub async fn handshake(
    mut transport: Transport,
    request: &ConnectRequest<'_>,
    recorder: &Rc<RefCell<Recorder>>,
    step: SetId,
    started: Instant,
) -> Result<Opened, ConnectError> {
    let upgrade = request.upgrade;
    transport.set_upgrading(true);
    let upgrade_started = clock::now();
    let upgraded = crate::upgrade::upgrade(transport, upgrade, request.keep_headers).await?;
    let now = clock::now();
    let (socket, status, headers, agreed) = match upgraded {
        Upgraded::Open {
            mut stream,
            early,
            headers,
            extensions,
        } => {
            stream.set_upgrading(false);
            stream.coalesce();
            if request.expect_status != 101 {
                return Err(ConnectError::new(
                    ErrorKind::Expectation,
                    format!(
                        "the server accepted the upgrade; the step expected HTTP {}",
                        request.expect_status
                    ),
                ));
            }
            let agreed = match &upgrade.deflate {
                None => None,
                Some(deflate) => wsfleet_scenario::compression::check_answer(extensions.as_deref(), deflate)
                    .map_err(|why| ConnectError::new(ErrorKind::Protocol, why))?
                    .map(|agreed| (agreed, deflate.threshold)),
            };
            let socket = match &agreed {
                None => Socket::Plain(crate::upgrade::websocket(stream, early, websocket_config()).await),
                Some((agreed, threshold)) => Socket::Deflate(Box::new(
                    DeflateSocket::new(stream, early, agreed, *threshold)
                        .map_err(|error| ConnectError::new(ErrorKind::Protocol, error.to_string()))?,
                )),
            };
            (Some(socket), 101, headers, agreed.map(|(agreed, _)| agreed))
        }
        // The refused connection closes here, its bytes counted.
        Upgraded::Refused { status, headers, .. } if status == request.expect_status => (None, status, headers, None),
        Upgraded::Refused { status, .. } => return Err(ConnectError::http_status(status)),
    };
    let mut recorder = recorder.borrow_mut();
    recorder.record(now, step, Hist::WsUpgrade, now - upgrade_started);
    recorder.record(now, step, Hist::Handshake, now - started);
    Ok(Opened {
        socket,
        status,
        headers,
        agreed,
    })
}
