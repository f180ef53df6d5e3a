//! A STOMP 1.2 session over WebSocket (subprotocols `v12.stomp`, `v11.stomp`): the CONNECT
//! frame and the CONNECTED answer, heart-beat negotiation, receipt ids, subscription ids, and
//! the frames the server sends, read whole from messages that may split or share them. The codec
//! is in `frame`. No I/O and no clock: the caller asks [`Session::heartbeat_due`] and
//! [`Session::server_silent`] with the instants it reads.

pub mod frame;
mod layer;

pub use self::layer::{AckMode, Subscription};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use self::frame::{Decoder, Frame, Item};

/// The STOMP versions the client offers, in `accept-version`.
pub const ACCEPT_VERSION: &str = "1.2,1.1";

/// How much later than the negotiated interval the server's heart-beats may come before it
/// counts as silent: STOMP leaves the tolerance to the client; stomp.js and the Java clients
/// allow about this much for network delay.
pub const SILENCE_TOLERANCE: f64 = 2.0;

/// What a session's CONNECT says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The virtual host (`host` header); STOMP 1.2 requires one.
    pub host: String,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// The smallest interval at which the client sends heart-beats, `None` for none.
    pub send_heartbeat: Option<Duration>,
    /// The interval at which the client wants the server's heart-beats, `None` for none.
    pub want_heartbeat: Option<Duration>,
    /// Further headers.
    pub headers: Vec<(String, String)>,
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// CONNECT not sent yet.
    Idle,
    /// CONNECT sent, no answer yet.
    Connecting,
    Connected,
    /// The server sent an ERROR (and closes the connection, by STOMP).
    Failed,
    /// The client sent DISCONNECT.
    Disconnecting,
}

/// What the server said, frame by frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// CONNECTED, with the heart-beat intervals agreed.
    Connected,
    /// A heart-beat (an end of line between frames).
    Heartbeat,
    Message(Frame),
    /// The receipt for a frame that asked for one, by its id.
    Receipt(String),
    /// An ERROR frame: its `message` header (or body) and the frame.
    Error(String, Frame),
}

/// One connection's STOMP session.
pub struct Session {
    options: ConnectOptions,
    state: State,
    decoder: Decoder,
    received: VecDeque<Received>,
    next_receipt: u64,
    next_subscription: u64,
    /// The number of the next default transaction id (`tx-N`).
    next_transaction: u64,
    /// The transactions begun and not yet committed or aborted, oldest first.
    transactions: Vec<String>,
    /// The agreed intervals: how often the client sends, and how often the server does.
    send_every: Option<Duration>,
    expect_every: Option<Duration>,
    /// Negotiated server version.
    version: Option<String>,
    /// The subscriptions made, for the ack mode of their messages and unsubscribing by
    /// destination.
    subscriptions: Vec<Subscription>,
    /// Whether CONNECTED came: an ERROR before it is a refused login.
    accepted: bool,
    /// When the server was last heard from, once connected (for its heart-beats).
    last_received: Option<Instant>,
    /// When the client's next heart-beat is due, once connected.
    next_beat: Option<Instant>,
}

