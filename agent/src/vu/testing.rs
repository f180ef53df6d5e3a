//! A harness that drives VUs through the connection seam with no socket and no process: the
//! scenario is YAML compiled by the scenario crate as a run compiles it, each connect step
//! gets one end of an in-memory stream ([`Transport::Memory`]) and the test plays the server
//! on the other, and what the VU recorded is read back as exact counts. Tests run under
//! `tokio::time::pause()`, so timeouts, think times and pacing take no wall time and every
//! latency is exact.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::{MetricSets, Recorder, SetData, SetId, CONNECTION_SET};

use super::{run_vu, static_messages, step_tls_configs, RunEnv, UpgradeRequests, VuControl};
use crate::clock;
use crate::connection::{self, ConnectRequest, Connector, Counted, OpenFuture, Transport};

/// Hands each connection's far end to the test.
struct InMemory {
    accepted: mpsc::UnboundedSender<DuplexStream>,
}

impl Connector for InMemory {
    fn open<'a>(
        &'a self,
        request: &'a ConnectRequest<'a>,
        recorder: &'a Rc<RefCell<Recorder>>,
        step: SetId,
    ) -> OpenFuture<'a> {
        Box::pin(async move {
            let started = clock::now();
            let (near, far) = tokio::io::duplex(64 * 1024);
            // A test that stopped listening leaves the handshake to time out.
            let _ = self.accepted.send(far);
            let transport = Transport::Memory(Counted::new(near, recorder.clone()));
            connection::within_timeout(
                request.timeout,
                connection::handshake(transport, request, recorder, step, started),
            )
            .await
        })
    }
}

/// A compiled scenario and the environment its VUs share, over in-memory connections.
pub(super) struct Harness {
    pub(super) env: Rc<RunEnv>,
}

/// The server side: the connections VUs open, in order.
pub(super) struct Target {
    accepted: mpsc::UnboundedReceiver<DuplexStream>,
    /// Rendezvous arrivals (point, generation), as the session would report them.
    pub(super) arrivals: mpsc::UnboundedReceiver<(u32, u64)>,
}

/// A WebSocket as the server holds it.
pub(super) type ServerSocket = WebSocketStream<DuplexStream>;

impl Harness {
    /// Compiles `yaml` (panics on a problem: the test's scenario is wrong).
    pub(super) fn new(yaml: &str) -> (Harness, Target) {
        Harness::with_files(yaml, BTreeMap::new())
    }

    /// Compiles `yaml` with the files it names (data feeds, payloads).
    pub(super) fn with_files(yaml: &str, files: BTreeMap<String, Vec<u8>>) -> (Harness, Target) {
        let scenario = wsfleet_scenario::Bundle {
            path: "test.yaml".into(),
            source: yaml.into(),
            files,
        }
        .compile()
        .unwrap_or_else(|error| panic!("{error}"));
        let (sender, accepted) = mpsc::unbounded_channel();
        let (hub, arrivals) = crate::rendezvous::RendezvousHub::new();
        let named: wsfleet_scenario::Values = scenario.variables.clone().into_iter().collect();
        let env = Rc::new(RunEnv {
            static_messages: Arc::new(static_messages(&scenario)),
            step_tls: Arc::new(step_tls_configs(&scenario, None).expect("step TLS")),
            recorder: Rc::new(RefCell::new(Recorder::new(clock::now(), scenario.step_names.clone()))),
            scenario: Arc::new(scenario),
            agent_id: Arc::from("agent"),
            named: Arc::new(named),
            tls: connection::default_tls_config().expect("TLS"),
            handshake_slots: Rc::new(tokio::sync::Semaphore::new(super::HANDSHAKES_IN_FLIGHT_PER_WORKER)),
            source_addresses: connection::SourceAddresses::new(Arc::new(Vec::new()), 0),
            upgrades: UpgradeRequests::default(),
            rendezvous: Arc::new(hub),
            connector: Rc::new(InMemory { accepted: sender }),
        });
        (Harness { env }, Target { accepted, arrivals })
    }

