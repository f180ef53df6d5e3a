//! permessage-deflate (RFC 7692) on the echo endpoint: the server's side of the negotiation,
//! with parameters a connection's query sets, and the echo loop over yawc's frames (tungstenite,
//! which serves every other connection, refuses compressed frames).
//!
//! Query parameters (all optional; see docs/testserver.md):
//! `deflate=off` declines every offer; `deflate_server_max_window_bits=N` and
//! `deflate_client_max_window_bits=N` (9-15) lower the windows; `deflate_server_no_context_takeover=1`
//! and `deflate_client_no_context_takeover=1` impose them; `corrupt_deflate=1` sends one
//! compressed frame that does not inflate after echoing the first message.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use yawc::close::CloseCode;
use yawc::{CompressionLevel, Frame, OpCode, Options, Role, WebSocket};

use crate::session::Session;
use crate::stats::Tally;
use crate::transport::Transport;

/// A text frame with RSV1 set whose payload is a deflate block of the reserved type 3: it
/// cannot inflate, so an RFC 7692 client must fail the connection.
const CORRUPT_FRAME: [u8; 6] = [0b1100_0001, 0x04, 0xff, 0xff, 0xff, 0xff];

/// How long the server waits for the client's close frame after sending its own.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The server's permessage-deflate settings for one connection, from its query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeflateModes {
    /// `deflate=off`: answer no extension.
    pub(crate) decline: bool,
    pub(crate) server_max_window_bits: Option<u8>,
    pub(crate) client_max_window_bits: Option<u8>,
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    /// `corrupt_deflate=1`: one frame that does not inflate after the first message.
    pub(crate) corrupt: bool,
}