impl Session {
    pub fn new(options: ConnectOptions) -> Session {
        Session {
            options,
            state: State::Idle,
            decoder: Decoder::new(),
            received: VecDeque::new(),
            next_receipt: 0,
            next_subscription: 0,
            next_transaction: 0,
            transactions: Vec::new(),
            send_every: None,
            expect_every: None,
            version: None,
            subscriptions: Vec::new(),
            accepted: false,
            last_received: None,
            next_beat: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn ready(&self) -> bool {
        self.state == State::Connected
    }

    /// The version the server chose.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The CONNECT frame, as a text message (STOMP over WebSocket sends text).
    pub fn connect_message(&mut self) -> Message {
        let options = &self.options;
        let mut frame = Frame::new("CONNECT")
            .header("accept-version", ACCEPT_VERSION)
            .header("host", &options.host)
            .header(
                "heart-beat",
                &format!("{},{}", millis(options.send_heartbeat), millis(options.want_heartbeat)),
            );
        if let Some(login) = &options.login {
            frame = frame.header("login", login);
        }
        if let Some(passcode) = &options.passcode {
            frame = frame.header("passcode", passcode);
        }
        for (name, value) in &options.headers {
            frame = frame.header(name, value);
        }
        self.state = State::Connecting;
        to_message(&frame)
    }

    /// A fresh receipt id (`receipt:N`).
    pub fn receipt_id(&mut self) -> String {
        let id = self.next_receipt;
        self.next_receipt += 1;
        format!("r-{id}")
    }

    /// A fresh subscription id (`id:N` of SUBSCRIBE).
    pub fn subscription_id(&mut self) -> String {
        let id = self.next_subscription;
        self.next_subscription += 1;
        format!("sub-{id}")
    }

    /// The DISCONNECT frame, asking for the receipt `receipt` when given.
    pub fn disconnect_message(&mut self, receipt: Option<&str>) -> Message {
        self.state = State::Disconnecting;
        let mut frame = Frame::new("DISCONNECT");
        if let Some(receipt) = receipt {
            frame = frame.header("receipt", receipt);
        }
        to_message(&frame)
    }

    /// The agreed interval of the client's heart-beats.
    pub fn send_every(&self) -> Option<Duration> {
        self.send_every
    }

    /// The agreed interval of the server's heart-beats.
    pub fn expect_every(&self) -> Option<Duration> {
        self.expect_every
    }

    /// Whether the client owes a heart-beat: nothing sent since `last_sent` for the agreed
    /// interval.
    pub fn heartbeat_due(&self, last_sent: Instant, now: Instant) -> bool {
        self.send_every
            .is_some_and(|every| now.saturating_duration_since(last_sent) >= every)
    }

    /// When the server counts as silent: nothing received since `last_received` for the agreed
    /// interval times [`SILENCE_TOLERANCE`]; `None` when no server heart-beats were agreed.
    pub fn silent_after(&self, last_received: Instant) -> Option<Instant> {
        self.expect_every
            .map(|every| last_received + every.mul_f64(SILENCE_TOLERANCE))
    }

    /// Whether the server is silent at `now`.
    pub fn server_silent(&self, last_received: Instant, now: Instant) -> bool {
        self.silent_after(last_received).is_some_and(|at| now >= at)
    }

    /// Reads one incoming message: its frames and heart-beats go to [`Session::next_received`];
    /// a malformed frame or one that breaks the session is an error.
    pub fn feed(&mut self, message: &Message) -> Result<(), String> {
        match message {
            Message::Text(text) => self.decoder.push(text.as_bytes()),
            Message::Binary(bytes) => self.decoder.push(bytes),
            _ => return Ok(()),
        }
        while let Some(item) = self.decoder.next_item().map_err(|error| error.0)? {
            let received = match item {
                Item::Heartbeat => Received::Heartbeat,
                Item::Frame(frame) => self.frame(frame)?,
            };
            self.received.push_back(received);
        }
        Ok(())
    }

    /// The next thing the server said, in order.
    pub fn next_received(&mut self) -> Option<Received> {
        self.received.pop_front()
    }

    fn frame(&mut self, frame: Frame) -> Result<Received, String> {
        match frame.command.as_str() {
            "CONNECTED" => {
                if self.state != State::Connecting {
                    return Err("a CONNECTED frame the client did not ask for".into());
                }
                self.version = frame.get("version").map(str::to_owned);
                let (server_send, server_want) = match frame.get("heart-beat") {
                    Some(value) => heartbeat(value)?,
                    None => (0, 0),
                };
                // STOMP 1.2: each side's interval is the larger of what one offers and the other
                // wants, or none when either says 0.
                self.send_every = agreed(self.options.send_heartbeat, server_want);
                self.expect_every = agreed(self.options.want_heartbeat, server_send);
                self.state = State::Connected;
                Ok(Received::Connected)
            }
            "MESSAGE" => {
                if frame.get("destination").is_none() {
                    return Err("a MESSAGE frame without a destination".into());
                }
                Ok(Received::Message(frame))
            }
            "RECEIPT" => match frame.get("receipt-id") {
                Some(id) => Ok(Received::Receipt(id.to_owned())),
                None => Err("a RECEIPT frame without a receipt-id".into()),
            },
            "ERROR" => {
                self.state = State::Failed;
                let why = frame
                    .get("message")
                    .map(str::to_owned)
                    .unwrap_or_else(|| String::from_utf8_lossy(&frame.body).into_owned());
                Ok(Received::Error(why, frame))
            }
            other => Err(format!("a {other} frame, which servers do not send")),
        }
    }
}

/// A frame as the text message STOMP over WebSocket sends; a body that is not UTF-8 goes as a
/// binary message (RabbitMQ and Spring take both).
pub fn to_message(frame: &Frame) -> Message {
    let bytes = frame.encode();
    match String::from_utf8(bytes) {
        Ok(text) => Message::text(text),
        Err(error) => Message::binary(error.into_bytes()),
    }
}

/// The heart-beat message: an end of line.
pub fn heartbeat_message() -> Message {
    Message::text("\n")
}

fn millis(interval: Option<Duration>) -> u128 {
    interval.map_or(0, |interval| interval.as_millis())
}

/// Reads a `heart-beat:sx,sy` header.
fn heartbeat(value: &str) -> Result<(u64, u64), String> {
    let bad = || format!("heart-beat `{value}` is not two numbers of milliseconds");
    let (send, want) = value.split_once(',').ok_or_else(bad)?;
    let send = send.trim().parse().map_err(|_| bad())?;
    let want = want.trim().parse().map_err(|_| bad())?;
    Ok((send, want))
}

fn agreed(ours: Option<Duration>, theirs_millis: u64) -> Option<Duration> {
    let ours = ours.filter(|interval| !interval.is_zero())?;
    if theirs_millis == 0 {
        return None;
    }
    Some(ours.max(Duration::from_millis(theirs_millis)))
}

#[cfg(test)]
#[path = "stomp/session_tests.rs"]
mod tests;
