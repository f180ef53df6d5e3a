//! A lenient model of the HAR files browsers write, with errors that name the entry and field.
//!
//! The `har` crate's model drops the fields a WebSocket import needs (Chrome's and Playwright's
//! `_resourceType` and `_webSocketMessages`), so this is our own: only the fields the import
//! reads, unknown fields ignored, optional ones defaulted. Chrome and Edge (DevTools' "Export
//! HAR", `front_end/models/har/Log.ts`) and Playwright (`recordHar`) store each WebSocket's
//! messages in its entry as `_webSocketMessages: [{type, time, opcode, data}]`: `type` is
//! `send`, `receive` or `error`, `time` seconds since the Unix epoch, `opcode` 1 (text, `data`
//! as it is) or 2 (binary, `data` in base64). Firefox exports the handshake alone.

use serde::Deserialize;

/// The largest HAR file read. A recording with response bodies can be large; the import keeps
/// only the WebSocket messages, but the file is read whole.
pub const MAX_HAR_BYTES: u64 = 256 << 20;

#[derive(Debug, Deserialize)]
pub struct HarFile {
    pub log: Log,
}

#[derive(Debug, Deserialize)]
pub struct Log {
    #[serde(default)]
    pub creator: Option<Creator>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Creator {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Entry {
    /// When the request started (RFC 3339; Chrome writes UTC, Firefox its local offset).
    #[serde(rename = "startedDateTime", default)]
    pub started: Option<String>,
    /// The whole request's duration in milliseconds.
    #[serde(default)]
    pub time: Option<f64>,
    pub request: Request,
    #[serde(default)]
    pub response: Option<Response>,
    /// Chrome's and Playwright's resource type: `websocket`, `fetch`, `xhr`, `document`, ...
    #[serde(rename = "_resourceType", default)]
    pub resource_type: Option<String>,
    #[serde(rename = "_webSocketMessages", default)]
    pub messages: Option<Vec<Message>>,
}

#[derive(Debug, Deserialize)]
pub struct Request {
    #[serde(default)]
    pub method: Option<String>,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(rename = "postData", default)]
    pub post_data: Option<PostData>,
}

#[derive(Debug, Deserialize)]
pub struct Header {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PostData {
    #[serde(rename = "mimeType", default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub params: Vec<Param>,
}

#[derive(Debug, Deserialize)]
pub struct Param {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Response {
    #[serde(default)]
    pub status: Option<i64>,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub content: Option<Content>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Content {
    #[serde(rename = "mimeType", default)]
    pub mime_type: Option<String>,
    /// The body, when the export kept it ("Export HAR (with sensitive data)", `content: 'embed'`).
    #[serde(default)]
    pub text: Option<String>,
    /// `base64` when `text` holds the body's bytes in base64.
    #[serde(default)]
    pub encoding: Option<String>,
}

/// One WebSocket message as DevTools records it.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `send`, `receive` or `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// 1 text, 2 binary; -1 for an error.
    pub opcode: i64,
    /// The text, the base64 of a binary message, or the error's description.
    #[serde(default)]
    pub data: String,
}

impl Entry {
    /// The value of the first request header named `name` (any case).
    pub fn request_header(&self, name: &str) -> Option<&str> {
        header(&self.request.headers, name)
    }

    /// The response's body as JSON, when the file kept it and it is JSON.
    pub fn response_json(&self) -> Option<serde_json::Value> {
        use base64::Engine as _;
        let content = self.response.as_ref()?.content.as_ref()?;
        let text = content.text.as_deref()?;
        if content.encoding.as_deref() == Some("base64") {
            let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
            serde_json::from_slice(&bytes).ok()
        } else {
            serde_json::from_str(text).ok()
        }
    }

    /// The response's status, 0 when the file has none.
    pub fn status(&self) -> i64 {
        self.response.as_ref().and_then(|response| response.status).unwrap_or(0)
    }

    /// Whether this entry is a WebSocket: Chrome's resource type, a `ws(s)://` URL, or an
    /// upgrade request answered with 101 (how Firefox records one).
    pub fn is_websocket(&self) -> bool {
        let url = self.request.url.to_ascii_lowercase();
        self.resource_type
            .as_deref()
            .is_some_and(|kind| kind.eq_ignore_ascii_case("websocket"))
            || url.starts_with("ws://")
            || url.starts_with("wss://")
            || (self.status() == 101
                && self
                    .request_header("upgrade")
                    .is_some_and(|upgrade| upgrade.eq_ignore_ascii_case("websocket")))
    }

