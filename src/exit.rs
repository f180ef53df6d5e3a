//! Exit codes, documented in docs/cli.md. CI pipelines rely on them: keep them stable.

use std::process::ExitCode;

/// The run happened and passed.
pub const OK: u8 = 0;
/// Something unexpected went wrong inside wsfleet.
pub const INTERNAL: u8 = 1;
/// The command line was wrong (clap's own code).
pub const USAGE: u8 = 2;
/// The scenario or the configuration is invalid.
pub const INVALID_INPUT: u8 = 3;
/// The run could not be done: no agents, not enough capacity, an agent failed.
pub const RUN_NOT_DONE: u8 = 4;
/// A threshold failed.
pub const THRESHOLDS_FAILED: u8 = 5;
/// Every connection attempt failed (the target is unreachable) and the scenario sets no threshold.
pub const NO_CONNECTION: u8 = 6;
/// An agent was lost during the run and the scenario says `load.on_agent_lost: abort`: the run
/// was stopped (what was measured is still reported).
pub const AGENT_LOST: u8 = 7;
/// The run was stopped by Ctrl-C before its end (what was measured is still reported).
pub const INTERRUPTED: u8 = 130;

pub fn code(value: u8) -> ExitCode {
    ExitCode::from(value)
}
