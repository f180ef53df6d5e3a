//! From a parsed HAR file to the imported scenario's timeline: which entries are the
//! WebSocket connections, their messages decoded and in order, the HTTP requests before the
//! first upgrade, and where the think times go. `write` turns the timeline into YAML.

use base64::Engine as _;

use super::har::{self, Entry, HarFile};

/// How recorded gaps become `think` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Think {
    /// As recorded.
    Keep,
    /// Multiplied by this factor (> 0).
    Scale(f64),
    /// No think steps.
    None,
}

impl std::str::FromStr for Think {
    type Err = String;

    fn from_str(text: &str) -> Result<Think, String> {
        match text {
            "keep" => Ok(Think::Keep),
            "none" => Ok(Think::None),
            _ => {
                let factor = text
                    .strip_prefix("scale=")
                    .ok_or_else(|| format!("`{text}`: write `keep`, `none` or `scale=F` (e.g. `scale=0.5`)"))?;
                match factor.parse::<f64>() {
                    Ok(factor) if factor.is_finite() && factor > 0.0 => Ok(Think::Scale(factor)),
                    _ => Err(format!(
                        "`{factor}` is not a factor above 0: write e.g. `scale=0.5` (half the recorded gaps) or `--think none`"
                    )),
                }
            }
        }
    }
}

/// What the import is asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// Keep only the WebSocket entries whose URL contains this text.
    pub filter: Option<String>,
    pub think: Think,
    /// Also emit the HTTP requests (fetch and XHR) made before the first upgrade.
    pub http_steps: bool,
}

/// One recorded WebSocket message.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub sent: bool,
    pub payload: Payload,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Text(String),
    Binary(Vec<u8>),
}

/// A WebSocket entry chosen for import.
#[derive(Debug)]
pub struct Socket<'h> {
    /// The entry's index in the file.
    pub index: usize,
    pub entry: &'h Entry,
    pub url: String,
    /// When the handshake request left (seconds since the Unix epoch).
    pub start: f64,
    pub frames: Vec<Frame>,
}

/// An HTTP request made before the first upgrade.
#[derive(Debug)]
pub struct Request<'h> {
    pub index: usize,
    pub entry: &'h Entry,
    pub start: f64,
    pub end: f64,
}

/// What happened, in recorded order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// An HTTP request (index into `Timeline::requests`).
    Http(usize),
    /// A socket's handshake (index into `Timeline::sockets`).
    Connect(usize),
    /// A socket's message: socket, frame.
    Frame(usize, usize),
}

/// The recording, reduced to what the scenario plays.
#[derive(Debug)]
pub struct Timeline<'h> {
    pub sockets: Vec<Socket<'h>>,
    pub requests: Vec<Request<'h>>,
    pub events: Vec<Event>,
    pub warnings: Vec<String>,
}

