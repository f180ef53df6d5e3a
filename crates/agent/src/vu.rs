//! A virtual user: plays the scenario's steps on its connection, iteration after iteration,
//! recording every event where it happens into its worker's recorder.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use wsfleet_metrics::catalog::{close_code_counter, error_counter, ACTIVE_CONNECTIONS};
use wsfleet_metrics::{Counter, ErrorKind, Hist, Recorder, SetId};
use wsfleet_scenario::{Action, FrameKind, Payload, Scenario, Scope, Step, StepId, Think};

use crate::connection::{self, classify_ws_error, ConnectRequest, Socket, TlsConfig};

/// What every VU of a run on one worker shares.
pub struct RunEnv {
    pub scenario: Arc<Scenario>,
    /// Messages whose content never changes, built once per run (a clone is a reference count).
    pub static_messages: Arc<HashMap<StepId, Message>>,
    pub agent_id: Arc<str>,
    /// Run-level values for `${...}`: scenario variables, `target`, `testserver.*`, `run_id`.
    pub named: Arc<HashMap<String, String>>,
    pub tls: TlsConfig,
    pub recorder: Rc<RefCell<Recorder>>,
    pub iterations_per_vu: Option<u64>,
    /// Handshakes this worker runs at once. Unbounded, a thousand VUs starting together
    /// allocate a thousand handshakes' buffers at the same moment; the allocator keeps that
    /// peak, doubling the memory per idle connection, and the target sees a SYN burst. A few
    /// dozen in flight already keep a core busy on loopback.
    pub handshake_slots: Rc<tokio::sync::Semaphore>,
    /// Local addresses new connections bind to, in turn.
    pub source_addresses: connection::SourceAddresses,
}

/// Handshakes in flight per worker thread.
pub const HANDSHAKES_IN_FLIGHT_PER_WORKER: usize = 64;

/// Builds the messages of sends whose payload has no variables.
pub fn static_messages(scenario: &Scenario) -> HashMap<StepId, Message> {
    let mut messages = HashMap::new();
    fn walk(steps: &[Step], messages: &mut HashMap<StepId, Message>) {
        for step in steps {
            match &step.action {
                Action::Send(send) => {
                    let bytes: Option<Vec<u8>> = match &send.payload {
                        Payload::Text(template) => template.as_literal().map(|text| text.as_bytes().to_vec()),
                        Payload::Bytes(bytes) => Some(bytes.clone()),
                    };
                    if let Some(message) = bytes.and_then(|bytes| build_message(bytes, send.frame)) {
                        messages.insert(step.id, message);
                    }
                }
                Action::Repeat(repeat) => walk(&repeat.steps, messages),
                _ => {}
            }
        }
    }
    walk(&scenario.steps, &mut messages);
    messages
}

fn build_message(bytes: Vec<u8>, frame: FrameKind) -> Option<Message> {
    match frame {
        FrameKind::Binary => Some(Message::Binary(Bytes::from(bytes))),
        // Validation refused non-UTF-8 bytes in text frames.
        FrameKind::Text => Utf8Bytes::try_from(Bytes::from(bytes)).ok().map(Message::Text),
    }
}

/// How the executor steers one VU.
#[derive(Clone)]
pub struct VuControl {
    /// Finish the current iteration, then stop.
    pub graceful: CancellationToken,
    /// Stop now: close connections with a close frame and end.
    pub hard: CancellationToken,
}

/// Why an iteration stopped early.
struct Failure {
    step: StepId,
    /// `errors.<kind>` label, or `None` when the cause has its own counter (receive timeouts).
    kind: Option<String>,
}

impl Failure {
    fn new(step: StepId, kind: ErrorKind) -> Failure {
        Failure {
            step,
            kind: Some(kind.name().to_owned()),
        }
    }
}

/// One open connection and what the steps need to remember about it.
struct Conn {
    socket: Socket,
    recorder: Rc<RefCell<Recorder>>,
    /// Data messages read while waiting for something else (a pong, a close), for the next receive.
    pending: VecDeque<Message>,
    /// When each named send last went out, for `latency_of`.
    send_times: HashMap<StepId, Instant>,
    /// The most recent send not yet answered by a receive.
    unanswered_send: Option<Instant>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut recorder = self.recorder.borrow_mut();
        recorder.gauge_add(ACTIVE_CONNECTIONS, -1);
        recorder.add(Instant::now(), SetId::Connection, Counter::ConnectionsClosed, 1);
    }
}

