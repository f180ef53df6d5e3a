//! The STOMP 1.2 frame codec: a command line, header lines (`name:value`, values escaped with
//! `\\`, `\n`, `\r`, `\c` except in CONNECT/CONNECTED frames), a blank line, a body, and a NUL.
//! A body with a `content-length` header is read by length and may hold NULs; without one it
//! ends at the first NUL. End of lines may be `\n` or `\r\n`. A lone end of line between frames
//! is a heart-beat.
//!
//! Over WebSocket a frame may span several messages and one message may carry several frames
//! (and RabbitMQ ends each frame with `\0\n`), so [`Decoder`] accumulates bytes and yields whole
//! items as they complete. Pure functions and a buffer: no I/O, no clock.
//!
//! Written here rather than taken from a crate: the STOMP crates either dial their own TCP or
//! parse only a complete frame at a time, with no way to tell "incomplete" from "malformed",
//! which a decoder fed WebSocket messages needs.

use bytes::{Buf, Bytes, BytesMut};

/// The largest frame (command, headers and body) the decoder buffers; past this, a frame that
/// has not ended is a violation, so a server cannot make the client buffer without bound.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Header lines one frame may carry.
pub const MAX_HEADERS: usize = 1024;

/// Why bytes are not a STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FrameError(pub String);

fn error(message: impl Into<String>) -> FrameError {
    FrameError(message.into())
}

/// One STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub command: String,
    /// Header names and values, unescaped, in order; repeated names are kept (the first one
    /// counts, as STOMP 1.2 says).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: &str) -> Frame {
        Frame {
            command: command.to_owned(),
            ..Frame::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Frame {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether header values are escaped in this frame (all but CONNECT and CONNECTED).
    fn escaped(command: &str) -> bool {
        !matches!(command, "CONNECT" | "CONNECTED")
    }

    /// The frame's bytes: headers escaped, a `content-length` added when the frame has a body
    /// and none is given (so a body may hold NULs), then the NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.command.len() + 64 + self.body.len());
        out.extend_from_slice(self.command.as_bytes());
        out.push(b'\n');
        let escaped = Frame::escaped(&self.command);
        for (name, value) in &self.headers {
            if escaped {
                escape_into(name, &mut out);
                out.push(b':');
                escape_into(value, &mut out);
            } else {
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                out.extend_from_slice(value.as_bytes());
            }
            out.push(b'\n');
        }
        if !self.body.is_empty() && self.get("content-length").is_none() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
        out
    }
}

/// Escapes a header name or value (STOMP 1.2: `\\`, `\n`, `\r`, `:` as `\c`).
fn escape_into(text: &str, out: &mut Vec<u8>) {
    for byte in text.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b':' => out.extend_from_slice(b"\\c"),
            other => out.push(other),
        }
    }
}

/// Unescapes a header name or value; an unknown escape is a violation (STOMP 1.2).
fn unescape(raw: &[u8], escaped: bool) -> Result<String, FrameError> {
    let text = std::str::from_utf8(raw).map_err(|_| error("a header that is not UTF-8"))?;
    if !escaped || !text.contains('\\') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('c') => out.push(':'),
            Some(other) => return Err(error(format!("an undefined escape `\\{other}` in a header"))),
            None => return Err(error("a header that ends with `\\`")),
        }
    }
    Ok(out)
}

/// What the decoder read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An end of line between frames.
    Heartbeat,
    Frame(Frame),
}