/// Picks the entries, decodes the messages and orders everything; every problem names the
/// entry and field and says what to do.
pub fn timeline<'h>(har: &'h HarFile, shown: &str, options: &Options) -> Result<Timeline<'h>, String> {
    let entries = &har.log.entries;
    let browser = har
        .log
        .creator
        .as_ref()
        .and_then(|creator| creator.name.clone())
        .unwrap_or_else(|| "the browser".to_owned());
    let websockets: Vec<(usize, &Entry)> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.is_websocket())
        .collect();
    if websockets.is_empty() {
        return Err(format!(
            "`{shown}` holds no WebSocket connection among its {} entries (none is `ws://`/`wss://`, of \
             resource type `websocket`, or an upgrade answered 101): record again with the Network panel \
             open before the page opens its WebSocket, then \"Export HAR\"",
            entries.len()
        ));
    }
    let chosen: Vec<(usize, &Entry)> = match &options.filter {
        Some(filter) => websockets
            .iter()
            .copied()
            .filter(|(_, entry)| entry.websocket_url().contains(filter.as_str()))
            .collect(),
        None => websockets.clone(),
    };
    if chosen.is_empty() {
        let listed: Vec<String> = websockets
            .iter()
            .map(|(index, entry)| format!("entry {index}: {}", entry.websocket_url()))
            .collect();
        return Err(format!(
            "no WebSocket entry of `{shown}` has `{}` in its URL; the file holds: {}",
            options.filter.as_deref().unwrap_or_default(),
            listed.join(", ")
        ));
    }

    let mut warnings = Vec::new();
    let mut sockets = Vec::new();
    for (index, entry) in chosen {
        let url = entry.websocket_url();
        let place = format!("`{shown}`: entry {index} ({url})");
        let frames = match &entry.messages {
            Some(messages) => decode(messages, &place, &mut warnings)?,
            None => {
                warnings.push(format!(
                    "{place} has no `_webSocketMessages`: {browser} exported the handshake but not the \
                     messages (Firefox does so), so the scenario only connects and closes; record with \
                     Chrome, Edge or Playwright to import the messages"
                ));
                Vec::new()
            }
        };
        if entry.messages.as_ref().is_some_and(|messages| messages.is_empty()) {
            warnings.push(format!(
                "{place} recorded no messages: the page sent and received nothing while the recording ran"
            ));
        }
        let start = match started(entry, &place)? {
            Some(start) => start,
            None => {
                let first = frames.first().map(|frame| frame.time).unwrap_or(0.0);
                if !frames.is_empty() {
                    warnings.push(format!(
                        "{place} has no `startedDateTime`: the time before its first message is not known, so no \
                         think time precedes it"
                    ));
                }
                first
            }
        };
        let status = entry.status();
        if status != 101 {
            warnings.push(format!(
                "{place}: the recorded handshake was answered {status}, not 101; the scenario expects 101"
            ));
        }
        sockets.push(Socket {
            index,
            entry,
            url,
            start,
            frames,
        });
    }

    let first_upgrade = sockets.iter().map(|socket| socket.start).fold(f64::INFINITY, f64::min);
    let mut requests = Vec::new();
    if options.http_steps {
        for (index, entry) in entries.iter().enumerate() {
            if entry.is_websocket() || !is_api_request(entry) {
                continue;
            }
            let place = format!("`{shown}`: entry {index} ({})", entry.request.url);
            let Some(start) = started(entry, &place)? else {
                warnings.push(format!(
                    "{place} has no `startedDateTime`, so its place before the upgrade is not known; it is left out"
                ));
                continue;
            };
            if start >= first_upgrade {
                continue;
            }
            let duration = entry.time.filter(|time| time.is_finite() && *time > 0.0).unwrap_or(0.0);
            requests.push(Request {
                index,
                entry,
                start,
                end: start + duration / 1000.0,
            });
        }
        if requests.is_empty() {
            warnings.push(format!(
                "`{shown}` has no fetch or XHR request before the first upgrade, so no `http` step was written"
            ));
        }
    }

    // Requests, handshakes and messages in recorded order; a handshake before its own messages.
    let mut keyed: Vec<(f64, u8, Event)> = Vec::new();
    for (position, request) in requests.iter().enumerate() {
        keyed.push((request.start, 0, Event::Http(position)));
    }
    for (position, socket) in sockets.iter().enumerate() {
        keyed.push((socket.start, 1, Event::Connect(position)));
        for (frame, message) in socket.frames.iter().enumerate() {
            keyed.push((message.time.max(socket.start), 2, Event::Frame(position, frame)));
        }
    }
    keyed.sort_by(|left, right| left.0.total_cmp(&right.0).then(left.1.cmp(&right.1)));
    Ok(Timeline {
        events: keyed.into_iter().map(|(_, _, event)| event).collect(),
        sockets,
        requests,
        warnings,
    })
}