/// Plays iterations until the plan's count, a graceful stop, or a hard stop. `handshake` is an
/// open-model VU's place among the fleet's handshakes in flight, given up once it connected.
pub async fn run_vu(
    env: Rc<RunEnv>,
    number: u64,
    control: VuControl,
    handshake: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let mut vu = Vu {
        env: env.clone(),
        number,
        vu_iteration: 0,
        conn: None,
        named: HashMap::new(),
        handshake,
    };
    loop {
        if control.graceful.is_cancelled() || control.hard.is_cancelled() {
            break;
        }
        if env.iterations_per_vu.is_some_and(|limit| vu.vu_iteration >= limit) {
            break;
        }
        let steps = &env.scenario.steps;
        let outcome = tokio::select! {
            biased;
            _ = control.hard.cancelled() => None,
            outcome = vu.play(steps, vu.vu_iteration) => Some(outcome),
        };
        let now = Instant::now();
        match outcome {
            None => {
                Box::pin(vu.close_quietly(CloseCode::Away)).await;
                break;
            }
            Some(Ok(())) => {
                env.recorder
                    .borrow_mut()
                    .add(now, SetId::Connection, Counter::Iterations, 1);
            }
            Some(Err(failure)) => {
                let mut recorder = env.recorder.borrow_mut();
                recorder.add(now, SetId::Connection, Counter::IterationsFailed, 1);
                if let Some(kind) = failure.kind {
                    recorder.add_labeled(now, SetId::Step(failure.step), error_counter(&kind), 1);
                }
                drop(recorder);
                // A failed connection is not reused.
                vu.conn = None;
            }
        }
        // A connection lives for one iteration: close what the steps left open.
        if vu.conn.is_some() {
            let close = tokio::select! {
                biased;
                _ = control.hard.cancelled() => false,
                _ = Box::pin(vu.close_quietly(CloseCode::Normal)) => true,
            };
            if !close {
                vu.conn = None;
                break;
            }
        }
        vu.vu_iteration += 1;
    }
}

struct Vu {
    env: Rc<RunEnv>,
    number: u64,
    vu_iteration: u64,
    conn: Option<Conn>,
    /// Values extracted by this VU's steps.
    named: HashMap<String, String>,
    /// Held until the first connect has finished (open model).
    handshake: Option<tokio::sync::OwnedSemaphorePermit>,
}

type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + 'a>>;

