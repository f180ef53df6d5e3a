//! The `wsfleet.v1` gRPC contract between controller and agents, generated from
//! `proto/wsfleet/v1/fleet.proto`. This crate owns the wire format and nothing else.

#![allow(clippy::all, clippy::unwrap_used)]

/// Generated messages, client and server of package `wsfleet.v1`.
pub mod v1 {
    tonic::include_proto!("wsfleet.v1");
}

/// The protocol revision this build speaks. A controller refuses agents of another revision
/// with a message naming both; additive changes keep the number.
pub const PROTOCOL_VERSION: u32 = 1;

/// The additive revision this build speaks within [`PROTOCOL_VERSION`], sent in the hello and
/// the welcome; the lower of the two applies to a stream. 1: the controller acknowledges
/// metric reports (`ReportAck`) and agents resend unacknowledged ones after reattaching; runs
/// can be reshared (`Reshare`); agents name their process (`Hello.instance`). 2: rendezvous
/// (`RendezvousArrive`, `RendezvousRelease`). 3: the operator steers a running run
/// (`RunControl`). 4: agents join a running run (`Takeover.joined`; the joiner's assignment
/// starts in the past and names an `agent_index` past its `weights`). 5: the exact split gives
/// each VU number and arrival to the agent whose proportionate-fair window closes first
/// (`wsfleet_scenario::plan::OwnerSequence`), no longer by Sainte-Laguë: not additive, see
/// [`MIN_PROTOCOL_REVISION`].
pub const PROTOCOL_REVISION: u32 = 5;

/// The lowest revision either side accepts from the other. Every agent of a run and the
/// controller compute the same owner of each VU number from the weights alone; a peer below
/// this revision computes other owners, so its VUs would overlap or leave gaps.
pub const MIN_PROTOCOL_REVISION: u32 = 5;

/// Largest gRPC message either side accepts (assignments carry scenario files).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
