//! What every HTTP handler reads: the registry, the live run, the runs and the token. Apart from
//! the router so that the API's handlers and the router that mounts them do not import each
//! other.

use std::sync::Arc;

use crate::live::Live;
use crate::registry::Registry;
use crate::runs::Runs;

/// What HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub registry: Arc<Registry>,
    pub live: Arc<Live>,
    pub runs: Arc<Runs>,
    /// When set, `/api` and the dashboard require `Authorization: Bearer TOKEN` (or `?token=`).
    pub token: Option<Arc<str>>,
}

impl HttpState {
    pub fn new(runs: Arc<Runs>, token: Option<String>) -> HttpState {
        let controller = runs.controller();
        HttpState {
            registry: controller.registry.clone(),
            live: controller.live.clone(),
            runs: runs.clone(),
            token: token.map(Arc::from),
        }
    }
}
