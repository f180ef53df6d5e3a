//! A virtual user: plays the scenario's steps on its connections, iteration after iteration,
//! applies the scenario's handlers to what arrives, and records every event where it happens
//! into its worker's recorder.
//!
//! A data message is counted (`messages_received`, payload bytes) in the set of the step or
//! handler that takes it. Messages that arrive while a VU waits for something else (a pong, a
//! matching message, a close) wait in the connection's queue for a later receive; their latency
//! is measured from when they arrived. Messages never taken are counted in the connection set as
//! `messages_unread` when their connection ends.
//!
//! The parts, one idea each:
//! - `env`: what every VU of a run on one worker shares (`RunEnv`), built once per run.
//! - `iteration`: the iteration and pacing loop, the step dispatch and `repeat`.
//! - `state`: the VU itself, what it holds while it plays.
//! - `outcome`: how a step ends (`Stop`, `Failure`); `policy`: what the scenario's
//!   `on_error` and `on_close` rules make of it.
//! - `conn`: one open connection's state (its queue, its send times) and what outlives it.
//! - `timer`: the receive timeout's timer, kept from one receive to the next.
//! - `connect`, `receive`, `outgoing` (send), `ping`, `closing` (close), `flow`
//!   (think, rendezvous, check, extract): the step bodies, one family per file.
//! - `scripted`: `script`, `if` and `while` steps, and the scripts of `on_message` rules.
//! - `paused`: the operator's pause, taken between steps.
//! - `inbox`: what arrives: the pending queue, the `on_message` handlers and their replies,
//!   and reading every connection while the VU waits.
//! - `protocol`: the protocol layer's glue: handshake, decoded items and their backlog,
//!   acknowledgements, the layers' timers, goodbye; each protocol's steps in its own file
//!   (`socketio`: `emit` and a rule's `ack`).
//!
//! Sends are held, not written: `outgoing` writes a send's frames into its connection's
//! counted stream, which keeps them until a flush (`Flush::Batch`, the default), and remembers
//! the message in `conn`'s `held` list; the VU flushes every connection that holds sends when it
//! is about to wait (`flush_held`: receive, think, pacing, rendezvous, ping, connect, close, the
//! end of the steps). A message is counted as sent, and its send instant taken, when its bytes
//! are in the kernel, so latencies are measured from the flush.
//!
//! The VU reaches its connections through `crate::connection`: a connect step opens one with
//! the run's `Connector` (the network, or in unit tests an in-memory stream the test serves);
//! reads and writes go through the `Socket`, a WebSocket over the `Transport` enum. A connection
//! that speaks a protocol (`crate::protocol`: Socket.IO) runs its handshake after the upgrade and
//! reads every message through its layer (`protocol`: events, acknowledgements, heartbeats the
//! layer answers); a plain connection skips that with one check per message. Files here use each
//! other's items only one way: none imports from this file.

mod closing;
mod conn;
mod connect;
mod env;
mod flow;
mod graphql;
#[cfg(test)]
mod graphql_tests;
mod http;
mod inbox;
mod iteration;
mod mqtt;
mod outcome;
mod outgoing;
mod paused;
mod ping;
mod policy;
mod protocol;
#[cfg(test)]
mod protocol_tests;
mod receive;
#[cfg(test)]
mod script_tests;
mod scripted;
#[cfg(test)]
mod sizes;
mod socketio;
mod state;
mod stomp;
#[cfg(test)]
mod stomp_tests;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod timer;

pub use conn::QUEUED_MESSAGES_PER_CONNECTION;
pub use env::{
    static_messages, step_tls_configs, RunEnv, StaticMessages, UpgradeRequests, HANDSHAKES_IN_FLIGHT_PER_WORKER,
};
pub use iteration::{run_vu, VuControl};
