//! HTTP/1.1 for http steps: one [`HttpSession`] per VU holds its cookie jar and its kept-alive
//! connections (one per origin), and makes each request over hyper's client connection.
//!
//! hyper does the protocol (request heads, chunked and sized bodies, `Connection: close`,
//! keep-alive); this module does what a load generator needs around it, as the WebSocket side
//! does in `crate::connection`: DNS, TCP from the chosen source address, the proxy tunnel and
//! TLS, each phase timed, over a stream that counts every byte that crosses the socket
//! ([`stream`]). A VU is one task on a single-threaded runtime and owns its session: no pool
//! shared across tasks, no lock, no `Send` bound, and a connection is never handed to another
//! VU (each VU is one user, as a browser is).

mod client;
mod stream;
#[cfg(test)]
mod tests;

pub use client::{HttpSession, HttpTarget, Response};
