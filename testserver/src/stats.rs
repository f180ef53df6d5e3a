//! Server-wide counters: live atomics shared by every connection task, and the
//! [`Stats`] snapshot that tests and the `/stats` endpoint read.
//!
//! Atomics with `Relaxed` ordering are enough: each counter is independent, and a
//! snapshot only needs every increment that happened before the client that asks
//! observed its effect (a client sees an echo only after the server counted it).
//!
//! A connection counts its messages in a [`Tally`] of its own and adds it to the
//! shared atomics once per batch of replies, before the batch is flushed: four
//! atomic additions per batch instead of per message, and connections served on
//! different cores do not take turns on the same cache line for every message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A point-in-time copy of the server's counters.
///
/// Connection counters cover WebSocket connections only (a successful `101`
/// handshake); plain HTTP requests such as `/stats` are not connections.
/// Message counters cover data messages (text and binary), never control frames,
/// and payload bytes are message payloads, not wire bytes.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Stats {
    /// WebSocket connections open right now: incremented just before the `101`
    /// response is written, decremented on every way a connection ends.
    pub open_connections: u64,
    /// WebSocket connections ever accepted with a `101` response.
    pub total_connections: u64,
    /// Requests answered with anything but `101`, except the plain HTTP
    /// endpoints `/stats` and `/healthz`: invalid handshakes, scripted
    /// `handshake_status`, invalid query parameters, oversized request heads.
    pub refused_handshakes: u64,
    /// Text and binary messages received from clients.
    pub messages_received: u64,
    /// Text and binary messages handed to the socket (echoes, broadcasts, json
    /// replies, `send_on_open`, `oversize`), counted before the flush so a client
    /// that sees a message always sees it counted.
    pub messages_sent: u64,
    /// Payload bytes of the messages in `messages_received`.
    pub payload_bytes_received: u64,
    /// Payload bytes of the messages in `messages_sent`.
    pub payload_bytes_sent: u64,
    /// TCP (or TLS) connections that carried requests to the HTTP endpoints (`/login`,
    /// `/http/echo`); a kept-alive connection counts once for all its requests.
    #[serde(default)]
    pub http_connections: u64,
    /// Requests to the HTTP endpoints, whatever the answer.
    #[serde(default)]
    pub http_requests: u64,
    /// `POST /login` requests answered with a token.
    #[serde(default)]
    pub logins: u64,
    /// `POST /login` requests refused (`400`, `401`).
    #[serde(default)]
    pub logins_refused: u64,
}

/// The live counters behind [`Stats`], one instance per server behind an `Arc`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    open_connections: AtomicU64,
    total_connections: AtomicU64,
    refused_handshakes: AtomicU64,
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    payload_bytes_received: AtomicU64,
    payload_bytes_sent: AtomicU64,
    http_connections: AtomicU64,
    http_requests: AtomicU64,
    logins: AtomicU64,
    logins_refused: AtomicU64,
    /// Broadcast messages a lagging client missed; not part of [`Stats`] because
    /// that shape is shared with other crates.
    broadcast_messages_dropped: AtomicU64,
    /// Messages a second over the connections that set `capacity_rate`.
    pub(crate) rate_meter: crate::overload::RateMeter,
}