    /// The WebSocket URL: `http(s)://` as Firefox writes it becomes `ws(s)://`.
    pub fn websocket_url(&self) -> String {
        let url = &self.request.url;
        if let Some(rest) = url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            url.clone()
        }
    }
}

/// The value of the first header named `name` (any case).
pub fn header<'h>(headers: &'h [Header], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case(name))
        .map(|header| header.value.as_deref().unwrap_or(""))
}

/// The message for a file of `bytes` bytes, above the limit.
pub fn too_large(shown: &str, bytes: u64) -> String {
    format!(
        "`{shown}` is {} MiB; wsfleet import reads HAR files of at most {} MiB: record a shorter session, or \
         export only the requests you need (DevTools' Network panel: filter on `WS` or on the page's own \
         requests, then \"Export HAR\")",
        bytes >> 20,
        MAX_HAR_BYTES >> 20
    )
}

/// Parses the bytes of a HAR file named `shown` in messages.
pub fn parse(bytes: &[u8], shown: &str) -> Result<HarFile, String> {
    // Browsers write UTF-8, sometimes with a byte-order mark (Fiddler, some Windows tools).
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    // serde would read a list as the fields of a struct in order; a HAR file is an object.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(format!(
            "`{shown}` holds a JSON list; a HAR file holds `{{\"log\": {{\"entries\": [...]}}}}` as a browser \
             exports it (DevTools' Network panel: \"Export HAR\")"
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let har = serde_path_to_error::deserialize::<_, HarFile>(&mut deserializer)
        .map_err(|error| describe(&error.path().to_string(), error.into_inner(), bytes, shown))?;
    deserializer.end().map_err(|error| describe("", error, bytes, shown))?;
    Ok(har)
}

/// A parse error as a user reads it: where, what, and what to do.
fn describe(path: &str, inner: serde_json::Error, bytes: &[u8], shown: &str) -> String {
    let place = format!("line {}, column {}", inner.line(), inner.column());
    match inner.classify() {
        serde_json::error::Category::Eof => {
            return format!(
                "`{shown}` ends early ({place}): the file is cut short; export the HAR again and let the \
                 export finish"
            )
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
            return format!(
                "`{shown}` is not valid JSON ({place}): {}; a HAR file is the JSON a browser exports \
                 (DevTools' Network panel: \"Export HAR\")",
                message_without_place(&inner)
            )
        }
        serde_json::error::Category::Data => {}
    }
    let message = message_without_place(&inner);
    // `log.entries[3]._webSocketMessages[2].time` → entry 3 and the field inside it.
    if let Some(rest) = path.strip_prefix("log.entries[") {
        if let Some((index, field)) = rest.split_once(']') {
            let field = field.trim_start_matches('.');
            let url = index
                .parse::<usize>()
                .ok()
                .and_then(|index| entry_url(bytes, index))
                .map(|url| format!(" ({url})"))
                .unwrap_or_default();
            let field = if field.is_empty() {
                String::new()
            } else {
                format!(", field `{field}`")
            };
            return format!(
                "`{shown}`: entry {index}{url}{field}: {message} ({place}); this is not how browsers write \
                 HAR files: export it again from the browser, or fix or remove that entry"
            );
        }
    }
    let field = if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(", field `{path}`")
    };
    format!(
        "`{shown}`{field}: {message} ({place}); a HAR file holds `{{\"log\": {{\"entries\": [...]}}}}` as a \
         browser exports it (DevTools' Network panel: \"Export HAR\")"
    )
}

/// serde_json's message without its trailing "at line L column C".
fn message_without_place(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// The URL of entry `index`, read leniently, for an error message about that entry.
fn entry_url(bytes: &[u8], index: usize) -> Option<String> {
    // Only for files small enough to read twice without a second large allocation.
    if bytes.len() > 64 << 20 {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let url = value.pointer(&format!("/log/entries/{index}/request/url"))?.as_str()?;
    Some(url.chars().take(200).collect())
}

/// Seconds since the Unix epoch of an RFC 3339 time, as `startedDateTime` holds it.
pub fn epoch_seconds(text: &str) -> Option<f64> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(time.unix_timestamp_nanos() as f64 / 1e9)
}
