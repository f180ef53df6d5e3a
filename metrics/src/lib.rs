//! wsfleet's metrics: the catalog of built-in metric names, the per-worker hot-path recorder,
//! the mergeable per-interval form that travels between agents and controller (histograms as
//! HDR V2 + deflate), and summaries computed from merged histograms, never from averaged
//! percentiles.

pub mod catalog;
pub mod recorder;
pub mod sets;
pub mod summary;

pub use catalog::{Counter, ErrorKind, Gauge, Hist};
pub use recorder::{Recorder, SetId};
pub use sets::{new_histogram, MetricSets, MetricsError, SetData, CONNECTION_SET};