impl Counters {
    /// Reads every counter once.
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            open_connections: self.open_connections.load(Ordering::Relaxed),
            total_connections: self.total_connections.load(Ordering::Relaxed),
            refused_handshakes: self.refused_handshakes.load(Ordering::Relaxed),
            messages_received: self.messages_received.load(Ordering::Relaxed),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            payload_bytes_received: self.payload_bytes_received.load(Ordering::Relaxed),
            payload_bytes_sent: self.payload_bytes_sent.load(Ordering::Relaxed),
            http_connections: self.http_connections.load(Ordering::Relaxed),
            http_requests: self.http_requests.load(Ordering::Relaxed),
            logins: self.logins.load(Ordering::Relaxed),
            logins_refused: self.logins_refused.load(Ordering::Relaxed),
        }
    }

    /// Connections open now.
    pub(crate) fn open_now(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Counts a new WebSocket connection and returns the guard that keeps it
    /// counted as open until it is dropped.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            counters: Arc::clone(self),
        }
    }

    pub(crate) fn http_connection(&self) {
        self.http_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counted when a request's head is read, before it is answered: a client that sees a
    /// response finds its request counted.
    pub(crate) fn http_request(&self) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn logged_in(&self) {
        self.logins.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn login_refused(&self) {
        self.logins_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_refused(&self) {
        self.refused_handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message_received(&self, payload_len: usize) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.payload_bytes_received
            .fetch_add(payload_len as u64, Ordering::Relaxed);
    }

    fn add_messages(&self, tally: &Tally<'_>) {
        if tally.messages_received != 0 {
            self.messages_received
                .fetch_add(tally.messages_received, Ordering::Relaxed);
            self.payload_bytes_received
                .fetch_add(tally.payload_bytes_received, Ordering::Relaxed);
        }
        if tally.messages_sent != 0 {
            self.messages_sent.fetch_add(tally.messages_sent, Ordering::Relaxed);
            self.payload_bytes_sent
                .fetch_add(tally.payload_bytes_sent, Ordering::Relaxed);
        }
    }

    pub(crate) fn broadcast_dropped(&self, messages: u64) -> u64 {
        self.broadcast_messages_dropped.fetch_add(messages, Ordering::Relaxed) + messages
    }

    pub(crate) fn broadcast_messages_dropped(&self) -> u64 {
        self.broadcast_messages_dropped.load(Ordering::Relaxed)
    }
}

/// One connection's message counts not yet added to the shared [`Counters`].
///
/// [`commit`](Self::commit) adds them; the session commits before every flush,
/// so a client that has seen a message finds it counted, and dropping the tally
/// commits too, so a connection cut short (shutdown, error) loses no count.
#[derive(Debug)]
pub(crate) struct Tally<'a> {
    counters: &'a Counters,
    messages_received: u64,
    payload_bytes_received: u64,
    messages_sent: u64,
    payload_bytes_sent: u64,
}

impl<'a> Tally<'a> {
    pub(crate) fn new(counters: &'a Counters) -> Self {
        Self {
            counters,
            messages_received: 0,
            payload_bytes_received: 0,
            messages_sent: 0,
            payload_bytes_sent: 0,
        }
    }

    pub(crate) fn received(&mut self, payload_len: usize) {
        self.messages_received += 1;
        self.payload_bytes_received += payload_len as u64;
    }

    pub(crate) fn sent(&mut self, payload_len: usize) {
        self.messages_sent += 1;
        self.payload_bytes_sent += payload_len as u64;
    }

    /// Adds the counts to the shared counters and starts again from zero.
    pub(crate) fn commit(&mut self) {
        self.counters.add_messages(self);
        self.messages_received = 0;
        self.payload_bytes_received = 0;
        self.messages_sent = 0;
        self.payload_bytes_sent = 0;
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.commit();
    }
}

/// Keeps one connection counted in `open_connections`.
///
/// The decrement lives in `Drop` so that every exit path counts: a normal close,
/// an IO error, a scripted drop, the shutdown hard stop dropping the task's
/// future, and even a panic unwinding through the task.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    counters: Arc<Counters>,
}

impl OpenConnection {
    /// Takes back the whole connection when its `101` response could not be
    /// written: the client never saw it open, so it never counted.
    pub(crate) fn never_opened(self) {
        self.counters.total_connections.fetch_sub(1, Ordering::Relaxed);
        // Dropping `self` decrements `open_connections`.
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.counters.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_connection_guard_counts_every_exit() {
        let counters = Arc::new(Counters::default());
        let first = counters.connection_opened();
        let second = counters.connection_opened();
        assert_eq!(counters.snapshot().open_connections, 2);
        drop(first);
        second.never_opened();
        let stats = counters.snapshot();
        assert_eq!(stats.open_connections, 0);
        assert_eq!(stats.total_connections, 1);
    }

    #[test]
    fn message_counters_add_payload_lengths() {
        let counters = Counters::default();
        counters.message_received(3);
        counters.message_received(4);
        let mut tally = Tally::new(&counters);
        tally.sent(10);
        assert_eq!(counters.snapshot().messages_sent, 0, "a tally waits for its commit");
        tally.commit();
        let stats = counters.snapshot();
        assert_eq!(stats.messages_received, 2);
        assert_eq!(stats.payload_bytes_received, 7);
        assert_eq!(stats.messages_sent, 1);
        assert_eq!(stats.payload_bytes_sent, 10);
    }

    #[test]
    fn a_tally_commits_once_per_batch_and_on_drop() {
        let counters = Counters::default();
        let mut tally = Tally::new(&counters);
        tally.received(5);
        tally.received(6);
        tally.sent(5);
        tally.commit();
        tally.commit();
        tally.sent(6);
        drop(tally);
        let stats = counters.snapshot();
        assert_eq!((stats.messages_received, stats.payload_bytes_received), (2, 11));
        assert_eq!((stats.messages_sent, stats.payload_bytes_sent), (2, 11));
    }
}