/// Accumulates the bytes of WebSocket messages and yields frames and heart-beats whole.
#[derive(Default)]
pub struct Decoder {
    buffer: BytesMut,
    /// The buffer's length when a frame was last found unended: every frame ends with a NUL,
    /// so it cannot end before a NUL comes past there (this keeps a frame that arrives in many
    /// small messages from being parsed again from its start on each one).
    unended: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds the bytes of one message.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes of a frame begun and not yet ended.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole item, `None` when the buffer holds none yet; a malformed frame is an
    /// error (the buffer is then left as it was: the connection is not to be read further).
    pub fn next_item(&mut self) -> Result<Option<Item>, FrameError> {
        match self.buffer.first() {
            None => return Ok(None),
            Some(b'\n') => {
                self.buffer.advance(1);
                return Ok(Some(Item::Heartbeat));
            }
            Some(b'\r') => {
                return match self.buffer.get(1) {
                    None => Ok(None),
                    Some(b'\n') => {
                        self.buffer.advance(2);
                        Ok(Some(Item::Heartbeat))
                    }
                    Some(_) => Err(error("a carriage return not followed by a line feed")),
                };
            }
            Some(_) => {}
        }
        let fresh = self.buffer.get(self.unended..).unwrap_or_default();
        if self.unended > 0 && !fresh.contains(&0) {
            return self.unended_frame();
        }
        match parse(&self.buffer)? {
            Some((frame, used)) => {
                self.buffer.advance(used);
                self.unended = 0;
                Ok(Some(Item::Frame(frame)))
            }
            None => self.unended_frame(),
        }
    }

    fn unended_frame(&mut self) -> Result<Option<Item>, FrameError> {
        self.unended = self.buffer.len();
        if self.buffer.len() > MAX_FRAME {
            return Err(error(format!("a frame longer than {MAX_FRAME} bytes has not ended")));
        }
        Ok(None)
    }
}

/// Finds the next line in `bytes` from `start`: its end (before `\r\n` or `\n`) and where the
/// following line begins; `None` when no line feed came yet.
fn line(bytes: &[u8], start: usize) -> Option<(usize, usize)> {
    let feed = start + bytes[start..].iter().position(|&byte| byte == b'\n')?;
    let end = if feed > start && bytes[feed - 1] == b'\r' {
        feed - 1
    } else {
        feed
    };
    Some((end, feed + 1))
}

/// Parses one frame at the start of `bytes`: the frame and the bytes it used, or `None` when it
/// has not ended yet.
fn parse(bytes: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some((end, mut next)) = line(bytes, 0) else {
        return Ok(None);
    };
    let command = std::str::from_utf8(&bytes[..end]).map_err(|_| error("a command that is not UTF-8"))?;
    if command.is_empty() || !command.bytes().all(|byte| byte.is_ascii_uppercase()) {
        return Err(error(format!("`{}` is not a STOMP command", command.escape_debug())));
    }
    let escaped = Frame::escaped(command);
    let mut headers = Vec::new();
    loop {
        let Some((end, after)) = line(bytes, next) else {
            return Ok(None);
        };
        let raw = &bytes[next..end];
        next = after;
        if raw.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(error(format!("a frame with more than {MAX_HEADERS} headers")));
        }
        let colon = raw
            .iter()
            .position(|&byte| byte == b':')
            .ok_or_else(|| error(format!("a header line without `:` in a {command} frame")))?;
        headers.push((unescape(&raw[..colon], escaped)?, unescape(&raw[colon + 1..], escaped)?));
    }
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| {
            value
                .trim()
                .parse::<usize>()
                .map_err(|_| error(format!("content-length `{value}` is not a length")))
        })
        .transpose()?;
    let (body_end, used) = match length {
        Some(length) => {
            if length > MAX_FRAME {
                return Err(error(format!("a body of {length} bytes, more than {MAX_FRAME}")));
            }
            let body_end = next + length;
            match bytes.get(body_end) {
                None => return Ok(None),
                Some(0) => (body_end, body_end + 1),
                Some(_) => return Err(error("a body longer than its content-length")),
            }
        }
        None => match bytes[next..].iter().position(|&byte| byte == 0) {
            Some(nul) => (next + nul, next + nul + 1),
            None => return Ok(None),
        },
    };
    let frame = Frame {
        command: command.to_owned(),
        headers,
        body: Bytes::copy_from_slice(&bytes[next..body_end]),
    };
    Ok(Some((frame, used)))
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