    /// Plays VU `number` of the first part until its iterations are done.
    pub(super) async fn play(&self, number: u64) {
        self.play_with(number, control()).await;
    }

    /// Plays VU `number` under `control`.
    pub(super) async fn play_with(&self, number: u64, control: VuControl) {
        run_vu(self.env.clone(), 0, number, control, None).await;
    }

    /// Everything recorded so far, merged over intervals.
    pub(super) fn metrics(&self) -> Metrics {
        let mut merged = MetricSets::default();
        for (_, sets) in self.env.recorder.borrow_mut().take_all(clock::now()) {
            merged.merge(&sets).expect("merge");
        }
        Metrics(merged)
    }
}

/// A control that never stops the VU.
pub(super) fn control() -> VuControl {
    VuControl {
        graceful: CancellationToken::new(),
        hard: crate::stop::HardStop::new(),
        pause: Default::default(),
    }
}

impl Target {
    /// The next connection's stream, before any handshake.
    pub(super) async fn raw(&mut self) -> DuplexStream {
        self.accepted.recv().await.expect("the VU opened no more connections")
    }

    /// The next connection, its upgrade accepted.
    pub(super) async fn accept(&mut self) -> ServerSocket {
        self.accept_with(|_, response| response).await
    }

    /// The next connection, its upgrade answered by `respond` (to add headers, or pick a
    /// subprotocol).
    pub(super) async fn accept_with(
        &mut self,
        respond: impl FnOnce(&Request, Response) -> Response + Unpin,
    ) -> ServerSocket {
        let stream = self.raw().await;
        // tungstenite's callback type, whose error is an HTTP response.
        #[allow(clippy::result_large_err)]
        let callback = |request: &Request, response: Response| Ok(respond(request, response));
        tokio_tungstenite::accept_hdr_async(stream, callback)
            .await
            .expect("upgrade")
    }

    /// The next connection, its upgrade answered with `status` and no WebSocket.
    pub(super) async fn refuse(&mut self, status: &str) {
        let mut stream = self.raw().await;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.expect("request head");
            head.push(byte[0]);
        }
        let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        stream.write_all(response.as_bytes()).await.expect("response");
    }
}

/// Reads until the client has closed (answering its close), so the VU's close completes.
pub(super) async fn drain(mut socket: ServerSocket) -> usize {
    let mut messages = 0;
    while let Some(Ok(message)) = socket.next().await {
        if message.is_text() || message.is_binary() {
            messages += 1;
        }
    }
    messages
}

/// What a VU recorded, by set.
pub(super) struct Metrics(MetricSets);

impl Metrics {
    fn set(&self, name: &str) -> SetData {
        self.0.sets.get(name).cloned().unwrap_or_default()
    }

    /// A counter of one step's (or rule's) set.
    pub(super) fn step(&self, step: &str, counter: &str) -> u64 {
        self.set(step).counter(counter)
    }

    /// A counter of the connection set (iterations, wire bytes, unread messages).
    pub(super) fn conn(&self, counter: &str) -> u64 {
        self.set(CONNECTION_SET).counter(counter)
    }

    /// A counter summed over every set.
    pub(super) fn total(&self, counter: &str) -> u64 {
        self.0.total().counter(counter)
    }

    /// The values of a step's histogram in microseconds (each value once per sample).
    pub(super) fn samples(&self, step: &str, histogram: &str) -> Vec<u64> {
        let set = self.set(step);
        let Some(histogram) = set.histograms.get(histogram) else {
            return Vec::new();
        };
        histogram
            .iter_recorded()
            .flat_map(|value| {
                std::iter::repeat_n(
                    histogram.highest_equivalent(value.value_iterated_to()),
                    value.count_at_value() as usize,
                )
            })
            .collect()
    }

    /// Every counter of every set, for a failing test's message.
    pub(super) fn dump(&self) -> String {
        let mut lines = Vec::new();
        for (name, set) in &self.0.sets {
            for (counter, value) in &set.counters {
                lines.push(format!("{name:?}.{counter} = {value}"));
            }
        }
        lines.join("\n")
    }
}
