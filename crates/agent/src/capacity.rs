//! What this agent can hold: cores, the open-file limit (raised to the hard limit at start),
//! and from those the number of connections it accepts.

use wsfleet_proto::v1::Capacity;

/// Files kept back for the agent itself (gRPC, logs, DNS, TLS roots).
const RESERVED_FILES: u64 = 64;

/// Raises the soft open-file limit to the hard one and reports the capacity.
pub fn measure(max_connections: Option<u64>, weight: Option<f64>) -> Capacity {
    let open_file_limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let holdable = open_file_limit.saturating_sub(RESERVED_FILES);
    Capacity {
        cores,
        open_file_limit,
        max_connections: max_connections.map_or(holdable, |wanted| wanted.min(holdable)),
        weight: weight.unwrap_or(f64::from(cores)),
        source_addresses: Vec::new(),
    }
}