impl Vu {
    fn scope(&self, iteration: u64) -> Scope<'_> {
        Scope {
            vu: self.number,
            iteration,
            vu_iteration: self.vu_iteration,
            agent: &self.env.agent_id,
            named: if self.named.is_empty() {
                &self.env.named
            } else {
                &self.named
            },
        }
    }

    fn play<'a>(&'a mut self, steps: &'a [Step], iteration: u64) -> StepFuture<'a> {
        Box::pin(async move {
            for step in steps {
                self.step(step, iteration).await?;
            }
            Ok(())
        })
    }

    async fn step(&mut self, step: &Step, iteration: u64) -> Result<(), Failure> {
        let set = SetId::Step(step.id);
        match &step.action {
            Action::Connect(connect) => {
                let scope = self.scope(iteration);
                let url = connect.url.render(&scope).into_owned();
                let headers: Vec<(String, String)> = connect
                    .headers
                    .iter()
                    .map(|(name, value)| (name.clone(), value.render(&scope).into_owned()))
                    .collect();
                // A second connect replaces the connection (closing the old one first).
                Box::pin(self.close_quietly(CloseCode::Normal)).await;
                let request = ConnectRequest {
                    url: &url,
                    headers: &headers,
                    subprotocols: &connect.subprotocols,
                    timeout: connect.timeout,
                    source: self.env.source_addresses.next(),
                };
                let recorder = &self.env.recorder;
                // Waiting for a slot is the generator's own queueing, not the target's latency:
                // the handshake is timed from when it starts.
                let _slot = self.env.handshake_slots.acquire().await;
                // Boxed: the handshake's state is large and short-lived; inline, it would size
                // every VU's future for its whole life (a few KB per idle connection).
                let opened = Box::pin(connection::open(&request, &self.env.tls, recorder, set)).await;
                drop(_slot);
                self.handshake = None;
                match opened {
                    Ok(opened) => {
                        let now = Instant::now();
                        let mut recorder_ref = recorder.borrow_mut();
                        recorder_ref.add(now, set, Counter::ConnectionsOpened, 1);
                        recorder_ref.gauge_add(ACTIVE_CONNECTIONS, 1);
                        drop(recorder_ref);
                        self.conn = Some(Conn {
                            socket: opened.socket,
                            recorder: recorder.clone(),
                            pending: VecDeque::new(),
                            send_times: HashMap::new(),
                            unanswered_send: None,
                        });
                        Ok(())
                    }
                    Err(error) => {
                        tracing::debug!(vu = self.number, url = %url, kind = %error.kind, detail = %error.detail, "connect failed");
                        let now = Instant::now();
                        let mut recorder = recorder.borrow_mut();
                        recorder.add(now, set, Counter::ConnectionsFailed, 1);
                        Err(Failure {
                            step: step.id,
                            kind: Some(error.kind),
                        })
                    }
                }
            }
            Action::Send(send) => {
                let message = match self.env.static_messages.get(&step.id) {
                    Some(message) => message.clone(),
                    None => {
                        let bytes = match &send.payload {
                            Payload::Text(template) => {
                                template.render(&self.scope(iteration)).into_owned().into_bytes()
                            }
                            Payload::Bytes(bytes) => bytes.clone(),
                        };
                        build_message(bytes, send.frame).ok_or_else(|| Failure::new(step.id, ErrorKind::Protocol))?
                    }
                };
                let (counter, payload_len) = match &message {
                    Message::Text(text) => (Counter::TextMessagesSent, text.len()),
                    _ => (Counter::BinaryMessagesSent, message.len()),
                };
                let conn = self
                    .conn
                    .as_mut()
                    .ok_or_else(|| Failure::new(step.id, ErrorKind::Reset))?;
                let sent_at = Instant::now();
                conn.socket
                    .send(message)
                    .await
                    .map_err(|error| ws_failure(step.id, &error))?;
                conn.send_times.insert(step.id, sent_at);
                conn.unanswered_send = Some(sent_at);
                let now = Instant::now();
                let mut recorder = self.env.recorder.borrow_mut();
                recorder.add(now, set, Counter::MessagesSent, 1);
                recorder.add(now, set, counter, 1);
                recorder.add(now, set, Counter::PayloadBytesSent, payload_len as u64);
                Ok(())
            }
            Action::Receive(receive) => {
                let recorder = self.env.recorder.clone();
                let conn = self
                    .conn
                    .as_mut()
                    .ok_or_else(|| Failure::new(step.id, ErrorKind::Reset))?;
                let deadline = tokio::time::Instant::now() + receive.timeout;
                let message = match conn.pending.pop_front() {
                    Some(message) => message,
                    None => next_data_message(conn, deadline, step.id, set).await?,
                };
                let now = Instant::now();
                let started = match receive.latency_of {
                    Some(send) => conn.send_times.get(&send).copied(),
                    None => conn.unanswered_send,
                };
                conn.unanswered_send = None;
                if let Some(started) = started {
                    recorder
                        .borrow_mut()
                        .record(now, set, Hist::MessageLatency, now - started);
                }
                let _ = message;
                Ok(())
            }
            Action::Ping(ping) => {
                let conn = self
                    .conn
                    .as_mut()
                    .ok_or_else(|| Failure::new(step.id, ErrorKind::Reset))?;
                let sent_at = Instant::now();
                conn.socket
                    .send(Message::Ping(Bytes::from(ping.body.clone())))
                    .await
                    .map_err(|error| ws_failure(step.id, &error))?;
                self.env.recorder.borrow_mut().add(sent_at, set, Counter::PingsSent, 1);
                let deadline = tokio::time::Instant::now() + ping.timeout;
                wait_for_pong(conn, deadline, step.id, set).await?;
                let now = Instant::now();
                self.env
                    .recorder
                    .borrow_mut()
                    .record(now, set, Hist::PingLatency, now - sent_at);
                Ok(())
            }
            Action::Close(close) => {
                let Some(mut conn) = self.conn.take() else {
                    return Err(Failure::new(step.id, ErrorKind::Reset));
                };
                let frame = CloseFrame {
                    code: CloseCode::from(close.code),
                    reason: Utf8Bytes::from(close.reason.clone()),
                };
                close_connection(&mut conn, frame, close.timeout, step.id, set).await
            }
            Action::Think(think) => {
                tokio::time::sleep(think_time(think)).await;
                Ok(())
            }
            Action::Repeat(repeat) => {
                let started = Instant::now();
                let mut index = 0u64;
                loop {
                    if repeat.count.is_some_and(|count| index >= count) {
                        break;
                    }
                    if repeat.duration.is_some_and(|duration| started.elapsed() >= duration) {
                        break;
                    }
                    self.play(&repeat.steps, index).await?;
                    index += 1;
                }
                Ok(())
            }
        }
    }

    /// Closes the open connection, if any, with a close frame and a short wait for the answer;
    /// errors here are not the scenario's and are not counted as failures.
    async fn close_quietly(&mut self, code: CloseCode) {
        let Some(mut conn) = self.conn.take() else { return };
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(""),
        };
        let _ = close_connection(&mut conn, frame, Duration::from_secs(2), 0, SetId::Connection).await;
    }
}

