//! The wsfleet controller: the agent registry and gRPC service agents attach to, run
//! orchestration with the exact load split, exact aggregation of agents' reports, and the
//! end-of-run summary.

pub mod aggregate;
pub mod api;
pub mod capacity;
pub mod controller;
pub mod history;
pub mod http;
pub mod human;
pub mod interval_log;
pub mod live;
pub mod lost;
pub mod outcome;
pub mod registry;
pub mod report;
pub mod run;
pub mod runs;
pub mod serve;
pub mod service;
pub mod settings;
pub mod summary;
pub mod summary_text;
pub mod thresholds;
pub mod wire;

pub use controller::Controller;
pub use outcome::{LostAction, Outcome};
pub use registry::Registry;
pub use run::{execute, RunError, RunEvent, RunRequest};
pub use runs::{RunTestServer, StartError, TestServerStarter};
pub use serve::{serve, Listeners, ServeConfig, ServeError, Serving};
pub use settings::{ControllerSettings, ServerTls};
pub use summary::Summary;
