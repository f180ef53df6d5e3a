//! What the accept loop and every connection task share: the server's settings, its counters,
//! its rooms and the session ids it hands out. Its own module so the accept loop
//! ([`server`](crate::server)) and the connections ([`connection`](crate::connection)) both
//! use it without using each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::http::Logins;
use crate::rooms::Rooms;
use crate::stats::Counters;

/// State shared by the accept loop and every connection task.
pub(crate) struct Shared {
    pub(crate) subprotocols: Vec<String>,
    pub(crate) websocket_config: WebSocketConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) tls: Option<TlsAcceptor>,
    /// Tokens and session cookies of `POST /login`, which `/auth/` endpoints require.
    pub(crate) logins: Logins,
    /// The last `X-Session-Id` handed out; ids start at 1.
    last_session_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new(subprotocols: Vec<String>, websocket_config: WebSocketConfig, tls: Option<TlsAcceptor>) -> Self {
        Shared {
            subprotocols,
            websocket_config,
            counters: Arc::default(),
            rooms: Arc::default(),
            tls,
            logins: Logins::default(),
            last_session_id: AtomicU64::new(0),
        }
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.last_session_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}
