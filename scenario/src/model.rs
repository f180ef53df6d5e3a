//! The validated, typed scenario that agents play: its parts, each with its load, steps and
//! handlers, and the limits a scenario lives within. `crate::validate` builds it from the raw
//! form.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::feeds::Feed;
use crate::plan::LoadPlan;
use crate::steps::{CloseRule, ErrorRule, MessageRule, Step};
use crate::template::Template;

/// A scenario ready to play.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// `${target}`, rendered once per run against the run's values (e.g. `testserver.url`).
    pub target: Option<Template>,
    pub testserver: Option<TestServerSpec>,
    pub variables: BTreeMap<String, String>,
    /// Every step's and handler's metric name, indexed by `StepId`, across all parts (a part's
    /// names start with `PART.` when the file has `scenarios`).
    pub step_names: Vec<String>,
    /// Conditions that decide whether the run passed.
    pub thresholds: Vec<crate::thresholds::Threshold>,
    pub feeds: Vec<Feed>,
    /// The scenarios of the run, each with its own load: one for a plain file.
    pub parts: Vec<Part>,
}

impl Scenario {
    /// Calls `visit` on every step of every part, the steps inside repeats too.
    pub fn each_step<'a>(&'a self, visit: &mut dyn FnMut(&'a Step)) {
        for part in &self.parts {
            crate::steps::each_step(&part.steps, visit);
        }
    }

    /// Every rendezvous step of the run, by point.
    pub fn rendezvous_points(&self) -> Vec<crate::steps::Rendezvous> {
        let mut found = Vec::new();
        self.each_step(&mut |step| {
            if let crate::steps::Action::Rendezvous(rendezvous) = &step.action {
                found.push(rendezvous.clone());
            }
        });
        found.sort_by_key(|rendezvous| rendezvous.point);
        found
    }
}

/// One scenario of a run: its load, steps and handlers.
#[derive(Clone, Debug)]
pub struct Part {
    /// Empty for a plain file's single scenario.
    pub name: String,
    pub plan: LoadPlan,
    pub steps: Vec<Step>,
    /// The names of the connections a VU holds, indexed by `ConnId`.
    pub connections: Vec<String>,
    pub on_message: Vec<MessageRule>,
    pub on_close: Vec<CloseRule>,
    pub on_error: Vec<ErrorRule>,
    /// Each VU iteration starts this long after the previous one started (or at once when late).
    pub pacing: Option<Duration>,
    /// The part's VU numbers are `vu_offset..vu_offset + vu_span` (see `Scenario::vu_number`).
    pub vu_offset: u64,
    /// Peak VUs (closed model) or arrivals (open model).
    pub vu_span: u64,
    /// Whether an `extract` step reads the last message taken (so VUs keep it).
    pub reads_last_message: bool,
    /// The metric sets of protocol events, when a connection speaks a protocol.
    pub events: Option<crate::protocol::EventSets>,
    /// `model: seek`: the controller steps this part's load and judges each step.
    pub seek: Option<crate::plan::seek::Seek>,
}

impl Part {
    /// The most VUs the part runs at once: its plan's peak, or a VU seek's `max`.
    pub fn peak_vus(&self) -> u64 {
        peak_vus(&self.plan, self.seek.as_ref())
    }
}

/// The most VUs `plan` runs at once, or a VU seek's `max` when it seeks.
pub(crate) fn peak_vus(plan: &LoadPlan, seek: Option<&crate::plan::seek::Seek>) -> u64 {
    match seek {
        Some(seek) if seek.measure == crate::plan::seek::SeekMeasure::Vus => plan.max_vus().max(seek.max as u64),
        _ => plan.max_vus(),
    }
}

impl Scenario {
    /// The first part's plan: a plain file's only one.
    pub fn plan(&self) -> &LoadPlan {
        &self.parts[0].plan
    }

    /// VUs at the peak, all parts together (a part's peak counts whenever it comes).
    pub fn max_vus(&self) -> u64 {
        self.parts.iter().map(Part::peak_vus).sum()
    }

    /// When the last part's stages end; `None` while any part runs by iterations.
    pub fn stages_end(&self) -> Option<Duration> {
        self.parts
            .iter()
            .map(|part| part.plan.stages_end())
            .try_fold(Duration::ZERO, |latest, end| end.map(|end| latest.max(end)))
    }

    /// The longest safety bound of the parts.
    pub fn max_duration(&self) -> Duration {
        self.parts
            .iter()
            .map(|part| part.plan.max_duration)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The longest graceful stop of the parts.
    pub fn graceful_stop(&self) -> Duration {
        self.parts
            .iter()
            .map(|part| part.plan.graceful_stop)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The fleet-wide VU number of a part's VU. Numbers within the part's span are dense and
    /// follow the parts in order; numbers past it (VUs taken over from lost agents) are spread
    /// above every part's span, interleaved by part, so they stay unique.
    pub fn vu_number(&self, part: usize, local: u64) -> u64 {
        let Some(this) = self.parts.get(part) else { return local };
        if local < this.vu_span {
            return this.vu_offset + local;
        }
        let spans: u64 = self.parts.iter().map(|part| part.vu_span).sum();
        spans + (local - this.vu_span) * self.parts.len() as u64 + part as u64
    }
}

/// The built-in test server a scenario asks the run to start.
#[derive(Clone, Debug, PartialEq)]
pub struct TestServerSpec {
    pub port: u16,
    pub tls: bool,
    pub subprotocols: Vec<String>,
}

pub const DEFAULT_GRACEFUL_STOP: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(600);

/// Run values every scenario may read besides its own `variables`.
pub const RUN_VARIABLES: &[&str] = &["run_id"];
/// The run value with the PEM certificate of the scenario's TLS test server; agents trust it
/// (it is not a template variable).
pub const TESTSERVER_CA_VARIABLE: &str = "testserver.ca_pem";
/// Values available when the scenario starts the test server.
pub const TESTSERVER_VARIABLES: &[&str] = &[
    "testserver.url",
    "testserver.http_url",
    "testserver.host",
    "testserver.port",
];

/// The most bytes one file named by a scenario may hold.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// The most bytes all files of a scenario may hold together (they travel in one gRPC message).
pub const MAX_BUNDLE_BYTES: usize = 48 * 1024 * 1024;
