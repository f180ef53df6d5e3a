//! The executor of one scenario part on this agent: it follows the part's plan with this agent's
//! exact share, adds the share of lost agents the controller moves here (takeovers), and winds
//! the part's VUs down at the end.
//!
//! - `context`: what every part of a run shares, and the errors of a share that cannot be split.
//! - `vus`: the part's running VUs (start, count, end, wind down).
//! - `closed`: the closed model, VUs that follow a target; `open`: arrivals at a rate.

mod closed;
mod context;
mod open;
mod pause;
mod vus;

use tokio::sync::mpsc;
use wsfleet_scenario::LoadModel;

pub use context::{PartContext, ShareError, SLOT_STRIDE};
pub use pause::Pause;
use vus::PartVus;

/// Plays one part of the scenario with this agent's share, then winds its VUs down: running
/// iterations finish within the part's graceful stop, then its connections are closed. `done`
/// receives the part's slots of the VUs that ended.
pub async fn drive_part(
    context: &PartContext<'_>,
    part: usize,
    done: mpsc::UnboundedReceiver<usize>,
) -> Result<(), ShareError> {
    let plan = &context.scenario.parts[part].plan;
    let mut vus = PartVus::new(context, part, done);
    let mut takeover_updates = context.takeovers.subscribe();
    // Takeovers that came before the start count too.
    takeover_updates.mark_changed();
    let mut control_updates = context.controls.subscribe();
    match &plan.model {
        LoadModel::Open {
            max_vus,
            max_handshakes,
            ..
        } => {
            open::OpenPart::new(context, part, plan, *max_vus, *max_handshakes)?
                .play(&mut vus, &mut takeover_updates, &mut control_updates)
                .await?
        }
        LoadModel::Closed { iterations_per_vu, .. } => {
            closed::ClosedPart::new(context, part, plan, *iterations_per_vu)?
                .play(&mut vus, &mut takeover_updates, &mut control_updates)
                .await?
        }
    }
    vus.wind_down(plan.graceful_stop).await;
    Ok(())
}

#[cfg(test)]
mod tests;