fn think_time(think: &Think) -> Duration {
    match think {
        Think::Fixed(duration) => *duration,
        Think::Uniform(low, high) => {
            if low >= high {
                *low
            } else {
                rand::rng().random_range(*low..=*high)
            }
        }
        Think::Exponential(mean) => {
            // Inverse transform sampling; 1 - u is in (0, 1], so the logarithm is finite.
            let u: f64 = rand::rng().random();
            mean.mul_f64(-(1.0 - u).ln())
        }
    }
}

fn ws_failure(step: StepId, error: &tokio_tungstenite::tungstenite::Error) -> Failure {
    Failure {
        step,
        kind: Some(classify_ws_error(error).kind),
    }
}

/// Counts a data message read in `set`; returns whether it was a data message.
fn count_received(recorder: &Rc<RefCell<Recorder>>, set: SetId, message: &Message) -> bool {
    let (counter, length) = match message {
        Message::Text(text) => (Counter::TextMessagesReceived, text.len()),
        Message::Binary(bytes) => (Counter::BinaryMessagesReceived, bytes.len()),
        _ => return false,
    };
    let now = Instant::now();
    let mut recorder = recorder.borrow_mut();
    recorder.add(now, set, Counter::MessagesReceived, 1);
    recorder.add(now, set, counter, 1);
    recorder.add(now, set, Counter::PayloadBytesReceived, length as u64);
    true
}

/// Reads until a data message, a close, an error or the deadline.
async fn next_data_message(
    conn: &mut Conn,
    deadline: tokio::time::Instant,
    step: StepId,
    set: SetId,
) -> Result<Message, Failure> {
    loop {
        let next = match tokio::time::timeout_at(deadline, conn.socket.next()).await {
            Err(_) => {
                conn.recorder
                    .borrow_mut()
                    .add(Instant::now(), set, Counter::ReceiveTimeouts, 1);
                return Err(Failure { step, kind: None });
            }
            Ok(next) => next,
        };
        match next {
            None => return Err(Failure::new(step, ErrorKind::Reset)),
            Some(Err(error)) => return Err(ws_failure(step, &error)),
            Some(Ok(message)) => {
                if count_received(&conn.recorder, set, &message) {
                    return Ok(message);
                }
                if let Message::Close(frame) = message {
                    record_server_close(conn, set, frame.as_ref());
                    return Err(Failure::new(step, ErrorKind::Closed));
                }
                // Pings are answered by tungstenite; stray pongs are ignored.
            }
        }
    }
}

fn record_server_close(conn: &Conn, set: SetId, frame: Option<&CloseFrame>) {
    let code = frame.map_or(1005, |frame| u16::from(frame.code));
    conn.recorder
        .borrow_mut()
        .add_labeled(Instant::now(), set, close_code_counter(code), 1);
}