impl DeflateModes {
    /// Applies one query parameter; `Ok(false)` when it is not a deflate parameter.
    pub(crate) fn apply(&mut self, name: &str, value: &str) -> Result<bool, String> {
        let flag = |value: &str| match value {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(format!("{name}={value:?} must be 1, 0, true or false")),
        };
        let bits = |value: &str| match value.parse::<u8>() {
            Ok(bits) if (9..=15).contains(&bits) => Ok(bits),
            _ => Err(format!("{name}={value:?} must be a window size from 9 to 15")),
        };
        match name {
            "deflate" => match value {
                "off" => self.decline = true,
                "on" => self.decline = false,
                _ => return Err(format!("deflate={value:?} must be on or off")),
            },
            "deflate_server_max_window_bits" => self.server_max_window_bits = Some(bits(value)?),
            "deflate_client_max_window_bits" => self.client_max_window_bits = Some(bits(value)?),
            "deflate_server_no_context_takeover" => self.server_no_context_takeover = flag(value)?,
            "deflate_client_no_context_takeover" => self.client_no_context_takeover = flag(value)?,
            "corrupt_deflate" => self.corrupt = flag(value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether the deflate loop plays every mode of `modes` (delay, reply_count, close_after,
    /// close_code, close_reason, corrupt_deflate); the others are tungstenite's alone.
    pub(crate) fn plays(modes: &crate::modes::Modes) -> bool {
        modes.close_on_open.is_none()
            && modes.drop_after.is_none()
            && modes.send_on_open.is_none()
            && modes.oversize.is_none()
            && !modes.malformed
            && modes.overload.is_none()
    }

    /// The answer to the client's offers (`Sec-WebSocket-Extensions` values, in order): the
    /// first permessage-deflate offer these settings can meet, or `None`.
    pub(crate) fn negotiate(&self, offers: &[String]) -> Option<String> {
        if self.decline {
            return None;
        }
        offers
            .iter()
            .flat_map(|value| value.split(','))
            .find_map(|offer| self.answer(offer))
    }

    fn answer(&self, offer: &str) -> Option<String> {
        let mut parts = offer.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
            return None;
        }
        let mut server_no_context_takeover = self.server_no_context_takeover;
        let mut client_no_context_takeover = self.client_no_context_takeover;
        let mut server_bits = self.server_max_window_bits;
        let mut client_bits = None;
        let mut client_bits_offered = false;
        for part in parts {
            let (key, value) = match part.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim().trim_matches('"'))),
                None => (part, None),
            };
            match (key.to_ascii_lowercase().as_str(), value) {
                ("server_no_context_takeover", None) => server_no_context_takeover = true,
                ("client_no_context_takeover", None) => client_no_context_takeover = true,
                ("server_max_window_bits", Some(value)) => {
                    let offered: u8 = value.parse().ok().filter(|bits| (8..=15).contains(bits))?;
                    // zlib compresses with at least 9 bits: an offer of 8 is declined.
                    if offered < 9 {
                        return None;
                    }
                    server_bits = Some(server_bits.map_or(offered, |bits| bits.min(offered)));
                }
                ("client_max_window_bits", None) => client_bits_offered = true,
                ("client_max_window_bits", Some(value)) => {
                    client_bits_offered = true;
                    client_bits = Some(value.parse::<u8>().ok().filter(|bits| (8..=15).contains(bits))?);
                }
                // An unknown parameter or a bad form makes the offer unusable (RFC 7692 5).
                _ => return None,
            }
        }
        let client_bits = match (self.client_max_window_bits, client_bits) {
            (Some(wanted), _) if !client_bits_offered => {
                // The server cannot limit the client's window without the client's leave.
                let _ = wanted;
                return None;
            }
            (Some(wanted), Some(offered)) => Some(wanted.min(offered)),
            (Some(wanted), None) => Some(wanted),
            (None, offered) => offered,
        };
        let mut answer = String::from("permessage-deflate");
        if server_no_context_takeover {
            answer.push_str("; server_no_context_takeover");
        }
        if client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = server_bits {
            answer.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = client_bits {
            answer.push_str(&format!("; client_max_window_bits={bits}"));
        }
        Some(answer)
    }
}

/// The stream under yawc: the bytes read with the request head come first, and raw bytes
/// queued in `inject` go out at the next flush (for `corrupt_deflate`).
pub(crate) struct DeflateIo<S> {
    inner: S,
    early: Bytes,
    inject: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for DeflateIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let count = self.early.len().min(buf.remaining());
            let early = self.early.split_to(count);
            buf.put_slice(&early);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeflateIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let mut inject = this.inject.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while !inject.is_empty() {
            match Pin::new(&mut this.inner).poll_write(cx, &inject) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => {
                    inject.drain(..written);
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        drop(inject);
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Echoes messages on a connection that agreed to `agreed`, counting them in the server's
/// stats, until the client closes, the connection fails, `close_after` is reached, or `cancel`
/// fires (1001). Pings are answered by yawc.
pub(crate) async fn serve<S: Transport>(
    stream: S,
    early: Vec<u8>,
    agreed: &str,
    session: &Session,
    cancel: &CancellationToken,
) {
    let inject = Arc::new(Mutex::new(Vec::new()));
    let io = DeflateIo {
        inner: stream,
        early: Bytes::from(early),
        inject: inject.clone(),
    };
    let options = Options::default()
        .with_compression_level(CompressionLevel::default())
        .with_limits(16 * 1024 * 1024, 16 * 1024 * 1024)
        .with_utf8();
    let Ok(mut websocket) = WebSocket::from_stream_with_extensions(io, Role::Server, Some(agreed), options) else {
        return;
    };
    let modes = &session.modes;
    let mut received = 0u64;
    let mut tally = Tally::new(&session.counters);
    loop {
        let frame = tokio::select! {
            frame = websocket.next_frame() => frame,
            () = cancel.cancelled() => {
                close(&mut websocket, CloseCode::Away, "server shutting down").await;
                return;
            }
        };
        let Ok(frame) = frame else {
            // The end of the stream, a protocol error (yawc has queued its close) or I/O.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, websocket.next_frame()).await;
            return;
        };
        match frame.opcode() {
            OpCode::Text | OpCode::Binary => {
                received += 1;
                tally.received(frame.payload().len());
                if let Some(delay) = modes.delay {
                    tokio::time::sleep(delay).await;
                }
                for _ in 0..modes.reply_count {
                    let reply = match frame.opcode() {
                        OpCode::Text => Frame::text(frame.payload().clone()),
                        _ => Frame::binary(frame.payload().clone()),
                    };
                    if websocket.feed(reply).await.is_err() {
                        return;
                    }
                    tally.sent(frame.payload().len());
                }
                if websocket.flush().await.is_err() {
                    return;
                }
                tally.commit();
                if modes.deflate.corrupt && received == 1 {
                    inject
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .extend_from_slice(&CORRUPT_FRAME);
                    if websocket.flush().await.is_err() {
                        return;
                    }
                }
                if modes.close_after.is_some_and(|after| received >= after) {
                    close(&mut websocket, CloseCode::from(modes.close_code), &modes.close_reason).await;
                    return;
                }
            }
            OpCode::Close => {
                // yawc queued the echo of the close; the next read writes it out and ends.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, websocket.next_frame()).await;
                return;
            }
            _ => {}
        }
    }
}

/// Sends a close frame and waits (bounded) for the client's.
async fn close<S: Transport>(websocket: &mut WebSocket<DeflateIo<S>>, code: CloseCode, reason: &str) {
    if websocket.send(Frame::close(code, reason)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Ok(frame) = websocket.next_frame().await {
            if frame.opcode() == OpCode::Close {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    #[test]
    fn answers_the_first_offer_it_can_meet() {
        let defaults = DeflateModes::default();
        assert_eq!(
            defaults
                .negotiate(&offers(&["permessage-deflate; client_max_window_bits"]))
                .as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            defaults
                .negotiate(&offers(&[
                    "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10; client_no_context_takeover"
                ]))
                .as_deref(),
            Some("permessage-deflate; client_no_context_takeover; server_max_window_bits=10")
        );
        assert_eq!(defaults.negotiate(&offers(&["x-webkit-deflate-frame"])), None);
        assert_eq!(defaults.negotiate(&[]), None);

        let mut strict = DeflateModes::default();
        for (name, value) in [
            ("deflate_server_max_window_bits", "11"),
            ("deflate_client_max_window_bits", "10"),
            ("deflate_server_no_context_takeover", "1"),
        ] {
            assert!(strict.apply(name, value).unwrap());
        }
        // The client's window is limited only when the client offered to be limited.
        assert_eq!(strict.negotiate(&offers(&["permessage-deflate"])), None);
        assert_eq!(
            strict
                .negotiate(&offers(&[
                    "permessage-deflate; client_max_window_bits; server_max_window_bits=12"
                ]))
                .as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11; client_max_window_bits=10"
            )
        );
        let mut off = DeflateModes::default();
        off.apply("deflate", "off").unwrap();
        assert_eq!(off.negotiate(&offers(&["permessage-deflate"])), None);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let mut modes = DeflateModes::default();
        assert!(modes
            .apply("deflate_server_max_window_bits", "8")
            .unwrap_err()
            .contains("from 9 to 15"));
        assert!(modes
            .apply("corrupt_deflate", "yes")
            .unwrap_err()
            .contains("corrupt_deflate"));
        assert!(modes.apply("deflate", "maybe").unwrap_err().contains("on or off"));
        assert!(!modes.apply("user", "alice").unwrap());
    }
}