/// The entry's start, `None` when the file does not say.
fn started(entry: &Entry, place: &str) -> Result<Option<f64>, String> {
    match &entry.started {
        None => Ok(None),
        Some(text) => har::epoch_seconds(text).map(Some).ok_or_else(|| {
            format!(
                "{place}, field `startedDateTime`: `{}` is not an RFC 3339 time (e.g. `2026-11-30T07:55:00.123Z`); \
                 export the HAR again, or fix that field",
                super::emit::shorten(text, 60)
            )
        }),
    }
}

/// A request a page made from its code (fetch, XHR): a login, a token. Documents, scripts,
/// images and styles are the browser's business, not the load test's. Without a resource type
/// (Firefox), a request counts when it is not a GET or its answer is JSON.
fn is_api_request(entry: &Entry) -> bool {
    match entry.resource_type.as_deref() {
        Some(kind) => kind.eq_ignore_ascii_case("fetch") || kind.eq_ignore_ascii_case("xhr"),
        None => {
            let method = entry.request.method.as_deref().unwrap_or("GET");
            let json = entry
                .response
                .as_ref()
                .and_then(|response| response.content.as_ref())
                .and_then(|content| content.mime_type.as_deref())
                .is_some_and(|mime| mime.contains("json"));
            !method.eq_ignore_ascii_case("GET") || json
        }
    }
}

/// Decodes an entry's `_webSocketMessages`, in time order.
fn decode(messages: &[har::Message], place: &str, warnings: &mut Vec<String>) -> Result<Vec<Frame>, String> {
    let mut frames: Vec<Frame> = Vec::with_capacity(messages.len());
    let mut controls = 0usize;
    for (position, message) in messages.iter().enumerate() {
        let field = format!("_webSocketMessages[{position}]");
        let sent = match message.kind.as_str() {
            "send" => true,
            "receive" => false,
            "error" => {
                warnings.push(format!(
                    "{place}, {field}: the browser reported a WebSocket error: {}",
                    super::emit::shorten(&message.data, 200)
                ));
                continue;
            }
            other => {
                return Err(format!(
                    "{place}, field `{field}.type`: `{}` is not a message type; Chrome, Edge and Playwright \
                     write `send`, `receive` or `error`: fix or remove that message",
                    super::emit::shorten(other, 40)
                ))
            }
        };
        let base64 = |opcode: i64| {
            base64::engine::general_purpose::STANDARD
                .decode(&message.data)
                .map_err(|error| {
                    format!(
                        "{place}, field `{field}.data`: not base64 ({error}); a binary message (opcode {opcode}) \
                         holds its bytes in base64, as Chrome writes them: export the HAR again, or remove that message"
                    )
                })
        };
        let payload = match message.opcode {
            1 => Payload::Text(message.data.clone()),
            2 => Payload::Binary(base64(2)?),
            0 => {
                // A continuation frame: the rest of the message before it in the same direction,
                // written as that message is (text as it is, bytes in base64).
                let Some(previous) = frames.iter_mut().rev().find(|frame| frame.sent == sent) else {
                    return Err(format!(
                        "{place}, field `{field}.opcode`: a continuation (opcode 0) without a message before it: \
                         remove that message"
                    ));
                };
                match &mut previous.payload {
                    Payload::Binary(bytes) => bytes.extend_from_slice(&base64(0)?),
                    Payload::Text(text) => text.push_str(&message.data),
                }
                continue;
            }
            8..=10 => {
                controls += 1;
                continue;
            }
            other => {
                return Err(format!(
                    "{place}, field `{field}.opcode`: {other} is not a data opcode (1 text, 2 binary): fix or \
                     remove that message"
                ))
            }
        };
        frames.push(Frame {
            time: message.time,
            sent,
            payload,
        });
    }
    if controls > 0 {
        warnings.push(format!(
            "{place}: {controls} control frame(s) (close, ping, pong) were left out; the scenario closes each \
             connection at its end"
        ));
    }
    // DevTools lists messages as they happened; a tool that did not is put in order.
    frames.sort_by(|left, right| left.time.total_cmp(&right.time));
    Ok(frames)
}