async fn wait_for_pong(
    conn: &mut Conn,
    deadline: tokio::time::Instant,
    step: StepId,
    set: SetId,
) -> Result<(), Failure> {
    loop {
        let next = tokio::time::timeout_at(deadline, conn.socket.next())
            .await
            .map_err(|_| Failure::new(step, ErrorKind::Timeout))?;
        match next {
            None => return Err(Failure::new(step, ErrorKind::Reset)),
            Some(Err(error)) => return Err(ws_failure(step, &error)),
            Some(Ok(Message::Pong(_))) => {
                conn.recorder
                    .borrow_mut()
                    .add(Instant::now(), set, Counter::PongsReceived, 1);
                return Ok(());
            }
            Some(Ok(Message::Close(frame))) => {
                record_server_close(conn, set, frame.as_ref());
                return Err(Failure::new(step, ErrorKind::Closed));
            }
            Some(Ok(message)) => {
                if count_received(&conn.recorder, set, &message) {
                    conn.pending.push_back(message);
                }
            }
        }
    }
}

/// Sends a close frame and waits (bounded) for the server's; records the server's close code
/// and the close latency in `set`.
async fn close_connection(
    conn: &mut Conn,
    frame: CloseFrame,
    timeout: Duration,
    step: StepId,
    set: SetId,
) -> Result<(), Failure> {
    let started = Instant::now();
    if let Err(error) = conn.socket.close(Some(frame)).await {
        return Err(ws_failure(step, &error));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = match tokio::time::timeout_at(deadline, conn.socket.next()).await {
            Err(_) => return Err(Failure::new(step, ErrorKind::Timeout)),
            Ok(next) => next,
        };
        match next {
            // The close handshake is complete when the stream ends after the server's close.
            None => return Ok(()),
            Some(Ok(Message::Close(frame))) => {
                let now = Instant::now();
                record_server_close(conn, set, frame.as_ref());
                conn.recorder
                    .borrow_mut()
                    .record(now, set, Hist::CloseLatency, now - started);
            }
            Some(Ok(message)) => {
                count_received(&conn.recorder, set, &message);
            }
            Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => return Ok(()),
            Some(Err(error)) => return Err(ws_failure(step, &error)),
        }
    }
}

#[cfg(test)]
mod sizes {
    //! The memory a VU costs while it holds an idle connection is mostly the size of its task's
    //! future (allocated once, for its largest state) plus the connection's buffers.

    use super::*;

    #[test]
    fn print_future_sizes() {
        let scenario = wsfleet_scenario::Bundle {
            path: "s.yaml".into(),
            source:
                "load: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: 'ws://127.0.0.1:9/' }\n  - think: 1s\n"
                    .into(),
            files: Default::default(),
        }
        .compile()
        .unwrap();
        let start = Instant::now();
        let env = Rc::new(RunEnv {
            static_messages: Arc::new(static_messages(&scenario)),
            scenario: Arc::new(scenario),
            agent_id: Arc::from("a"),
            named: Arc::new(HashMap::new()),
            tls: crate::connection::default_tls_config().unwrap(),
            recorder: Rc::new(RefCell::new(Recorder::new(
                start,
                vec!["connect".into(), "think".into()],
            ))),
            iterations_per_vu: Some(1),
            handshake_slots: Rc::new(tokio::sync::Semaphore::new(1)),
            source_addresses: crate::connection::SourceAddresses::new(Arc::new(Vec::new()), 0),
        });
        let control = VuControl {
            graceful: CancellationToken::new(),
            hard: CancellationToken::new(),
        };
        let future = run_vu(env.clone(), 0, control, None);
        println!("run_vu future: {} bytes", std::mem::size_of_val(&future));
        let mut vu = Vu {
            env: env.clone(),
            number: 0,
            vu_iteration: 0,
            conn: None,
            named: HashMap::new(),
            handshake: None,
        };
        let steps = &env.scenario.steps;
        let play = vu.play(steps, 0);
        println!("play (boxed): {} bytes", std::mem::size_of_val(&*play));
        drop(play);
        let step = vu.step(&steps[0], 0);
        println!("step future: {} bytes", std::mem::size_of_val(&step));
        println!("Conn: {} bytes", std::mem::size_of::<Conn>());
    }
}
